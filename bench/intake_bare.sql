-- pgbench script: the baseline, one bare single-row INSERT into a table of the
-- same width as ft_orders.orders (bench_bare: LIKE orders, same indexes)
\set n random(1, 1000000000000)
INSERT INTO bench_bare (idempotency_key, customer_id, amount_minor, currency, items, payment_method, payment_key)
VALUES ('b' || :run || '-' || :client_id || '-' || :n, 'cust-' || :client_id, 1000, 'EUR', '[]'::jsonb, 'pm_card_visa', gen_random_uuid());
