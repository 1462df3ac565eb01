-- 10_lifecycle.sql: cancel_order(), refund_order() and reconcile() (1.3,
-- docs/reference.md, "Lifecycle"): the SQLSTATE of every bad call, and
-- that a bad call writes nothing; the immediate effects (the workers are
-- off in this suite: what they do is tested in tests/integration); and the
-- privileges: owner only, one GRANT for an application role.
BEGIN;
SELECT plan(62);

-- row counts, sequence positions, the orders' statuses and cancel
-- requests, as one comparable text
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql AS $$
	SELECT format('%s %s statuses=%s cancels=%s', ft_test.row_counts(), ft_test.seq_positions(),
				  (SELECT string_agg(status::text, ',' ORDER BY order_id) FROM ft_orders.orders),
				  (SELECT count(*) FROM ft_orders.orders WHERE cancel_requested_at IS NOT NULL))
$$;

-- orders: 1 pending (never sent), 2 paid, 3 declined, 4 pending (sent)
SELECT order_id AS o_new FROM ft_orders.place_order('key-10-new', 'c', 1000, 'EUR') \gset
SELECT order_id AS o_paid FROM ft_orders.place_order('key-10-paid', 'c', 1000, 'EUR') \gset
SELECT order_id AS o_dec FROM ft_orders.place_order('key-10-dec', 'c', 1000, 'EUR') \gset
SELECT order_id AS o_sent FROM ft_orders.place_order('key-10-sent', 'c', 1000, 'EUR') \gset
DELETE FROM ft_orders.outbox WHERE order_id IN (:o_paid, :o_dec);
SELECT ft_orders._change_status(ARRAY[:o_paid, :o_dec]::bigint[],
								ARRAY['paid', 'declined']::ft_orders.order_status[],
								ARRAY[1, 1], ARRAY['pay_1', NULL], ARRAY[NULL, 'declined'],
								ARRAY['paid', 'declined']);
UPDATE ft_orders.outbox SET attempts = 1, first_sent_at = now() - interval '2 hours'
 WHERE order_id = :o_sent;
SELECT pg_temp.counts() AS before \gset

-------------------------------------------------------------------------------
-- SQLSTATEs; every bad call writes nothing
-------------------------------------------------------------------------------
SELECT throws_ok(call, sqlstate, message, description)
  FROM (VALUES
	($$SELECT ft_orders.cancel_order(NULL)$$, '22004',
	 'argument "order_id" must not be null', 'cancel_order(NULL): 22004'),
	($$SELECT ft_orders.cancel_order(-1)$$, '22023',
	 'invalid value for argument "order_id"', 'cancel_order of no order: 22023'),
	(format('SELECT ft_orders.cancel_order(%s, %L)', :o_new, ''), '22023',
	 'invalid value for argument "reason"', 'cancel_order with an empty reason: 22023'),
	(format('SELECT ft_orders.cancel_order(%s, %L)', :o_new, repeat('x', 1001)), '22023',
	 'invalid value for argument "reason"', 'cancel_order with a reason of 1001 characters: 22023'),
	(format('SELECT ft_orders.cancel_order(%s)', :o_paid), '55000',
	 format('order %s is already paid', :o_paid), 'cancel_order of a paid order: 55000'),
	(format('SELECT ft_orders.cancel_order(%s)', :o_dec), '55000',
	 format('order %s was declined by the gateway', :o_dec), 'cancel_order of a declined order: 55000'),

	($$SELECT ft_orders.refund_order(NULL)$$, '22004',
	 'argument "order_id" must not be null', 'refund_order(NULL): 22004'),
	($$SELECT ft_orders.refund_order(-1)$$, '22023',
	 'invalid value for argument "order_id"', 'refund_order of no order: 22023'),
	(format('SELECT ft_orders.refund_order(%s, 0)', :o_paid), '22023',
	 'invalid value for argument "amount_minor"', 'refund of 0: 22023'),
	(format('SELECT ft_orders.refund_order(%s, -5)', :o_paid), '22023',
	 'invalid value for argument "amount_minor"', 'negative refund: 22023'),
	(format('SELECT ft_orders.refund_order(%s, 100000000000)', :o_paid), '22023',
	 'invalid value for argument "amount_minor"', 'refund above 99999999999: 22023'),
	(format('SELECT ft_orders.refund_order(%s, 1001)', :o_paid), '22023',
	 'invalid value for argument "amount_minor"', 'refund above the amount paid: 22023'),
	(format('SELECT ft_orders.refund_order(%s, 10, %L)', :o_paid, ''), '22023',
	 'invalid value for argument "idempotency_key"', 'empty refund key: 22023'),
	(format('SELECT ft_orders.refund_order(%s, 10, %L)', :o_paid, repeat('k', 256)), '22023',
	 'invalid value for argument "idempotency_key"', 'refund key of 256 characters: 22023'),
	(format('SELECT ft_orders.refund_order(%s, 10, %L)', :o_paid, E'k\n1'), '22023',
	 'invalid value for argument "idempotency_key"', 'refund key with a control character: 22023'),
	(format('SELECT ft_orders.refund_order(%s)', :o_new), '55000',
	 format('order %s is not paid', :o_new), 'refund of a pending order: 55000'),
	(format('SELECT ft_orders.refund_order(%s)', :o_dec), '55000',
	 format('order %s is not paid', :o_dec), 'refund of a declined order: 55000'),

	($$SELECT ft_orders.reconcile(NULL)$$, '22004',
	 'argument "older_than" must not be null', 'reconcile(NULL): 22004'),
	($$SELECT ft_orders.reconcile('-1 hour')$$, '22023',
	 'invalid value for argument "older_than"', 'reconcile of a negative interval: 22023')
) AS bad(call, sqlstate, message, description);

