-- idempotency: a repeat returns the same order; other parameters are FT409
\set SHOW_CONTEXT never
-- start from empty tables and fresh sequences; the outbox first, as the
-- payment workers lock it before orders: this waits for them, never deadlocks
TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events
	RESTART IDENTITY;

\set VERBOSITY default

SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');

-- the same request: same order, replayed, nothing written
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');
SELECT count(*) AS orders, (SELECT count(*) FROM ft_orders.outbox) AS events
  FROM ft_orders.orders;

-- the same request written differently is still the same request
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'eur',
	'[{"qty":1,"sku":"a"}]', 'pm_card_visa');

-- the replay reports the current status
UPDATE ft_orders.orders SET status = 'paid' WHERE idempotency_key = 'idem-1';
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');

-- any other parameter differs: FT409, nothing written
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1001, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');
\set VERBOSITY sqlstate
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1001, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');
\set VERBOSITY default
SELECT * FROM ft_orders.place_order('idem-1', 'cust-2', 1000, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'USD',
	'[{"sku": "a", "qty": 1}]', 'pm_card_visa');
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'EUR',
	'[{"sku": "a", "qty": 2}]', 'pm_card_visa');
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'EUR',
	'[{"sku": "a", "qty": 1}]', NULL);
SELECT * FROM ft_orders.place_order('idem-1', 'cust-1', 1000, 'EUR',
	'[{"sku": "a", "qty": 1}]', 'pm_card_mastercard');
SELECT count(*) AS orders, (SELECT count(*) FROM ft_orders.outbox) AS events,
	   (SELECT count(*) FROM ft_orders.idempotency_keys) AS keys
  FROM ft_orders.orders;

-- a mismatch inside a transaction aborts only that transaction
BEGIN;
SELECT order_id, replayed FROM ft_orders.place_order('idem-2', 'cust-1', 5, 'EUR');
SELECT order_id FROM ft_orders.place_order('idem-2', 'cust-1', 6, 'EUR');
ROLLBACK;
SELECT count(*) AS idem_2_orders FROM ft_orders.orders WHERE idempotency_key = 'idem-2';

-- keys expire: after purge_expired_keys the key may start a new order
-- (one transaction, so the launcher's own periodic purge cannot interfere)
BEGIN;
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '2 days'
 WHERE idempotency_key = 'idem-1';
SELECT ft_orders.purge_expired_keys() AS purged;
SELECT ft_orders.purge_expired_keys() AS purged_again;
COMMIT;
SELECT order_id, status, replayed FROM ft_orders.place_order('idem-1', 'cust-9', 77, 'EUR');
SELECT idempotency_key, customer_id, status FROM ft_orders.orders ORDER BY order_id;
