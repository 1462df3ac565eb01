-- 13_operator_role.sql: the predefined role ft_orders_operator (1.5,
-- docs/reference.md, "Roles"): a login role that is only its member reads
-- the orders and the monitoring, cancels, refunds, requeues a dead letter
-- and schedules look-ups, and cannot write a table, call an internal
-- function or place an order; a role without it is refused everything.
-- The workers are off in this suite: the actions' immediate effects are
-- asserted, what the workers then do is tested in tests/integration.
BEGIN;
SELECT plan(74);

CREATE ROLE op_user LOGIN;
GRANT ft_orders_operator TO op_user;
CREATE ROLE nobody_user LOGIN;

-------------------------------------------------------------------------------
-- catalogue (as the superuser)
-------------------------------------------------------------------------------
SELECT results_eq(
	$$SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
		FROM pg_roles WHERE rolname = 'ft_orders_operator'$$,
	$$VALUES (false, false, false, false, false)$$,
	'ft_orders_operator exists: NOLOGIN, no superuser, no other attribute');
SELECT is(pg_has_role('ft_orders_operator', 'ft_orders_app', 'MEMBER'), false,
		  'ft_orders_operator is not a member of ft_orders_app (an operator is not the shop)');
SELECT is(pg_has_role('op_user', 'ft_orders_app', 'MEMBER'), false, 'setup: op_user is not in ft_orders_app');
SELECT isnt(shobj_description((SELECT oid FROM pg_roles WHERE rolname = 'ft_orders_operator'), 'pg_authid'),
			NULL, 'ft_orders_operator has a description');

SELECT is(string_agg(p.oid::regprocedure::text || ' ' || p.prosecdef || ' ' || array_to_string(p.proconfig, ';'),
				  ' | ' ORDER BY p.oid::regprocedure::text) COLLATE "default",
		  'ft_orders.reconcile(interval) true search_path=pg_catalog, pg_temp | '
		  'ft_orders.retry_dead_letter(bigint) true search_path=pg_catalog, pg_temp',
		  'retry_dead_letter and reconcile are SECURITY DEFINER with search_path = pg_catalog, pg_temp')
  FROM pg_proc p
 WHERE p.oid IN ('ft_orders.retry_dead_letter(bigint)'::regprocedure, 'ft_orders.reconcile(interval)'::regprocedure);
SELECT is(has_function_privilege('public', 'ft_orders.retry_dead_letter(bigint)', 'EXECUTE'), false,
		  'PUBLIC may not call retry_dead_letter');
SELECT is(has_function_privilege('ft_orders_app', 'ft_orders.retry_dead_letter(bigint)', 'EXECUTE'), false,
		  'ft_orders_app may not call retry_dead_letter');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
	   WHERE p.pronamespace = 'ft_orders'::regnamespace
		 AND has_function_privilege('ft_orders_operator', p.oid, 'EXECUTE')
		 AND p.oid NOT IN ('ft_orders.get_order(bigint)'::regprocedure,
						   'ft_orders.metrics()'::regprocedure,
						   'ft_orders.worker_stats()'::regprocedure,
						   'ft_orders.gateway_stats()'::regprocedure,
						   'ft_orders.cancel_order(bigint, text)'::regprocedure,
						   'ft_orders.refund_order(bigint, bigint, text)'::regprocedure,
						   'ft_orders.retry_dead_letter(bigint)'::regprocedure,
						   'ft_orders.reconcile(interval)'::regprocedure)$$,
	'ft_orders_operator may execute get_order, metrics, the stats functions behind the views, cancel, refund, requeue and reconcile, nothing else');
