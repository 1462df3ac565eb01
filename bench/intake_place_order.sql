-- pgbench script: one place_order with a fresh key (run stamp :run, client, random)
\set n random(1, 1000000000000)
SELECT order_id FROM ft_orders.place_order('b' || :run || '-' || :client_id || '-' || :n, 'cust-' || :client_id, 1000, 'EUR', '[]'::jsonb, 'pm_card_visa');
