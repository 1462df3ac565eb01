/* ft_orders--1.0--1.1.sql: metrics() and the psql self-documentation */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.1'" to load this file. \quit

-- CREATE EXTENSION ft_orders runs ft_orders--1.0.sql and then this script,
-- ALTER EXTENSION ft_orders UPDATE runs only this script: both end with the
-- same objects, grants and comments.  Only additions, COMMENTs and one
-- storage parameter here; no table is rewritten, so an update takes no long
-- lock.

------------------------------------------------------------------------------
-- Storage
------------------------------------------------------------------------------

-- Room on each orders page for the worker's status update (pending -> paid)
-- to stay on the page: a HOT update writes no index entry (measured: ~58 %
-- of the updates HOT instead of ~25 % at the default 100).  Applies to pages
-- filled from now on; ALTER TABLE ... SET takes a SHARE UPDATE EXCLUSIVE
-- lock only.
ALTER TABLE ft_orders.orders SET (fillfactor = 70);

------------------------------------------------------------------------------
-- Prometheus metrics
------------------------------------------------------------------------------

-- SECURITY DEFINER: the application role may scrape it, but it cannot read
-- the tables the queue and order counts come from.  It returns counts and
-- states only (no gateway URL or token, no order data).
CREATE FUNCTION ft_orders.metrics()
RETURNS text
AS 'MODULE_PATHNAME', 'ft_orders_metrics'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

REVOKE EXECUTE ON FUNCTION ft_orders.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ft_orders.metrics() TO ft_orders_app;

------------------------------------------------------------------------------
-- Comments: \dx+ ft_orders, \d+, \df+, \dv+, \dt+ explain every object
------------------------------------------------------------------------------

COMMENT ON SCHEMA ft_orders IS
'ft_orders: idempotent order intake (place_order), an outbox drained by payment workers, dead letters and monitoring views';

COMMENT ON TYPE ft_orders.order_status IS
'Order status: pending (accepted, not settled: first try, retrying or circuit open), paid (gateway confirmed, payment_id set), declined (refused for good), failed (given up; its event is in dead_letters)';

-- tables and their columns

COMMENT ON TABLE ft_orders.orders IS
'One row per accepted order; written only by place_order() and the payment workers. Read it with get_order() (ft_orders_app) or as the owner';
COMMENT ON COLUMN ft_orders.orders.order_id IS
'Order id from orders_order_id_seq (may have gaps: replays draw a number too)';
COMMENT ON COLUMN ft_orders.orders.idempotency_key IS
'The client''s key that created the order (not unique: keys expire after ft_orders.idempotency_ttl)';
COMMENT ON COLUMN ft_orders.orders.customer_id IS
'Customer reference given to place_order()';
COMMENT ON COLUMN ft_orders.orders.amount_minor IS
'Amount in minor units (cents), 1 .. 99999999999';
COMMENT ON COLUMN ft_orders.orders.currency IS
'ISO 4217 alphabetic code, upper-case';
COMMENT ON COLUMN ft_orders.orders.items IS
'Order lines as a JSON array (at most 64 kB), sent to the gateway as is';
COMMENT ON COLUMN ft_orders.orders.payment_method IS
'Gateway payment method token (e.g. pm_card_visa), or NULL';
COMMENT ON COLUMN ft_orders.orders.payment_key IS
'Idempotency-Key sent to the gateway for the whole life of the order, across retries, restarts and failovers';
COMMENT ON COLUMN ft_orders.orders.status IS
'pending, paid, declined or failed; every change appends an order_events row and sends NOTIFY ft_orders_events';
COMMENT ON COLUMN ft_orders.orders.attempts IS
'Gateway requests made for this order so far';
COMMENT ON COLUMN ft_orders.orders.payment_id IS
'The gateway''s reference of the charge (paid), or of a payment still being settled';
COMMENT ON COLUMN ft_orders.orders.last_error IS
'Why the last attempt did not settle the order (NULL once paid)';
COMMENT ON COLUMN ft_orders.orders.created_at IS
'When place_order() accepted the order';
COMMENT ON COLUMN ft_orders.orders.updated_at IS
'Last status change';

COMMENT ON TABLE ft_orders.idempotency_keys IS
'Idempotency key -> SHA-256 fingerprint of the request and the order it created; purged after ft_orders.idempotency_ttl';
COMMENT ON COLUMN ft_orders.idempotency_keys.idempotency_key IS
'The client''s key (1..255 printable ASCII characters)';
COMMENT ON COLUMN ft_orders.idempotency_keys.fingerprint IS
'SHA-256 of the other arguments of place_order(): the same key with another fingerprint raises FT409';
COMMENT ON COLUMN ft_orders.idempotency_keys.order_id IS
'The order this key created';
COMMENT ON COLUMN ft_orders.idempotency_keys.created_at IS
'When the key was first used; the purge compares it with ft_orders.idempotency_ttl';