SELECT is(pg_temp.counts(), :'before', 'none of the bad calls wrote anything (rows, refund sequence, statuses)');

-------------------------------------------------------------------------------
-- what the calls do at once
-------------------------------------------------------------------------------
SELECT is(ft_orders.cancel_order(:o_new, 'changed my mind'), 'canceled'::ft_orders.order_status,
		  'cancel_order of a never sent order: canceled');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :o_new), 0, '... its outbox event is gone');
SELECT is((SELECT cancel_reason FROM ft_orders.orders WHERE order_id = :o_new), 'changed my mind', '... the reason kept');
SELECT pg_temp.counts() AS after_cancel \gset
SELECT is(ft_orders.cancel_order(:o_new), 'canceled'::ft_orders.order_status, 'cancel_order again: canceled');
SELECT is(pg_temp.counts(), :'after_cancel', '... and nothing written');
SELECT throws_ok(format('SELECT ft_orders.refund_order(%s)', :o_new), '55000',
				 format('order %s is not paid', :o_new), 'refund of a canceled order: 55000');

SELECT is(ft_orders.cancel_order(:o_sent), 'pending'::ft_orders.order_status,
		  'cancel_order of a sent order: still pending');
SELECT ok((SELECT cancel_requested_at IS NOT NULL FROM ft_orders.orders WHERE order_id = :o_sent),
		  '... cancel_requested_at recorded');
SELECT ok((SELECT lookup AND next_attempt_at <= now() FROM ft_orders.outbox WHERE order_id = :o_sent),
		  '... its event is due now as a look-up');
SELECT pg_temp.counts() AS after_sent \gset
SELECT is(ft_orders.cancel_order(:o_sent), 'pending'::ft_orders.order_status, 'cancel_order again: pending');
SELECT is(pg_temp.counts(), :'after_sent', '... and nothing written');

SELECT ft_orders.refund_order(:o_paid, 300, 'r1') AS r1 \gset
SELECT ok(:r1 > 0, 'refund_order of 300: a refund id');
SELECT is(ft_orders.refund_order(:o_paid, 300, 'r1'), :r1::bigint, 'the same key and amount: the same refund');
SELECT throws_ok(format('SELECT ft_orders.refund_order(%s, 400, %L)', :o_paid, 'r1'), 'FT409',
				 'idempotency key reused with different parameters', 'the same key, another amount: FT409');
SELECT is((SELECT status || ' ' || amount_minor || ' ' || currency FROM ft_orders.refunds WHERE refund_id = :r1),
		  'pending 300 EUR', 'the refund is pending, in the order''s currency');
SELECT ok((SELECT refund_key IS NOT NULL AND refund_key <> o.payment_key FROM ft_orders.refunds r
			 JOIN ft_orders.orders o USING (order_id) WHERE refund_id = :r1),
		  'the refund has its own key');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE refund_id = :r1), 1, 'the refund has its outbox event');
