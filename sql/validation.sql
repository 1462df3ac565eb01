-- validation: what a caller reads when place_order refuses its input (one
-- call per rule: message, detail and hint as psql shows them).  The
-- SQLSTATEs and "writes nothing" are pgTAP's (02_sqlstates, 03_writes_nothing).
\set SHOW_CONTEXT never
-- start from empty tables and fresh sequences; the outbox first, as the
-- payment workers lock it before orders: this waits for them, never deadlocks
TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events
	RESTART IDENTITY;


-- NULLs where a value is required
SELECT * FROM ft_orders.place_order(NULL, 'c', 1, 'EUR');
SELECT * FROM ft_orders.place_order('k', NULL, 1, 'EUR');
SELECT * FROM ft_orders.place_order('k', 'c', NULL, 'EUR');
SELECT * FROM ft_orders.place_order('k', 'c', 1, NULL);
SELECT * FROM ft_orders.place_order('k', 'c', 1, 'EUR', NULL);
SELECT ft_orders.get_order(NULL);
SELECT ft_orders.retry_dead_letter(NULL);

-- idempotency_key: 1..255 printable ASCII
SELECT * FROM ft_orders.place_order('', 'c', 1, 'EUR');
SELECT * FROM ft_orders.place_order(repeat('k', 256), 'c', 1, 'EUR');
SELECT * FROM ft_orders.place_order(E'k\t1', 'c', 1, 'EUR');
SELECT * FROM ft_orders.place_order('kéy', 'c', 1, 'EUR');
-- 255 characters are fine
SELECT order_id, replayed FROM ft_orders.place_order(repeat('k', 255), 'c', 1, 'EUR');

-- customer_id: 1..255 characters, no control characters
SELECT * FROM ft_orders.place_order('k2', '', 1, 'EUR');
SELECT * FROM ft_orders.place_order('k2', repeat('é', 256), 1, 'EUR');
SELECT * FROM ft_orders.place_order('k2', E'c\n1', 1, 'EUR');
SELECT order_id, replayed FROM ft_orders.place_order('k2', repeat('é', 255), 1, 'EUR');

-- amount_minor: > 0 and <= 99999999999
SELECT * FROM ft_orders.place_order('k3', 'c', 0, 'EUR');
SELECT * FROM ft_orders.place_order('k3', 'c', -5, 'EUR');
SELECT * FROM ft_orders.place_order('k3', 'c', 100000000000, 'EUR');
SELECT order_id, replayed FROM ft_orders.place_order('k3', 'c', 99999999999, 'EUR');

-- currency: three letters
SELECT * FROM ft_orders.place_order('k4', 'c', 1, 'EU');
SELECT * FROM ft_orders.place_order('k4', 'c', 1, 'EURO');
SELECT * FROM ft_orders.place_order('k4', 'c', 1, 'E1R');
SELECT * FROM ft_orders.place_order('k4', 'c', 1, '€UR');

-- items: a JSON array of at most 64 kB
SELECT * FROM ft_orders.place_order('k5', 'c', 1, 'EUR', '{"sku": "a"}');
SELECT * FROM ft_orders.place_order('k5', 'c', 1, 'EUR', '42');
SELECT * FROM ft_orders.place_order('k5', 'c', 1, 'EUR',
	jsonb_build_array(repeat('x', 70000)));

-- payment_method: NULL or 1..255 printable ASCII without spaces
SELECT * FROM ft_orders.place_order('k6', 'c', 1, 'EUR', '[]', '');
SELECT * FROM ft_orders.place_order('k6', 'c', 1, 'EUR', '[]', 'pm card');
SELECT * FROM ft_orders.place_order('k6', 'c', 1, 'EUR', '[]', repeat('p', 256));

-- SQL fragments are just data
SELECT order_id, replayed FROM ft_orders.place_order('k7''; DROP TABLE ft_orders.orders; --',
	'Robert''); DROP TABLE students;--', 1, 'EUR', '["''; SELECT 1"]');
SELECT idempotency_key, customer_id, items FROM ft_orders.orders
 WHERE idempotency_key LIKE 'k7%';

-- the extension only lives in a database the workers serve
CREATE DATABASE ft_orders_elsewhere;
\c ft_orders_elsewhere
\set SHOW_CONTEXT never
CREATE EXTENSION ft_orders;
\c contrib_regression
DROP DATABASE ft_orders_elsewhere;