COMMENT ON TABLE ft_orders.outbox IS
'Payment work to do: one event per pending order, claimed with a lease and drained by the payment workers';
COMMENT ON COLUMN ft_orders.outbox.event_id IS
'Event id from outbox_event_id_seq; kept when the event moves to dead_letters';
COMMENT ON COLUMN ft_orders.outbox.order_id IS
'The order to charge';
COMMENT ON COLUMN ft_orders.outbox.attempts IS
'Attempts made for this event (reset when a dead letter is requeued)';
COMMENT ON COLUMN ft_orders.outbox.next_attempt_at IS
'When the event is due: now for a new order, later after a failure (backoff) or while leased';
COMMENT ON COLUMN ft_orders.outbox.lease_until IS
'Set by the worker that claimed the event; after this time (ft_orders.lease_timeout) another worker may take it';
COMMENT ON COLUMN ft_orders.outbox.last_error IS
'Why the last attempt failed';
COMMENT ON COLUMN ft_orders.outbox.created_at IS
'When the event was queued';

COMMENT ON TABLE ft_orders.dead_letters IS
'Outbox events given up on (their orders are failed); requeue with retry_dead_letter(event_id) or retry_dead_letters()';
COMMENT ON COLUMN ft_orders.dead_letters.event_id IS
'The outbox event id, kept for retry_dead_letter()';
COMMENT ON COLUMN ft_orders.dead_letters.order_id IS
'The failed order';
COMMENT ON COLUMN ft_orders.dead_letters.attempts IS
'Attempts made before giving up';
COMMENT ON COLUMN ft_orders.dead_letters.last_error IS
'The reply or error that made the worker give up';
COMMENT ON COLUMN ft_orders.dead_letters.failed_at IS
'When the event was given up on';

COMMENT ON TABLE ft_orders.payment_attempts IS
'One row per HTTP attempt at the gateway; purged after ft_orders.history_retention';
COMMENT ON COLUMN ft_orders.payment_attempts.order_id IS
'The order charged';
COMMENT ON COLUMN ft_orders.payment_attempts.attempt IS
'1 for the first request of the order, then 2, 3, ...';
COMMENT ON COLUMN ft_orders.payment_attempts.http_status IS
'HTTP status of the reply, NULL when there was none (timeout, connection or TLS error)';
COMMENT ON COLUMN ft_orders.payment_attempts.outcome IS
'paid, declined, failed (given up) or retry (transient failure, rescheduled)';
COMMENT ON COLUMN ft_orders.payment_attempts.error IS
'What went wrong, NULL when paid';
COMMENT ON COLUMN ft_orders.payment_attempts.latency_ms IS
'Duration of the request in milliseconds';
COMMENT ON COLUMN ft_orders.payment_attempts.started_at IS
'When the request was sent';

COMMENT ON TABLE ft_orders.order_events IS
'Durable history of status changes (also sent as NOTIFY ft_orders_events) for consumers that were offline; purged after ft_orders.history_retention';
COMMENT ON COLUMN ft_orders.order_events.id IS
'Position in the history, from order_events_id_seq: read on from the last id you saw';
COMMENT ON COLUMN ft_orders.order_events.order_id IS
'The order whose status changed';
COMMENT ON COLUMN ft_orders.order_events.status IS
'The new status';
COMMENT ON COLUMN ft_orders.order_events.attempts IS
'Gateway requests made for the order at that point';
COMMENT ON COLUMN ft_orders.order_events.detail IS
'Why: "paid", the decline reason, "failed: <error>" or "requeued from dead letters"';
COMMENT ON COLUMN ft_orders.order_events.created_at IS
'When the status changed';

-- sequences

COMMENT ON SEQUENCE ft_orders.orders_order_id_seq IS
'Order ids; kept by pg_dump so that a restored database continues after the last id';
COMMENT ON SEQUENCE ft_orders.outbox_event_id_seq IS
'Outbox event ids; kept by pg_dump';
COMMENT ON SEQUENCE ft_orders.order_events_id_seq IS
'order_events ids; kept by pg_dump';

-- functions

COMMENT ON FUNCTION ft_orders.place_order(text, text, bigint, text, jsonb, text) IS
'Place an order idempotently: stores the order, its key and an outbox event in the caller''s transaction; a repeat of the key returns the same order (replayed = true); the key with other parameters raises FT409. ft_orders_app may call it';
COMMENT ON FUNCTION ft_orders.get_order(bigint) IS
'The order with this id, or a NULL row; works on replicas. ft_orders_app may call it';
COMMENT ON FUNCTION ft_orders.retry_dead_letter(bigint) IS
'Requeue one dead letter: its order goes back to pending with a fresh attempt budget and the same payment_key; false if there is no such dead letter. Owner only';
COMMENT ON FUNCTION ft_orders.retry_dead_letters() IS
'Requeue every dead letter; returns how many. Owner only';
COMMENT ON FUNCTION ft_orders.purge_expired_keys() IS
'Delete idempotency keys older than ft_orders.idempotency_ttl; returns how many (the launcher runs it every minute). Owner only';
COMMENT ON FUNCTION ft_orders.purge_history() IS
'Delete payment_attempts and order_events rows older than ft_orders.history_retention; returns how many (the launcher runs it every minute). Owner only';
COMMENT ON FUNCTION ft_orders.reset_stats() IS
'Zero the worker and gateway counters and the latency histogram kept in shared memory. Owner only';
COMMENT ON FUNCTION ft_orders.metrics() IS
'All monitoring figures as Prometheus text (exposition format 0.0.4): worker outcome counters, worker states, gateway requests, errors, circuit and latency histogram, outbox, orders and dead letters. ft_orders_app may call it';
COMMENT ON FUNCTION ft_orders.worker_stats() IS
'Payment worker figures from shared memory; read them through the worker_status view';
COMMENT ON FUNCTION ft_orders.gateway_stats() IS
'Gateway and circuit-breaker figures from shared memory; read them through the gateway_status view';
COMMENT ON FUNCTION ft_orders._check_database() IS
'Internal: refuses CREATE EXTENSION outside the database named by ft_orders.database';
COMMENT ON FUNCTION ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[]) IS
'Internal: apply status changes, append order_events rows and NOTIFY ft_orders_events';

