/* ft_orders--1.0.sql: the tables, functions and views of ft_orders 1.0 */

\echo Use "CREATE EXTENSION ft_orders" to load this file. \quit

-- Refuse a database the payment workers would never serve.  Calling a C
-- function also loads the library, so the ft_orders.* settings are defined.
CREATE FUNCTION ft_orders._check_database()
RETURNS void
AS 'MODULE_PATHNAME', 'ft_orders_check_database'
LANGUAGE C STRICT
SET search_path = pg_catalog, pg_temp;

SELECT ft_orders._check_database();

------------------------------------------------------------------------------
-- Types and tables
------------------------------------------------------------------------------

CREATE TYPE ft_orders.order_status AS ENUM ('pending', 'paid', 'declined', 'failed');
COMMENT ON TYPE ft_orders.order_status IS
'pending: accepted, not settled yet; paid: gateway confirmed the charge; declined: gateway refused for good; failed: given up, see dead_letters';

CREATE SEQUENCE ft_orders.orders_order_id_seq;

CREATE TABLE ft_orders.orders (
	order_id		bigint PRIMARY KEY
					DEFAULT pg_catalog.nextval('ft_orders.orders_order_id_seq'::pg_catalog.regclass),
	idempotency_key	text NOT NULL,
	customer_id		text NOT NULL,
	amount_minor	bigint NOT NULL CHECK (amount_minor > 0 AND amount_minor <= 99999999999),
	currency		text NOT NULL,
	items			jsonb NOT NULL DEFAULT '[]',
	payment_method	text,
	payment_key		uuid NOT NULL UNIQUE,
	status			ft_orders.order_status NOT NULL DEFAULT 'pending',
	attempts		integer NOT NULL DEFAULT 0,
	payment_id		text,
	last_error		text,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER SEQUENCE ft_orders.orders_order_id_seq OWNED BY ft_orders.orders.order_id;
COMMENT ON TABLE ft_orders.orders IS
'One row per accepted order; written by place_order() and the payment workers only';
COMMENT ON COLUMN ft_orders.orders.payment_key IS
'Idempotency-Key sent to the gateway for the whole life of the order';
COMMENT ON COLUMN ft_orders.orders.attempts IS
'Gateway requests made for this order so far';

-- Keys are purged after ft_orders.idempotency_ttl; a purged key may then
-- start a new order, which is why orders.idempotency_key is not unique.
CREATE TABLE ft_orders.idempotency_keys (
	idempotency_key	text PRIMARY KEY,
	fingerprint		bytea NOT NULL,
	order_id		bigint NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX idempotency_keys_created_at_idx
	ON ft_orders.idempotency_keys USING brin (created_at);
COMMENT ON TABLE ft_orders.idempotency_keys IS
'Idempotency key -> SHA-256 fingerprint of the request and the order it created';

CREATE SEQUENCE ft_orders.outbox_event_id_seq;

-- One row per order that still needs the gateway.  A worker claims a row by
-- pushing next_attempt_at and lease_until forward by ft_orders.lease_timeout;
-- if the worker dies, the row simply becomes due again.
CREATE TABLE ft_orders.outbox (
	event_id		bigint PRIMARY KEY
					DEFAULT pg_catalog.nextval('ft_orders.outbox_event_id_seq'::pg_catalog.regclass),
	order_id		bigint NOT NULL,
	attempts		integer NOT NULL DEFAULT 0,
	next_attempt_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	lease_until		timestamptz,
	last_error		text,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER SEQUENCE ft_orders.outbox_event_id_seq OWNED BY ft_orders.outbox.event_id;
CREATE INDEX outbox_next_attempt_at_idx ON ft_orders.outbox (next_attempt_at);
COMMENT ON TABLE ft_orders.outbox IS
'Payment work to do: one event per pending order, drained by the payment workers';

CREATE TABLE ft_orders.dead_letters (
	event_id		bigint PRIMARY KEY,
	order_id		bigint NOT NULL,
	attempts		integer NOT NULL,
	last_error		text,
	failed_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX dead_letters_order_id_idx ON ft_orders.dead_letters (order_id);
COMMENT ON TABLE ft_orders.dead_letters IS
'Outbox events given up on (order failed); requeue with retry_dead_letter()';

CREATE TABLE ft_orders.payment_attempts (
	order_id		bigint NOT NULL,
	attempt			integer NOT NULL,
	http_status		integer,
	outcome			text NOT NULL
					CHECK (outcome IN ('paid', 'declined', 'failed', 'retry')),
	error			text,
	latency_ms		double precision,
	started_at		timestamptz NOT NULL
);
CREATE INDEX payment_attempts_order_id_idx ON ft_orders.payment_attempts (order_id);
CREATE INDEX payment_attempts_started_at_idx
	ON ft_orders.payment_attempts USING brin (started_at);
COMMENT ON TABLE ft_orders.payment_attempts IS
'One row per HTTP attempt; purged after ft_orders.history_retention';

CREATE TABLE ft_orders.order_events (
	id				bigserial PRIMARY KEY,
	order_id		bigint NOT NULL,
	status			ft_orders.order_status NOT NULL,
	attempts		integer NOT NULL,
	detail			text,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX order_events_order_id_idx ON ft_orders.order_events (order_id);
CREATE INDEX order_events_created_at_idx
	ON ft_orders.order_events USING brin (created_at);
COMMENT ON TABLE ft_orders.order_events IS
'Durable history of status changes (also sent as NOTIFY ft_orders_events); purged after ft_orders.history_retention';

-- pg_dump must keep the data of every table and the sequences' positions.
SELECT pg_catalog.pg_extension_config_dump('ft_orders.orders', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.orders_order_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.outbox_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.payment_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.order_events', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.order_events_id_seq', '');

------------------------------------------------------------------------------
-- Public API
------------------------------------------------------------------------------

CREATE FUNCTION ft_orders.place_order(
	idempotency_key	text,
	customer_id		text,
	amount_minor	bigint,
	currency		text,
	items			jsonb DEFAULT '[]',
	payment_method	text DEFAULT NULL)
RETURNS TABLE (order_id bigint, status ft_orders.order_status, replayed boolean)
AS 'MODULE_PATHNAME', 'ft_orders_place_order'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.place_order(text, text, bigint, text, jsonb, text) IS
'Place an order idempotently: stores the order, its key and an outbox event in the caller''s transaction; a repeat of the key returns the same order (replayed = true); the key with other parameters raises FT409';

CREATE FUNCTION ft_orders.get_order(order_id bigint)
RETURNS ft_orders.orders
AS 'MODULE_PATHNAME', 'ft_orders_get_order'
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.get_order(bigint) IS
'The order with this id, or a NULL row; works on replicas';

CREATE FUNCTION ft_orders.retry_dead_letter(event_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ft_orders_retry_dead_letter'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.retry_dead_letter(bigint) IS
'Requeue one dead letter: its order goes back to pending with a fresh attempt budget; false if there is no such dead letter';

CREATE FUNCTION ft_orders.retry_dead_letters()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ft_orders_retry_dead_letters'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.retry_dead_letters() IS
'Requeue every dead letter; returns how many';

CREATE FUNCTION ft_orders.purge_expired_keys()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ft_orders_purge_expired_keys'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.purge_expired_keys() IS
'Delete idempotency keys older than ft_orders.idempotency_ttl; returns how many (the launcher runs it every minute)';

CREATE FUNCTION ft_orders.purge_history()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ft_orders_purge_history'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.purge_history() IS
'Delete payment_attempts and order_events rows older than ft_orders.history_retention; returns how many (the launcher runs it every minute)';

CREATE FUNCTION ft_orders.reset_stats()
RETURNS void
AS 'MODULE_PATHNAME', 'ft_orders_reset_stats'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ft_orders.reset_stats() IS
'Zero the worker and gateway counters kept in shared memory';

------------------------------------------------------------------------------
-- Status changes: the one way an order's status moves
------------------------------------------------------------------------------

-- Applies a batch of status changes: updates the orders, appends one
-- order_events row each and sends NOTIFY ft_orders_events with
-- {"order_id", "status", "attempts"}.  NULL attempts or payment_id keep the
-- stored value.  Returns the number of orders changed.
CREATE FUNCTION ft_orders._change_status(
	order_ids	bigint[],
	statuses	ft_orders.order_status[],
	attempts	integer[],
	payment_ids	text[],
	errors		text[],
	details		text[])
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH v AS (
		SELECT *
		  FROM unnest($1, $2, $3, $4, $5, $6)
			   AS v(order_id, status, attempts, payment_id, error, detail)
	), u AS (
		UPDATE ft_orders.orders o
		   SET status = v.status,
			   attempts = coalesce(v.attempts, o.attempts),
			   payment_id = coalesce(v.payment_id, o.payment_id),
			   last_error = v.error,
			   updated_at = now()
		  FROM v
		 WHERE o.order_id = v.order_id
	 RETURNING o.order_id, o.status, o.attempts, v.detail
	), e AS (
		INSERT INTO ft_orders.order_events (order_id, status, attempts, detail)
		SELECT u.order_id, u.status, u.attempts, u.detail FROM u
		RETURNING order_events.order_id, order_events.status, order_events.attempts
	)
	SELECT count(pg_notify('ft_orders_events',
						   json_build_object('order_id', e.order_id,
											 'status', e.status,
											 'attempts', e.attempts)::text))::integer
	  FROM e
$$;
COMMENT ON FUNCTION ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[]) IS
'Internal: apply status changes, append order_events rows and NOTIFY ft_orders_events';

------------------------------------------------------------------------------
-- Monitoring
------------------------------------------------------------------------------

CREATE FUNCTION ft_orders.worker_stats(
	OUT worker_id integer,
	OUT pid integer,
	OUT state text,
	OUT in_flight integer,
	OUT processed bigint,
	OUT succeeded bigint,
	OUT declined bigint,
	OUT retried bigint,
	OUT failed bigint,
	OUT last_activity timestamptz,
	OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ft_orders_worker_stats'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ft_orders.worker_stats() IS
'Payment worker figures from shared memory (behind the worker_status view)';

CREATE FUNCTION ft_orders.gateway_stats(
	OUT circuit text,
	OUT consecutive_failures integer,
	OUT opened_at timestamptz,
	OUT requests bigint,
	OUT errors bigint,
	OUT latency_p50_ms double precision,
	OUT latency_p99_ms double precision,
	OUT last_http_status integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ft_orders_gateway_stats'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ft_orders.gateway_stats() IS
'Gateway and circuit-breaker figures from shared memory (behind the gateway_status view)';

CREATE VIEW ft_orders.queue_status AS
SELECT pg_catalog.count(*) AS pending,
	   pg_catalog.count(*) FILTER (WHERE o.next_attempt_at <= pg_catalog.now()) AS due_now,
	   pg_catalog.count(*) FILTER (WHERE o.lease_until > pg_catalog.now()) AS in_flight,
	   pg_catalog.count(*) FILTER (WHERE o.attempts > 0
								   AND o.next_attempt_at > pg_catalog.now()
								   AND (o.lease_until IS NULL OR o.lease_until <= pg_catalog.now()))
			AS scheduled_retries,
	   (SELECT pg_catalog.count(*) FROM ft_orders.dead_letters) AS dead_letters,
	   pg_catalog.now() - pg_catalog.min(o.created_at) AS oldest_pending_age
  FROM ft_orders.outbox o;
COMMENT ON VIEW ft_orders.queue_status IS
'One row: outbox events pending, due now, in flight, waiting for a retry, dead letters, and the age of the oldest';

CREATE VIEW ft_orders.order_summary AS
SELECT s.status,
	   pg_catalog.count(o.order_id) AS orders,
	   COALESCE(pg_catalog.sum(o.amount_minor), 0) AS amount_minor_total,
	   pg_catalog.min(o.created_at) AS oldest
  FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::ft_orders.order_status)) AS s(status)
  LEFT JOIN ft_orders.orders o ON o.status OPERATOR(pg_catalog.=) s.status
 GROUP BY s.status
 ORDER BY s.status;
COMMENT ON VIEW ft_orders.order_summary IS
'One row per order status: number of orders, their total amount in minor units, and the oldest';

CREATE VIEW ft_orders.worker_status AS
SELECT * FROM ft_orders.worker_stats();
COMMENT ON VIEW ft_orders.worker_status IS
'One row per payment worker: state, requests in flight, outcome counters, last activity and error';

CREATE VIEW ft_orders.gateway_status AS
SELECT * FROM ft_orders.gateway_stats();
COMMENT ON VIEW ft_orders.gateway_status IS
'One row: circuit breaker state, request and error counts, recent latency percentiles, last HTTP status';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'ft_orders_app') THEN
		CREATE ROLE ft_orders_app NOLOGIN;
	END IF;
END
$$;
COMMENT ON ROLE ft_orders_app IS
'Grant to application users: may place and read orders and read the ft_orders monitoring views';

REVOKE ALL ON SCHEMA ft_orders FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA ft_orders FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA ft_orders FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ft_orders FROM PUBLIC;

GRANT USAGE ON SCHEMA ft_orders TO ft_orders_app;
GRANT EXECUTE ON FUNCTION
	ft_orders.place_order(text, text, bigint, text, jsonb, text),
	ft_orders.get_order(bigint),
	ft_orders.worker_stats(),
	ft_orders.gateway_stats()
TO ft_orders_app;
GRANT SELECT ON
	ft_orders.queue_status,
	ft_orders.order_summary,
	ft_orders.worker_status,
	ft_orders.gateway_status
TO ft_orders_app;