SELECT is(count(*)::int, 8, 'ft_orders_operator may execute those 8 functions')
  FROM pg_proc p
 WHERE p.pronamespace = 'ft_orders'::regnamespace AND has_function_privilege('ft_orders_operator', p.oid, 'EXECUTE');
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || priv FROM pg_class c,
			 unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS priv
	   WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'p', 'v')
		 AND has_table_privilege('ft_orders_operator', c.oid, priv)
		 AND NOT (priv = 'SELECT'
				  AND c.relname IN ('queue_status', 'order_summary', 'worker_status', 'gateway_status',
									'orders', 'order_events', 'payment_attempts', 'refunds',
									'dead_letters', 'gateway_events'))$$,
	'ft_orders_operator may only SELECT the four views and six tables (not outbox, idempotency_keys, ...)');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind = 'S'
		 AND CASE WHEN c.relkind = 'S'
				  THEN has_sequence_privilege('ft_orders_operator', c.oid, 'USAGE,SELECT,UPDATE') END$$,
	'ft_orders_operator has no privilege on any ft_orders sequence');
SELECT is(has_schema_privilege('ft_orders_operator', 'ft_orders', 'CREATE'), false,
		  'ft_orders_operator cannot create objects in schema ft_orders');

-------------------------------------------------------------------------------
-- the orders the operator acts on (as the superuser, as the workers would)
-------------------------------------------------------------------------------
-- o_new pending, never sent; o_paid paid; o_dead failed with a dead letter;
-- o_sent pending, sent two hours ago
SELECT order_id AS o_new FROM ft_orders.place_order('key-13-new', 'c13', 1000, 'EUR') \gset
SELECT order_id AS o_paid FROM ft_orders.place_order('key-13-paid', 'c13', 1000, 'EUR') \gset
SELECT order_id AS o_dead FROM ft_orders.place_order('key-13-dead', 'c13', 1000, 'EUR') \gset
SELECT order_id AS o_sent FROM ft_orders.place_order('key-13-sent', 'c13', 1000, 'EUR') \gset
SELECT event_id AS dead_event FROM ft_orders.outbox WHERE order_id = :o_dead \gset
DELETE FROM ft_orders.outbox WHERE order_id IN (:o_paid, :o_dead);
SELECT ft_orders._change_status(ARRAY[:o_paid, :o_dead]::bigint[],
								ARRAY['paid', 'failed']::ft_orders.order_status[],
								ARRAY[1, 10], ARRAY['pay_13', NULL], ARRAY[NULL, 'HTTP 500'],
								ARRAY['paid', 'gave up']) AS ignore \gset
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error, first_sent_at)
VALUES (:dead_event, :o_dead, 10, 'HTTP 500', now() - interval '10 minutes');
UPDATE ft_orders.outbox SET attempts = 1, first_sent_at = now() - interval '2 hours'
 WHERE order_id = :o_sent;

-- traps for the requeue under a hostile search_path: a bigint "=" that is
-- always true, and temp tables shadowing the extension's
CREATE FUNCTION public.evil_int8eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_int8eq);
GRANT EXECUTE ON FUNCTION public.evil_int8eq(bigint, bigint) TO op_user;

-------------------------------------------------------------------------------
-- as a login role that is only a member of ft_orders_operator
-------------------------------------------------------------------------------
SET ROLE op_user;
SELECT is(current_user::text, 'op_user', 'now acting as op_user');

SELECT lives_ok(format('SELECT * FROM ft_orders.%I', v), format('op_user can SELECT ft_orders.%s', v))
  FROM unnest(ARRAY['queue_status', 'order_summary', 'worker_status', 'gateway_status', 'orders',
					'order_events', 'payment_attempts', 'refunds', 'dead_letters', 'gateway_events']) AS v;	-- 10 tests
SELECT is((SELECT dead_letters FROM ft_orders.queue_status), 1::bigint, 'op_user sees the dead letter in queue_status');
SELECT is((SELECT order_id FROM ft_orders.dead_letters WHERE event_id = :dead_event), :o_dead::bigint,
		  'op_user reads the dead letter');
SELECT is((SELECT status::text FROM ft_orders.orders WHERE order_id = :o_paid), 'paid', 'op_user reads the orders');
SELECT is((ft_orders.get_order(:o_paid)).payment_id, 'pay_13', 'op_user can call get_order');
SELECT alike(ft_orders.metrics(), '%ft_orders_dead_letters 1%', 'op_user can call metrics()');