SELECT is((SELECT refunds FROM ft_orders.queue_status), 1::bigint, 'queue_status counts it as a refund');
SELECT is(ft_orders.refund_order(:o_paid, 300), ft_orders.refund_order(:o_paid, 300),
		  'without a key a refund is idempotent per amount');
SELECT throws_ok(format('SELECT ft_orders.refund_order(%s, 401, %L)', :o_paid, 'r3'), '22023',
				 'invalid value for argument "amount_minor"', '300 + 300 + 401 > 1000: 22023');
SELECT is((SELECT sum(amount_minor)::int FROM ft_orders.refunds WHERE order_id = :o_paid), 600, 'two refunds, 600');
SELECT ok(ft_orders.refund_order(:o_paid) > 0, 'the rest (no amount)');
SELECT is((SELECT sum(amount_minor)::int FROM ft_orders.refunds WHERE order_id = :o_paid), 1000, '... makes 1000');
SELECT is((SELECT status FROM ft_orders.orders WHERE order_id = :o_paid), 'paid'::ft_orders.order_status,
		  'the order stays paid until a refund succeeds');
SELECT matches(ft_orders.metrics(), E'\nft_orders_refunds{status="pending"} 3\n', 'metrics(): 3 pending refunds');
SELECT matches(ft_orders.metrics(), E'\nft_orders_orders{status="canceled"} 1\n', 'metrics(): 1 canceled order');

SELECT is(ft_orders.reconcile('1 hour'), 1::bigint, 'reconcile(''1 hour''): the order sent two hours ago');
SELECT is(ft_orders.reconcile('3 hours'), 0::bigint, 'reconcile(''3 hours''): none');

-------------------------------------------------------------------------------
-- privileges
-------------------------------------------------------------------------------
SELECT ok(NOT has_function_privilege('public', f, 'EXECUTE'), format('PUBLIC may not execute %s', f))
  FROM unnest(ARRAY['ft_orders.cancel_order(bigint, text)', 'ft_orders.refund_order(bigint, bigint, text)',
					'ft_orders.reconcile(interval)']) AS f;
SELECT ok(NOT has_function_privilege('ft_orders_app', f, 'EXECUTE'), format('ft_orders_app may not execute %s by default', f))
  FROM unnest(ARRAY['ft_orders.cancel_order(bigint, text)', 'ft_orders.refund_order(bigint, bigint, text)',
					'ft_orders.reconcile(interval)']) AS f;
SELECT ok(NOT has_table_privilege('ft_orders_app', 'ft_orders.refunds', 'SELECT'), 'ft_orders_app may not read refunds');
SELECT is((SELECT prosecdef FROM pg_proc WHERE oid = 'ft_orders.refund_order(bigint, bigint, text)'::regprocedure),
		  true, 'refund_order is SECURITY DEFINER (a granted role needs no table privilege)');
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = 'ft_orders.cancel_order(bigint, text)'::regprocedure),
		  ARRAY['search_path=pg_catalog, pg_temp'], 'cancel_order pins its search_path');

SET LOCAL ROLE app_user;
SELECT throws_ok(format('SELECT ft_orders.cancel_order(%s)', :o_dec), '42501', NULL,
				 'app_user cannot cancel by default');
SELECT throws_ok(format('SELECT ft_orders.refund_order(%s)', :o_paid), '42501', NULL,
				 'app_user cannot refund by default');
RESET ROLE;
-- the documented GRANT (docs/reference.md, "Privileges")
GRANT EXECUTE ON FUNCTION ft_orders.cancel_order(bigint, text),
					   ft_orders.refund_order(bigint, bigint, text) TO ft_orders_app;
SET LOCAL ROLE app_user;
SELECT is(ft_orders.cancel_order(:o_new), 'canceled'::ft_orders.order_status,
		  'after the GRANT app_user may cancel');
SELECT is(ft_orders.refund_order(:o_paid, 300, 'r1'), :r1::bigint, 'after the GRANT app_user may refund');
SELECT throws_ok($$SELECT count(*) FROM ft_orders.refunds$$, '42501', NULL, '... and still not read the refunds table');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