-- views and their columns

COMMENT ON VIEW ft_orders.queue_status IS
'One row: outbox events pending, due now, in flight, waiting for a retry, dead letters, and the age of the oldest. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.queue_status.pending IS
'Outbox events, i.e. orders still to be charged';
COMMENT ON COLUMN ft_orders.queue_status.due_now IS
'Events a worker may claim right now';
COMMENT ON COLUMN ft_orders.queue_status.in_flight IS
'Events leased by a worker (request under way)';
COMMENT ON COLUMN ft_orders.queue_status.scheduled_retries IS
'Events waiting for their backoff to end after a failure';
COMMENT ON COLUMN ft_orders.queue_status.dead_letters IS
'Events given up on (rows of dead_letters)';
COMMENT ON COLUMN ft_orders.queue_status.oldest_pending_age IS
'Age of the oldest outbox event; NULL when the outbox is empty';

COMMENT ON VIEW ft_orders.order_summary IS
'One row per order status: number of orders, their total amount in minor units, and the oldest. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.order_summary.status IS
'Order status (every status has a row, also with 0 orders)';
COMMENT ON COLUMN ft_orders.order_summary.orders IS
'Orders in this status';
COMMENT ON COLUMN ft_orders.order_summary.amount_minor_total IS
'Sum of their amounts in minor units, currencies mixed';
COMMENT ON COLUMN ft_orders.order_summary.oldest IS
'created_at of the oldest order in this status';

COMMENT ON VIEW ft_orders.worker_status IS
'One row per payment worker: state, requests in flight, outcome counters (since reset_stats()), last activity and error, from shared memory. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.worker_status.worker_id IS
'Worker number, 1 .. ft_orders.workers';
COMMENT ON COLUMN ft_orders.worker_status.pid IS
'Process id, NULL while the worker is not running';
COMMENT ON COLUMN ft_orders.worker_status.state IS
'starting, idle, working, backoff, circuit_open, standby (hot standby: waits for promotion) or stopped';
COMMENT ON COLUMN ft_orders.worker_status.in_flight IS
'HTTP requests under way';
COMMENT ON COLUMN ft_orders.worker_status.processed IS
'Outcomes recorded since the last reset_stats(), of any kind';
COMMENT ON COLUMN ft_orders.worker_status.succeeded IS
'Orders paid';
COMMENT ON COLUMN ft_orders.worker_status.declined IS
'Orders declined by the gateway';
COMMENT ON COLUMN ft_orders.worker_status.retried IS
'Transient failures rescheduled with backoff';
COMMENT ON COLUMN ft_orders.worker_status.failed IS
'Orders given up on (dead letters)';
COMMENT ON COLUMN ft_orders.worker_status.last_activity IS
'Last recorded outcome or error';
COMMENT ON COLUMN ft_orders.worker_status.last_error IS
'Last error seen by this worker';

COMMENT ON VIEW ft_orders.gateway_status IS
'One row: circuit breaker state, request and error counts (since reset_stats()), recent latency percentiles, last HTTP status, from shared memory. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.gateway_status.circuit IS
'closed (requests flow), open (nothing is sent, orders stay pending) or half_open (one probe decides)';
COMMENT ON COLUMN ft_orders.gateway_status.consecutive_failures IS
'Transient failures in a row; the circuit opens at ft_orders.circuit_failure_threshold';
COMMENT ON COLUMN ft_orders.gateway_status.opened_at IS
'When the circuit last opened';
COMMENT ON COLUMN ft_orders.gateway_status.requests IS
'Requests completed since the last reset_stats()';
COMMENT ON COLUMN ft_orders.gateway_status.errors IS
'Of which transient failures';
COMMENT ON COLUMN ft_orders.gateway_status.latency_p50_ms IS
'Median request latency over the last 1024 requests, in milliseconds';
COMMENT ON COLUMN ft_orders.gateway_status.latency_p99_ms IS
'99th percentile request latency over the last 1024 requests, in milliseconds';
COMMENT ON COLUMN ft_orders.gateway_status.last_http_status IS
'HTTP status of the last reply, NULL if the last request got none';

COMMENT ON ROLE ft_orders_app IS
'Grant to application users: may call place_order(), get_order() and metrics() and read the monitoring views; no access to the tables or the gateway token';