-- the actions
SELECT is(ft_orders.cancel_order(:o_new, 'operator test')::text, 'canceled',
		  'op_user cancels an order never sent: canceled');
SELECT isnt(ft_orders.refund_order(:o_paid, 400, 'key-13-refund'), NULL, 'op_user refunds 400 of the paid order');
SELECT is(ft_orders.reconcile('1 hour'), 1::bigint, 'op_user schedules a look-up of the order sent two hours ago');

-- the requeue, under a hostile search_path: the unknown event requeues
-- nothing (the trap "=" would match every dead letter), the real one its
-- own dead letter into the real outbox
CREATE TEMP TABLE dead_letters (event_id bigint, order_id bigint);
CREATE TEMP TABLE outbox (event_id bigint, order_id bigint);
INSERT INTO pg_temp.dead_letters VALUES (:dead_event, :o_dead);
SET LOCAL search_path = pg_temp, public, pg_catalog;
SELECT ft_orders.retry_dead_letter(-42) AS requeue_unknown,
	   ('1'::bigint = '2'::bigint) AS trap_eq \gset
SELECT ft_orders.retry_dead_letter(:dead_event) AS requeue_real \gset
RESET search_path;
SELECT is(:'trap_eq'::boolean, true, 'trap check: bigint = bigint resolves to the public operator on that path');
SELECT is(:'requeue_unknown'::boolean, false, 'op_user: retry_dead_letter(unknown) is false under a hostile search_path');
SELECT is(:'requeue_real'::boolean, true, 'op_user requeues the dead letter under a hostile search_path');
SELECT is((SELECT count(*)::int FROM pg_temp.dead_letters) || '/' || (SELECT count(*)::int FROM pg_temp.outbox),
		  '1/0', 'the caller''s temp tables are untouched');
SELECT is((SELECT status::text FROM ft_orders.orders WHERE order_id = :o_dead), 'pending',
		  'op_user sees the requeued order pending again');
SELECT is(ft_orders.retry_dead_letter(:dead_event), false, 'op_user: requeueing it again is false');

-- denied: writes, internal functions, the shop's functions
SELECT throws_ok(sql, '42501', NULL, 'op_user: ' || what || ' -> 42501')
  FROM (VALUES
	('INSERT INTO orders', $$INSERT INTO ft_orders.orders (idempotency_key, customer_id, amount_minor, currency, items,
														   payment_key) VALUES ('k', 'c', 1, 'EUR', '[]', gen_random_uuid())$$),
	('INSERT INTO outbox', format('INSERT INTO ft_orders.outbox (order_id) VALUES (%s)', :o_paid)),
	('UPDATE orders', $$UPDATE ft_orders.orders SET status = 'paid'$$),
	('DELETE FROM dead_letters', $$DELETE FROM ft_orders.dead_letters$$),
	('INSERT INTO order_events', format($$INSERT INTO ft_orders.order_events (order_id, status) VALUES (%s, 'paid')$$, :o_paid)),
	('UPDATE refunds', $$UPDATE ft_orders.refunds SET status = 'succeeded'$$),
	('TRUNCATE payment_attempts', $$TRUNCATE ft_orders.payment_attempts$$),
	('SELECT outbox', $$SELECT * FROM ft_orders.outbox$$),
	('SELECT idempotency_keys', $$SELECT * FROM ft_orders.idempotency_keys$$),
	('nextval(orders_order_id_seq)', $$SELECT nextval('ft_orders.orders_order_id_seq')$$),
	('_change_status', $$SELECT ft_orders._change_status(ARRAY[1]::bigint[], ARRAY['paid']::ft_orders.order_status[],
													   ARRAY[1], ARRAY['x'], ARRAY['x'], ARRAY['x'])$$),
	('place_order', $$SELECT * FROM ft_orders.place_order('key-13-op', 'c13', 100, 'EUR')$$),
	('retry_dead_letters', $$SELECT ft_orders.retry_dead_letters()$$),
	('apply_gateway_event', $$SELECT ft_orders.apply_gateway_event('generic', '{}')$$),
	('purge_history', $$SELECT ft_orders.purge_history()$$),
	('reset_stats', $$SELECT ft_orders.reset_stats()$$),
	('CREATE TABLE in ft_orders', $$CREATE TABLE ft_orders.evil (x int)$$)
  ) AS t(what, sql);		-- 17 tests
