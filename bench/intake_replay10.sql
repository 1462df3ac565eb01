-- pgbench script: 10 % replays of one of 1000 pre-placed keys, 90 % fresh keys
\set n random(1, 1000000000000)
\set r random(1, 10)
\set k random(1, 1000)
\if :r = 1
SELECT order_id FROM ft_orders.place_order('replay-' || :k, 'cust-replay', 1000, 'EUR', '[]'::jsonb, 'pm_card_visa');
\else
SELECT order_id FROM ft_orders.place_order('b' || :run || '-' || :client_id || '-' || :n, 'cust-' || :client_id, 1000, 'EUR', '[]'::jsonb, 'pm_card_visa');
\endif
