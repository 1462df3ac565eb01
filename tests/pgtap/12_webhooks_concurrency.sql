-- 12_webhooks_concurrency.sql: apply_gateway_event under concurrency.  Two
-- other sessions (dblink) do the work so that this one can hold their
-- transactions open; their writes are committed, so every key and event id
-- carries a per-run suffix and the rows are deleted at the end.
--   1. the same event delivered twice at once: applied once;
--   2. two outcomes of one order at once: serialized by the order's locks;
--   3. a webhook racing the payment worker's own record of the outcome
--      (the worker's statement of bgworker/outbox.c, ft_final_sql), both
--      ways round: one status change, never two.
BEGIN;
SELECT plan(23);

SELECT ft_test.conninfo('ft12') AS conninfo, ft_test.run_id('wh12') AS run \gset

SELECT is(dblink_connect('a', :'conninfo'), 'OK', 'session A connected');
SELECT is(dblink_connect('b', :'conninfo'), 'OK', 'session B connected');
SELECT ft_test.backend_pid('a') AS a_pid, ft_test.backend_pid('b') AS b_pid \gset

-- three committed orders
SELECT order_id AS o1 FROM dblink('a', format($$SELECT order_id FROM ft_orders.place_order(%L, 'c12', 1200, 'EUR')$$, :'run' || '-1')) AS t(order_id bigint) \gset
SELECT order_id AS o2 FROM dblink('a', format($$SELECT order_id FROM ft_orders.place_order(%L, 'c12', 1201, 'EUR')$$, :'run' || '-2')) AS t(order_id bigint) \gset
SELECT order_id AS o3 FROM dblink('a', format($$SELECT order_id FROM ft_orders.place_order(%L, 'c12', 1202, 'EUR')$$, :'run' || '-3')) AS t(order_id bigint) \gset
SELECT order_id AS o4 FROM dblink('a', format($$SELECT order_id FROM ft_orders.place_order(%L, 'c12', 1203, 'EUR')$$, :'run' || '-4')) AS t(order_id bigint) \gset

-- apply_sql(event id, type, order): the call as text
CREATE FUNCTION pg_temp.apply_sql(id text, type text, ord bigint) RETURNS text LANGUAGE sql AS $$
	SELECT format($f$SELECT ft_orders.apply_gateway_event('generic', %L)$f$,
				  jsonb_build_object('event_id', id, 'type', type,
									 'payment_key', (SELECT payment_key FROM ft_orders.orders WHERE order_id = ord)))
$$;

-------------------------------------------------------------------------------
-- 1. one event, delivered twice at once
-------------------------------------------------------------------------------
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT applied AS a1 FROM dblink('a', pg_temp.apply_sql(:'run' || '-e1', 'payment.succeeded', :o1)) AS t(applied boolean) \gset
SELECT is(:'a1'::boolean, true, 'A applies the event (not committed yet)');
SELECT is(dblink_send_query('b', pg_temp.apply_sql(:'run' || '-e1', 'payment.succeeded', :o1)), 1, 'B: the same event sent');
SELECT ok(ft_test.waits_for(:b_pid, :a_pid), 'B waits for A');
SELECT ok(ft_test.ends('a', 'b'), 'B returns once A commits');
SELECT applied AS b1 FROM dblink_get_result('b') AS t(applied boolean) \gset
SELECT count(*) AS drained FROM dblink_get_result('b') AS t(applied boolean) \gset
SELECT is(:'b1'::boolean, false, 'B: false, the event was recorded by A');
SELECT is((SELECT count(*)::int FROM ft_orders.gateway_events WHERE event_id = :'run' || '-e1'), 1, 'one gateway_events row');
SELECT is((SELECT count(*)::int FROM ft_orders.order_events WHERE order_id = :o1), 1, 'one order_events row');

-------------------------------------------------------------------------------
-- 2. a failure and a success of one order at once
-------------------------------------------------------------------------------
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT applied AS a2 FROM dblink('a', pg_temp.apply_sql(:'run' || '-e2f', 'payment.failed', :o2)) AS t(applied boolean) \gset
SELECT is(dblink_send_query('b', pg_temp.apply_sql(:'run' || '-e2s', 'payment.succeeded', :o2)), 1, 'B: the success of the same order sent');
SELECT ok(ft_test.waits_for(:b_pid, :a_pid), 'B waits for A''s lock on the order');
SELECT ok(ft_test.ends('a', 'b'), 'B returns once A commits');
SELECT applied AS b2 FROM dblink_get_result('b') AS t(applied boolean) \gset
SELECT count(*) AS drained FROM dblink_get_result('b') AS t(applied boolean) \gset
SELECT is(:'a2'::boolean || '/' || :'b2'::boolean, 'true/true', 'both applied, one after the other');
SELECT is((SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = :o2),
		  'declined,paid', 'order 2: declined, then paid (the success wins)');

-------------------------------------------------------------------------------
-- 3. the worker's record and a webhook race
-------------------------------------------------------------------------------
-- the worker's own statement (bgworker/outbox.c, ft_final_sql) for one event
CREATE FUNCTION pg_temp.worker_sql(ord bigint, lease timestamptz) RETURNS text LANGUAGE sql AS $$
	SELECT format($f$WITH r AS (
  SELECT * FROM unnest(ARRAY[%s]::bigint[], ARRAY[%L]::timestamptz[], ARRAY['paid']::text[], ARRAY[1]::int[],
                       ARRAY['pay_worker']::text[], ARRAY[NULL]::text[], ARRAY['paid']::text[])
      AS r(event_id, lease_until, status, order_attempts, payment_id, error, detail)
), x AS (
  DELETE FROM ft_orders.outbox ob USING r
   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until
  RETURNING ob.event_id, ob.order_id, ob.attempts AS event_attempts,
            r.status::ft_orders.order_status AS status, r.order_attempts,
            r.payment_id, r.error, r.detail
)
SELECT coalesce(ft_orders._change_status(array_agg(x.order_id), array_agg(x.status),
                                array_agg(x.order_attempts), array_agg(x.payment_id),
                                array_agg(x.error), array_agg(x.detail)), 0)
  FROM x$f$, (SELECT event_id FROM ft_orders.outbox WHERE order_id = ord), lease)
$$;
-- both orders' events leased by "the worker"
SELECT lease FROM dblink('a', format($$UPDATE ft_orders.outbox SET lease_until = now() + interval '1 min',
		next_attempt_at = now() + interval '1 min', attempts = 1 WHERE order_id IN (%s, %s)
		RETURNING lease_until::text$$, :o3, :o4)) AS t(lease text) LIMIT 1 \gset
SELECT worker_sql AS w3 FROM pg_temp.worker_sql(:o3, :'lease') \gset
SELECT worker_sql AS w4 FROM pg_temp.worker_sql(:o4, :'lease') \gset

-- 3a. the worker records first; the webhook waits, then finds the order paid
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT n AS w3n FROM dblink('a', :'w3') AS t(n int) \gset
SELECT is(:'w3n'::int, 1, '3a: the worker records "paid" (not committed yet)');
SELECT is(dblink_send_query('b', pg_temp.apply_sql(:'run' || '-e3', 'payment.succeeded', :o3)), 1, '3a: the webhook sent');
SELECT ok(ft_test.waits_for(:b_pid, :a_pid), '3a: the webhook waits for the worker');
SELECT ok(ft_test.ends('a', 'b'), '3a: the webhook returns');
SELECT applied AS b3 FROM dblink_get_result('b') AS t(applied boolean) \gset
SELECT count(*) AS drained FROM dblink_get_result('b') AS t(applied boolean) \gset
SELECT is(:'b3'::boolean || ' ' || (SELECT count(*) FROM ft_orders.order_events WHERE order_id = :o3),
		  'false 1', '3a: the webhook is a repeat; one order_events row');

-- 3b. the webhook first; the worker waits, then finds its lease gone
SELECT dblink_exec('b', 'BEGIN') AS ignore \gset
SELECT applied AS b4 FROM dblink('b', pg_temp.apply_sql(:'run' || '-e4', 'payment.succeeded', :o4)) AS t(applied boolean) \gset
SELECT is(dblink_send_query('a', :'w4'), 1, '3b: the worker''s record sent after the webhook''s (not committed)');
SELECT ok(ft_test.waits_for(:a_pid, :b_pid), '3b: the worker waits for the webhook');
SELECT ok(ft_test.ends('b', 'a'), '3b: the worker''s statement returns');
SELECT n AS a4 FROM dblink_get_result('a') AS t(n int) \gset
SELECT count(*) AS drained FROM dblink_get_result('a') AS t(n int) \gset
SELECT is(:'b4'::boolean || ' ' || :'a4' || ' ' ||
		  (SELECT string_agg(detail, ',') FROM ft_orders.order_events WHERE order_id = :o4),
		  format('true 0 paid (webhook payment.succeeded %s-e4)', :'run'),
		  '3b: the webhook applied; the worker changed nothing (its lease was gone); one order_events row');

-- clean up the committed rows
SELECT dblink_exec('a', format($$DELETE FROM ft_orders.gateway_events WHERE event_id LIKE %L;
	DELETE FROM ft_orders.order_events WHERE order_id IN (%s, %s, %s, %s);
	DELETE FROM ft_orders.outbox WHERE order_id IN (%s, %s, %s, %s);
	DELETE FROM ft_orders.idempotency_keys WHERE order_id IN (%s, %s, %s, %s);
	DELETE FROM ft_orders.orders WHERE order_id IN (%s, %s, %s, %s)$$,
	:'run' || '%', :o1, :o2, :o3, :o4, :o1, :o2, :o3, :o4, :o1, :o2, :o3, :o4, :o1, :o2, :o3, :o4)) AS ignore \gset
SELECT dblink_disconnect('a') AS ignore \gset
SELECT dblink_disconnect('b') AS ignore \gset

SELECT * FROM finish();
ROLLBACK;
