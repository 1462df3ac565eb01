-- 06_concurrency.sql: concurrent place_order calls with one key make one
-- order.  Two (and more) other sessions, opened with dblink, do the work so
-- that this session can commit or abort them at will; this session only
-- drives and asserts.  Their writes are committed, so every key carries a
-- per-run suffix and the rows are deleted at the end.
BEGIN;
SELECT plan(30);

SELECT ft_test.conninfo('ft06') AS conninfo, ft_test.run_id('key-06') AS run \gset
SELECT :'run' || '-commit' AS k1, :'run' || '-abort' AS k2, :'run' || '-409' AS k3, :'run' || '-herd' AS k4 \gset

SELECT is(dblink_connect('a', :'conninfo'), 'OK', 'session A connected');
SELECT is(dblink_connect('b', :'conninfo'), 'OK', 'session B connected');
SELECT ft_test.backend_pid('a') AS a_pid, ft_test.backend_pid('b') AS b_pid \gset

-------------------------------------------------------------------------------
-- 1. A places K and commits later; B, with the same K, waits and replays
-------------------------------------------------------------------------------
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT order_id AS a1_id, replayed AS a1_replayed
  FROM dblink('a', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4200, 'EUR', '[{"sku":"C"}]', 'pm_card_visa')$$, :'k1'))
	   AS t(order_id bigint, replayed boolean) \gset
SELECT is(:'a1_replayed'::boolean, false, 'A: first call with K, not committed yet: replayed = false');
SELECT is(dblink_send_query('b', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4200, 'eur', '[{"sku": "C"}]', 'pm_card_visa')$$, :'k1')),
		  1, 'B: same K sent');
SELECT ok(ft_test.waits_for(:b_pid, :a_pid),
		  'B waits for A''s transaction (blocked by A''s pid)');
SELECT is(dblink_is_busy('b'), 1, 'B is still busy while A is open');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = :'k1'), 0,
		  'this session sees no committed order for K yet');
SELECT ok(ft_test.ends('a', 'b'), 'B returns once A commits');
SELECT order_id AS b1_id, replayed AS b1_replayed
  FROM dblink_get_result('b') AS t(order_id bigint, replayed boolean) \gset
SELECT count(*) AS drained FROM dblink_get_result('b') AS t(order_id bigint, replayed boolean) \gset
SELECT is(:b1_id::bigint, :a1_id::bigint, 'B got A''s order_id');
SELECT is(:'b1_replayed'::boolean, true, 'B: replayed = true');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = :'k1'), 1, 'one order for K');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :a1_id), 1, 'one outbox row for K');

-------------------------------------------------------------------------------
-- 2. A places K2 and aborts; B, waiting on K2, creates the order itself
-------------------------------------------------------------------------------
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT order_id AS a2_id, replayed AS a2_replayed
  FROM dblink('a', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4300, 'EUR', '[]', 'pm_card_visa')$$, :'k2'))
	   AS t(order_id bigint, replayed boolean) \gset
SELECT is(:'a2_replayed'::boolean, false, 'A: first call with K2: replayed = false');
SELECT is(dblink_send_query('b', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4300, 'EUR', '[]', 'pm_card_visa')$$, :'k2')),
		  1, 'B: same K2 sent');
SELECT ok(ft_test.waits_for(:b_pid, :a_pid),
		  'B waits for A''s transaction');
SELECT ok(ft_test.ends('a', 'b', 'ROLLBACK'), 'B returns once A aborts');
SELECT order_id AS b2_id, replayed AS b2_replayed
  FROM dblink_get_result('b') AS t(order_id bigint, replayed boolean) \gset
SELECT count(*) AS drained FROM dblink_get_result('b') AS t(order_id bigint, replayed boolean) \gset
SELECT is(:'b2_replayed'::boolean, false, 'B created the order itself: replayed = false');
SELECT isnt(:b2_id::bigint, :a2_id::bigint, 'B''s order is not A''s aborted one');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = :'k2'), 1, 'one order for K2');
SELECT is((SELECT order_id FROM ft_orders.idempotency_keys WHERE idempotency_key = :'k2'), :b2_id::bigint,
		  'the key points at B''s order');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :b2_id), 1, 'one outbox row for K2');

