-- privileges: what an application role may and may not do
\set SHOW_CONTEXT never
-- start from empty tables and fresh sequences
TRUNCATE ft_orders.orders, ft_orders.idempotency_keys, ft_orders.outbox,
	ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events
	RESTART IDENTITY;


CREATE ROLE ft_regress_app LOGIN IN ROLE ft_orders_app;
SET ROLE ft_regress_app;

-- allowed: intake, reads, views
SELECT order_id, status, replayed FROM ft_orders.place_order('priv-1', 'c', 10, 'EUR');
SELECT order_id, status, replayed FROM ft_orders.place_order('priv-1', 'c', 10, 'EUR');
SELECT order_id, status FROM ft_orders.get_order(1);
SELECT pending FROM ft_orders.queue_status;
SELECT count(*) FROM ft_orders.order_summary;
SELECT count(*) >= 0 AS readable FROM ft_orders.worker_status;
SELECT circuit FROM ft_orders.gateway_status;

-- refused: the tables themselves
SELECT * FROM ft_orders.orders;
INSERT INTO ft_orders.orders (idempotency_key, customer_id, amount_minor, currency, payment_key)
VALUES ('x', 'c', 1, 'EUR', gen_random_uuid());
UPDATE ft_orders.orders SET status = 'paid';
DELETE FROM ft_orders.outbox;
DELETE FROM ft_orders.idempotency_keys;
INSERT INTO ft_orders.dead_letters VALUES (1, 1, 1, 'x');
TRUNCATE ft_orders.payment_attempts;

-- refused: internal and operator functions
SELECT ft_orders._change_status(ARRAY[1::bigint], ARRAY['paid'::ft_orders.order_status],
	ARRAY[1], ARRAY['p'], ARRAY[NULL::text], ARRAY['x']);
SELECT ft_orders.retry_dead_letters();
SELECT ft_orders.purge_expired_keys();
SELECT ft_orders.reset_stats();

-- refused: the gateway secret and the settings
SHOW ft_orders.gateway_token;
SELECT current_setting('ft_orders.gateway_token');
SELECT count(*) AS visible FROM pg_settings WHERE name = 'ft_orders.gateway_token';
SET ft_orders.batch_size = 5;
SET ft_orders.gateway_url = 'http://127.0.0.1:1';

RESET ROLE;
-- the order placed by the app role is owned by nobody but the extension
SELECT idempotency_key, status FROM ft_orders.orders;
DROP ROLE ft_regress_app;
