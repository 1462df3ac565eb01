-- 07_default_payment_method.sql: place_order with payment_method left at
-- its default (NULL) -- the way most callers use it.  NULL is a value of
-- its own in the fingerprint: NULL vs a method is FT409 both ways.
-- Regression test for the segfault fixed in e571469 (NULL payment_method
-- fed SHA-256 a NULL pointer with length 2^32-1).  Kept last so that a
-- crash here cannot make the following files meet a recovering server.
BEGIN;
SELECT plan(16);

SELECT order_id AS n_id, replayed AS n_replayed
  FROM ft_orders.place_order('key-07-null', 'cust-7', 900, 'EUR') \gset
SELECT is(:'n_replayed'::boolean, false, 'place_order with 4 arguments: a new order');
SELECT results_eq(format($$SELECT payment_method, items FROM ft_orders.orders WHERE order_id = %s$$, :n_id),
				  $$VALUES (NULL::text, '[]'::jsonb)$$,
				  'defaults stored: payment_method NULL, items []');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :n_id), 1, 'one outbox row');
SELECT is((SELECT octet_length(fingerprint) FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-07-null'),
		  32, 'a 32-byte fingerprint');

SELECT results_eq($$SELECT order_id, replayed FROM ft_orders.place_order('key-07-null', 'cust-7', 900, 'EUR')$$,
				  format('VALUES (%s::bigint, true)', :n_id), 'same 4 arguments: replay');
SELECT results_eq($$SELECT order_id, replayed FROM ft_orders.place_order('key-07-null', 'cust-7', 900, 'eur', '[]', NULL)$$,
				  format('VALUES (%s::bigint, true)', :n_id), 'explicit [] and NULL: the same request');
SELECT results_eq($$SELECT order_id, replayed FROM ft_orders.place_order('key-07-null', 'cust-7', 900, 'EUR', items => '[ ]')$$,
				  format('VALUES (%s::bigint, true)', :n_id), 'named items => ''[ ]'': the same request');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-07-null', 'cust-7', 900, 'EUR', '[]', 'pm_card_visa')$$,
				 'FT409', 'idempotency key reused with different parameters',
				 'first NULL payment_method, then a value: FT409');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-07-null', 'cust-7', 901, 'EUR')$$,
				 'FT409', 'idempotency key reused with different parameters',
				 'NULL payment_method, other amount: FT409');

SELECT lives_ok($$SELECT * FROM ft_orders.place_order('key-07-pm', 'cust-7', 900, 'EUR', '[]', 'pm_card_visa')$$,
				'key-07-pm placed with a payment_method');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-07-pm', 'cust-7', 900, 'EUR')$$,
				 'FT409', 'idempotency key reused with different parameters',
				 'first a payment_method, then NULL: FT409');
SELECT isnt((SELECT fingerprint FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-07-pm'),
			(SELECT fingerprint FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-07-null'),
			'NULL and a method give different fingerprints');

-- the app role uses the defaults too
SET ROLE app_user;
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-07-app', 'cust-7', 50, 'USD')$$,
				  $$VALUES (false)$$, 'app_user: place_order with 4 arguments');
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-07-app', 'cust-7', 50, 'USD')$$,
				  $$VALUES (true)$$, 'app_user: and its replay');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key LIKE 'key-07-%'), 3,
		  'three orders for the three keys');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox o JOIN ft_orders.orders r USING (order_id)
			WHERE r.idempotency_key LIKE 'key-07-%'), 3, 'three outbox rows');

SELECT * FROM finish();
ROLLBACK;