-------------------------------------------------------------------------------
-- 3. A places K3 and commits; B, waiting with other parameters, gets FT409
-------------------------------------------------------------------------------
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT order_id AS a3_id
  FROM dblink('a', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4400, 'EUR', '[]', 'pm_card_visa')$$, :'k3'))
	   AS t(order_id bigint, replayed boolean) \gset
SELECT is(dblink_send_query('b', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4401, 'EUR', '[]', 'pm_card_visa')$$, :'k3')),
		  1, 'B: same K3, other amount, sent');
SELECT ok(ft_test.waits_for(:b_pid, :a_pid),
		  'B waits for A''s transaction');
SELECT ok(ft_test.ends('a', 'b'), 'B returns once A commits');
SET LOCAL client_min_messages = warning;	-- dblink relays B's error as a NOTICE
SELECT count(*) AS drained FROM dblink_get_result('b', false) AS t(order_id bigint, replayed boolean) \gset
SELECT count(*) AS drained FROM dblink_get_result('b', false) AS t(order_id bigint, replayed boolean) \gset
RESET client_min_messages;
SELECT matches(dblink_error_message('b'), 'idempotency key reused with different parameters',
			   'B failed with the FT409 message');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = :'k3'), 1, 'one order for K3');

-------------------------------------------------------------------------------
-- 4. a herd: five sessions send K4 at once; one order, four replays
-------------------------------------------------------------------------------
SELECT count(dblink_connect('h' || i, :'conninfo')) AS herd_connected FROM generate_series(1, 5) i \gset
SELECT sum(dblink_send_query('h' || i, format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-6', 4500, 'EUR', '[]', 'pm_card_visa')$$, :'k4')))::int AS sent
  FROM generate_series(1, 5) i \gset
SELECT ok(ft_test.poll($$(SELECT bool_and(dblink_is_busy('h' || i) = 0) FROM generate_series(1, 5) i)$$),
		  'all five sessions returned');
CREATE TEMP TABLE herd AS
SELECT i, r.order_id, r.replayed
  FROM generate_series(1, 5) i,
	   LATERAL dblink_get_result('h' || i) AS r(order_id bigint, replayed boolean);
SELECT results_eq($$SELECT count(*)::int, count(DISTINCT order_id)::int, count(*) FILTER (WHERE NOT replayed)::int FROM herd$$,
				  $$VALUES (5, 1, 1)$$, 'herd: five answers, one order_id, exactly one not replayed');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = :'k4'), 1, 'one order for K4');
SELECT count(dblink_disconnect('h' || i)) AS herd_gone FROM generate_series(1, 5) i \gset

-------------------------------------------------------------------------------
-- clean up this run's committed rows
-------------------------------------------------------------------------------
SELECT dblink_exec('a', format($$
	WITH o AS (SELECT order_id FROM ft_orders.orders WHERE idempotency_key LIKE %L),
		 x AS (DELETE FROM ft_orders.outbox WHERE order_id IN (SELECT order_id FROM o)),
		 e AS (DELETE FROM ft_orders.order_events WHERE order_id IN (SELECT order_id FROM o)),
		 k AS (DELETE FROM ft_orders.idempotency_keys WHERE idempotency_key LIKE %L)
	DELETE FROM ft_orders.orders WHERE order_id IN (SELECT order_id FROM o)$$,
	:'run' || '%', :'run' || '%')) AS cleanup \gset
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key LIKE :'run' || '%')
		  + (SELECT count(*)::int FROM ft_orders.idempotency_keys WHERE idempotency_key LIKE :'run' || '%'),
		  0, 'this run''s orders and keys are gone again');
SELECT dblink_disconnect('a') AS ignore \gset
SELECT dblink_disconnect('b') AS ignore \gset

SELECT * FROM finish();
ROLLBACK;