SELECT throws_ok($$SHOW ft_orders.gateway_token$$, '42501', NULL, 'op_user: SHOW ft_orders.gateway_token -> 42501');
RESET ROLE;

-------------------------------------------------------------------------------
-- where the orders ended (as the superuser)
-------------------------------------------------------------------------------
SELECT results_eq(
	format($$SELECT order_id, status::text FROM ft_orders.orders WHERE order_id IN (%s, %s, %s, %s) ORDER BY order_id$$,
		   :o_new, :o_paid, :o_dead, :o_sent),
	format($$VALUES (%s::bigint, 'canceled'), (%s, 'paid'), (%s, 'pending'), (%s, 'pending')$$,
		   :o_new, :o_paid, :o_dead, :o_sent),
	'statuses: canceled, paid (the refund is not sent yet), pending (requeued), pending (look-up scheduled)');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :o_new), 0,
		  'the canceled order has no outbox event: it is never sent');
SELECT results_eq(
	format($$SELECT r.amount_minor, r.status, r.idempotency_key, b.refund_id IS NOT NULL
			   FROM ft_orders.refunds r LEFT JOIN ft_orders.outbox b USING (refund_id) WHERE r.order_id = %s$$, :o_paid),
	$$VALUES (400::bigint, 'pending', 'key-13-refund', true)$$,
	'the refund: 400, pending, under its key, with its outbox event');
SELECT results_eq(
	format($$SELECT event_id, attempts, next_attempt_at <= now(), lease_until, first_sent_at IS NOT NULL
			   FROM ft_orders.outbox WHERE order_id = %s$$, :o_dead),
	format($$VALUES (%s::bigint, 0, true, NULL::timestamptz, true)$$, :dead_event),
	'the requeued event is back in the outbox under its event_id: 0 attempts, due now, keeps first_sent_at');
SELECT is((SELECT count(*)::int FROM ft_orders.dead_letters), 0, 'no dead letter is left');
SELECT is((SELECT status::text || '/' || detail FROM ft_orders.order_events
			WHERE order_id = :o_dead ORDER BY id DESC LIMIT 1),
		  'pending/requeued from dead letters', 'the requeue appended a pending order_events row');
SELECT is((SELECT lookup FROM ft_orders.outbox WHERE order_id = :o_sent), true,
		  'the order sent two hours ago is marked for a look-up');

-------------------------------------------------------------------------------
-- a login role with no grant is refused everything
-------------------------------------------------------------------------------
SET ROLE nobody_user;
SELECT throws_ok(sql, '42501', NULL, 'nobody_user: ' || sql || ' -> 42501')
  FROM unnest(ARRAY[
	'SELECT * FROM ft_orders.queue_status',
	'SELECT * FROM ft_orders.gateway_status',
	'SELECT * FROM ft_orders.worker_status',
	'SELECT * FROM ft_orders.orders',
	'SELECT * FROM ft_orders.dead_letters',
	'SELECT ft_orders.metrics()',
	format('SELECT ft_orders.get_order(%s)', :o_paid),
	format('SELECT ft_orders.cancel_order(%s)', :o_sent),
	format('SELECT ft_orders.refund_order(%s, 100)', :o_paid),
	format('SELECT ft_orders.retry_dead_letter(%s)', :dead_event),
	$$SELECT ft_orders.reconcile('1 hour')$$,
	$$SELECT * FROM ft_orders.place_order('key-13-nobody', 'c13', 100, 'EUR')$$]) AS sql;		-- 12 tests
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
