/* ft_orders--1.2--1.3.sql */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.3'" to load this file. \quit

-- #15 gateway limits ---------------------------------------------------------
--
-- gateway_status gains the gateway limits of docs/reference.md, "Gateway
-- limits": rate_limit, concurrency_limit, throttled, paused_until and
-- failure_rate.  A function's OUT columns cannot change in place, so the
-- view and its function are dropped and created again with the same
-- grants and comments (plus the new columns); the C function serves both
-- the old and the new column list, so a server that already runs the new
-- library keeps answering the 1.2 view until the update.

DROP VIEW ft_orders.gateway_status;
DROP FUNCTION ft_orders.gateway_stats();

CREATE FUNCTION ft_orders.gateway_stats(
	OUT circuit text,
	OUT consecutive_failures integer,
	OUT opened_at timestamptz,
	OUT requests bigint,
	OUT errors bigint,
	OUT latency_p50_ms double precision,
	OUT latency_p99_ms double precision,
	OUT last_http_status integer,
	OUT rate_limit double precision,
	OUT concurrency_limit integer,
	OUT throttled bigint,
	OUT paused_until timestamptz,
	OUT failure_rate double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ft_orders_gateway_stats'
LANGUAGE C VOLATILE;

CREATE VIEW ft_orders.gateway_status AS
SELECT * FROM ft_orders.gateway_stats();

REVOKE EXECUTE ON FUNCTION ft_orders.gateway_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ft_orders.gateway_stats() TO ft_orders_app;
GRANT SELECT ON ft_orders.gateway_status TO ft_orders_app;

COMMENT ON FUNCTION ft_orders.gateway_stats() IS
'Gateway, circuit-breaker and gateway-limit figures from shared memory; read them through the gateway_status view';
COMMENT ON VIEW ft_orders.gateway_status IS
'One row: circuit breaker state, request and error counts (since reset_stats()), recent latency percentiles, last HTTP status, rate and concurrency limits, pause and failure rate, from shared memory. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.gateway_status.circuit IS
'closed (requests flow), open (nothing is sent, orders stay pending) or half_open (a few probes decide)';
COMMENT ON COLUMN ft_orders.gateway_status.consecutive_failures IS
'Transient failures in a row (the circuit opens by failure_rate, or when the gateway cannot be reached)';
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
COMMENT ON COLUMN ft_orders.gateway_status.rate_limit IS
'ft_orders.rate_limit: requests per second to the gateway, all workers together; 0 for no limit';
COMMENT ON COLUMN ft_orders.gateway_status.concurrency_limit IS
'Requests each payment worker may have under way now: the adaptive limit, 1 .. ft_orders.max_in_flight (max_in_flight when ft_orders.adaptive_concurrency is off)';
COMMENT ON COLUMN ft_orders.gateway_status.throttled IS
'Times a payment worker held its requests back for the gateway''s pause or for ft_orders.rate_limit, since the last reset_stats()';
COMMENT ON COLUMN ft_orders.gateway_status.paused_until IS
'No request is sent before this time: the gateway answered 429 or 503 with Retry-After; NULL when there is no pause';
COMMENT ON COLUMN ft_orders.gateway_status.failure_rate IS
'Share of the requests of the last 10 seconds that failed transiently (429 left out); NULL when there were none';
