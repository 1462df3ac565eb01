-- intake: a first call creates the order, its key and one outbox event
\set SHOW_CONTEXT never
-- start from empty tables and fresh sequences; the outbox first, as the
-- payment workers lock it before orders: this waits for them, never deadlocks
TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events
	RESTART IDENTITY;


SELECT * FROM ft_orders.place_order('intake-1', 'cust-1', 1999, 'eur',
	'[{"sku": "book", "qty": 2}]', 'pm_card_visa');

SELECT order_id, idempotency_key, customer_id, amount_minor, currency, items,
	   payment_method, payment_key IS NOT NULL AS has_payment_key, status,
	   attempts, payment_id, last_error
  FROM ft_orders.orders WHERE idempotency_key = 'intake-1';

SELECT order_id, pg_catalog.length(fingerprint) AS fingerprint_bytes
  FROM ft_orders.idempotency_keys WHERE idempotency_key = 'intake-1';

SELECT order_id, attempts, next_attempt_at <= now() AS due_now,
	   lease_until IS NULL AS not_leased
  FROM ft_orders.outbox;

-- defaults: no items, no payment method
SELECT * FROM ft_orders.place_order('intake-2', 'cust-2', 500, 'USD');
SELECT items, payment_method FROM ft_orders.orders WHERE idempotency_key = 'intake-2';

-- every order gets its own payment key
SELECT count(DISTINCT payment_key) AS payment_keys FROM ft_orders.orders;

-- get_order: the row, or a NULL row
SELECT order_id, status, amount_minor FROM ft_orders.get_order(1);
SELECT ft_orders.get_order(424242) IS NULL AS unknown_is_null;

-- a rolled-back intake leaves nothing behind
BEGIN;
SELECT order_id, status, replayed FROM ft_orders.place_order('intake-3', 'cust-3', 700, 'GBP');
ROLLBACK;
SELECT count(*) AS orders, (SELECT count(*) FROM ft_orders.outbox) AS events,
	   (SELECT count(*) FROM ft_orders.idempotency_keys) AS keys
  FROM ft_orders.orders;

-- several orders in one transaction
BEGIN;
SELECT count(*) FROM ft_orders.place_order('intake-4', 'cust-4', 1, 'CHF');
SELECT count(*) FROM ft_orders.place_order('intake-5', 'cust-4', 2, 'CHF');
COMMIT;
SELECT idempotency_key, amount_minor, status FROM ft_orders.orders
 WHERE customer_id = 'cust-4' ORDER BY amount_minor;

-- status changes append history rows and keep the rest
SELECT ft_orders._change_status(ARRAY[1::bigint], ARRAY['paid'::ft_orders.order_status],
	ARRAY[1], ARRAY['pay_1'], ARRAY[NULL::text], ARRAY['paid']);
SELECT status, attempts, payment_id FROM ft_orders.orders WHERE order_id = 1;
SELECT order_id, status, attempts, detail FROM ft_orders.order_events ORDER BY id;
