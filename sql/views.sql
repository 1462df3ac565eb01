-- views: the monitoring views and what they show before any worker ran
\set SHOW_CONTEXT never
-- start from empty tables and fresh sequences; the outbox first, as the
-- payment workers lock it before orders: this waits for them, never deadlocks
TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events
	RESTART IDENTITY;


SELECT * FROM ft_orders.queue_status;
SELECT * FROM ft_orders.order_summary;

SELECT order_id FROM ft_orders.place_order('view-1', 'c', 100, 'EUR');
SELECT order_id FROM ft_orders.place_order('view-2', 'c', 250, 'EUR');
SELECT order_id FROM ft_orders.place_order('view-3', 'c', 50, 'USD');

SELECT pending, due_now, in_flight, scheduled_retries, dead_letters,
	   oldest_pending_age >= interval '0' AS has_age
  FROM ft_orders.queue_status;
SELECT status, orders, amount_minor_total, oldest IS NOT NULL AS has_oldest
  FROM ft_orders.order_summary;

-- a leased event is in flight, a rescheduled one is a scheduled retry,
-- a dead letter is counted
UPDATE ft_orders.outbox SET lease_until = now() + interval '1 min',
	   next_attempt_at = now() + interval '1 min', attempts = 1
 WHERE order_id = 1;
UPDATE ft_orders.outbox SET next_attempt_at = now() + interval '1 min', attempts = 2
 WHERE order_id = 2;
WITH d AS (DELETE FROM ft_orders.outbox WHERE order_id = 3 RETURNING event_id, order_id)
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error)
SELECT event_id, order_id, 10, 'HTTP 422' FROM d;
SELECT ft_orders._change_status(ARRAY[3::bigint], ARRAY['failed'::ft_orders.order_status],
	ARRAY[10], ARRAY[NULL::text], ARRAY['HTTP 422'], ARRAY['failed: HTTP 422']);
SELECT pending, due_now, in_flight, scheduled_retries, dead_letters
  FROM ft_orders.queue_status;
SELECT status, orders, amount_minor_total FROM ft_orders.order_summary;

-- requeue: the order is pending again, the event due at once
SELECT ft_orders.retry_dead_letters() AS requeued;
SELECT pending, due_now, in_flight, scheduled_retries, dead_letters
  FROM ft_orders.queue_status;
SELECT status, orders FROM ft_orders.order_summary;
SELECT order_id, status, detail FROM ft_orders.order_events ORDER BY id;

-- the shared-memory views: workers are preloaded but no gateway is set
SELECT circuit, consecutive_failures, requests, errors FROM ft_orders.gateway_status;
SELECT ft_orders.reset_stats();
SELECT requests, errors, latency_p50_ms, latency_p99_ms FROM ft_orders.gateway_status;

-- every public object explains itself
SELECT c.relname, obj_description(c.oid, 'pg_class') IS NOT NULL AS commented
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'ft_orders' AND c.relkind IN ('r', 'v')
 ORDER BY c.relname;
