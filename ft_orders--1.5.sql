/* ft_orders--1.5.sql: the whole schema of ft_orders 1.5, for a fresh install */

\echo Use "CREATE EXTENSION ft_orders" to load this file. \quit

-- This is where the current definition of every object lives.  CREATE
-- EXTENSION ft_orders runs this file alone (a direct install script wins
-- over the update path); ALTER EXTENSION ft_orders UPDATE runs the update
-- scripts from the installed version on (ft_orders--1.0.sql and
-- ft_orders--1.0--1.1.sql .. ft_orders--1.4--1.5.sql, released, never
-- edited).  Both end with the same catalogue: objects, column order,
-- definitions, grants, pg_init_privs, comments and extconfig
-- (tests/integration/install_script.sh compares them).  The next version
-- ships ft_orders--1.5--1.6.sql and a new one-file ft_orders--1.6.sql;
-- docs/design.md, "Install scripts".
--
-- Two differences are inherent and left out of the comparison: a column
-- the update path added with ALTER TABLE ADD COLUMN and a default
-- (orders.match_by_order_id, refunds.key_in_metadata, ...) keeps that
-- default as the "missing value" of the rows of before, which a column
-- created with its table has no use for; and attnum gaps from dropped
-- columns (none so far).  Columns added by an update come last in their
-- table here too, in the order the updates added them.

------------------------------------------------------------------------------
-- Install safety
------------------------------------------------------------------------------

-- Refuse a database the payment workers would never serve, and a schema
-- ft_orders that a role short of superuser controls.  Calling a C function
-- also loads the library, so the ft_orders.* settings are defined.
CREATE FUNCTION ft_orders._check_database()
RETURNS void
AS 'MODULE_PATHNAME', 'ft_orders_check_database'
LANGUAGE C STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders._check_database() IS
'Internal: refuses CREATE EXTENSION in a database that ft_orders.database does not list';

SELECT ft_orders._check_database();

COMMENT ON SCHEMA ft_orders IS
'ft_orders: idempotent order intake (place_order), an outbox drained by payment workers, dead letters and monitoring views';

------------------------------------------------------------------------------
-- Types
------------------------------------------------------------------------------

CREATE TYPE ft_orders.order_status AS ENUM (
	'pending', 'paid', 'declined', 'failed',
	'action_required', 'canceled', 'refunded', 'partially_refunded');
COMMENT ON TYPE ft_orders.order_status IS
'pending: accepted, not settled yet; action_required: the customer must act (3-D Secure), see next_action; paid: gateway confirmed the charge; declined: gateway refused for good; failed: given up, see dead_letters; canceled: canceled before it was charged; partially_refunded / refunded: paid, then part / all of it refunded';

------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------

-- Orders.  fillfactor 70 leaves room on each page for the worker's status
-- update (pending -> paid) to stay on the page: a HOT update writes no
-- index entry.
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
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	-- lifecycle (1.3)
	next_action			jsonb,
	client_secret		text,
	cancel_requested_at	timestamptz,
	cancel_reason		text,
	refunded_minor		bigint NOT NULL DEFAULT 0,
	-- matching by identity (1.5)
	match_by_order_id	boolean NOT NULL DEFAULT false
) WITH (fillfactor = 70);
ALTER SEQUENCE ft_orders.orders_order_id_seq OWNED BY ft_orders.orders.order_id;
-- how webhook events find an order by the reference the worker stored
CREATE INDEX orders_payment_id_idx ON ft_orders.orders (payment_id)
	WHERE payment_id IS NOT NULL;
COMMENT ON TABLE ft_orders.orders IS
'One row per accepted order; written only by place_order() and the payment workers. Read it with get_order() (ft_orders_app) or as the owner';
COMMENT ON COLUMN ft_orders.orders.payment_key IS
'Idempotency-Key sent to the gateway for the whole life of the order, across retries, restarts and failovers; derived from the database''s key space, the idempotency key, the request fingerprint and the key''s purge generation (orders placed under 1.2 and 1.3: without the key space; before 1.2: random)';
COMMENT ON COLUMN ft_orders.orders.attempts IS
'Gateway requests made for this order so far';
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
COMMENT ON COLUMN ft_orders.orders.status IS
'pending, paid, declined or failed; every change appends an order_events row and sends NOTIFY ft_orders_events';
COMMENT ON COLUMN ft_orders.orders.payment_id IS
'The gateway''s reference of the charge (paid), or of a payment still being settled';
COMMENT ON COLUMN ft_orders.orders.last_error IS
'Why the last attempt did not settle the order (NULL once paid)';
COMMENT ON COLUMN ft_orders.orders.created_at IS
'When place_order() accepted the order';
COMMENT ON COLUMN ft_orders.orders.updated_at IS
'Last status change';
COMMENT ON COLUMN ft_orders.orders.next_action IS
'action_required: what the customer must do (the gateway''s next_action), else NULL';
COMMENT ON COLUMN ft_orders.orders.client_secret IS
'action_required: the secret the browser needs to finish the payment (Stripe: the PaymentIntent''s client_secret)';
COMMENT ON COLUMN ft_orders.orders.cancel_requested_at IS
'When cancel_order() was called for an order whose charge was in flight or unknown; honoured once the outcome is known';
COMMENT ON COLUMN ft_orders.orders.cancel_reason IS
'The reason given to cancel_order()';
COMMENT ON COLUMN ft_orders.orders.refunded_minor IS
'Sum of the succeeded refunds, in minor units';
COMMENT ON COLUMN ft_orders.orders.match_by_order_id IS
'true for an order whose first request may have gone out without its payment_key (placed before 1.4): a Stripe object without metadata.payment_key is then matched to it by metadata.order_id; false for every order placed from 1.5 on';
COMMENT ON SEQUENCE ft_orders.orders_order_id_seq IS
'Order ids; kept by pg_dump so that a restored database continues after the last id';

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
'Idempotency key -> SHA-256 fingerprint of the request and the order it created; purged after ft_orders.idempotency_ttl';
COMMENT ON COLUMN ft_orders.idempotency_keys.idempotency_key IS
'The client''s key (1..255 printable ASCII characters)';
COMMENT ON COLUMN ft_orders.idempotency_keys.fingerprint IS
'SHA-256 of the other arguments of place_order(): the same key with another fingerprint raises FT409';
COMMENT ON COLUMN ft_orders.idempotency_keys.order_id IS
'The order this key created';
COMMENT ON COLUMN ft_orders.idempotency_keys.created_at IS
'When the key was first used; the purge compares it with ft_orders.idempotency_ttl';

-- The purge generation of each key ever purged: place_order derives a new
-- order's payment_key from its idempotency key, the request fingerprint,
-- the key's generation and the database's key space (_payment_key).
-- Growth: one row per distinct key ever purged, kept for good, like the
-- orders it guards: a row deleted while orders of its key exist would make
-- the key's next order derive the payment_key of an earlier one
-- (place_order then refuses it with 40001).
CREATE TABLE ft_orders.idempotency_key_generations (
	idempotency_key	text PRIMARY KEY,
	generation		bigint NOT NULL CHECK (generation > 0),
	purged_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ft_orders.idempotency_key_generations IS
'Purge generation per idempotency key: purge_expired_keys() counts it up, place_order() derives payment keys from it; one row per key ever purged, kept for good';
COMMENT ON COLUMN ft_orders.idempotency_key_generations.idempotency_key IS
'The client''s key that was purged';
COMMENT ON COLUMN ft_orders.idempotency_key_generations.generation IS
'How many times the key was purged: the generation of the key''s next order';
COMMENT ON COLUMN ft_orders.idempotency_key_generations.purged_at IS
'When the key was last purged';

-- One row per charge or refund that still needs the gateway.  A worker
-- claims a row by pushing next_attempt_at and lease_until forward by
-- ft_orders.lease_timeout; if the worker dies, the row simply becomes due
-- again.  refund_id NULL: charge the order; else send that refund.
CREATE SEQUENCE ft_orders.outbox_event_id_seq;

CREATE TABLE ft_orders.outbox (
	event_id		bigint PRIMARY KEY
					DEFAULT pg_catalog.nextval('ft_orders.outbox_event_id_seq'::pg_catalog.regclass),
	order_id		bigint NOT NULL,
	attempts		integer NOT NULL DEFAULT 0,
	next_attempt_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	lease_until		timestamptz,
	last_error		text,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	-- refunds and look-ups (1.3)
	refund_id		bigint,
	first_sent_at	timestamptz,
	lookup			boolean NOT NULL DEFAULT false
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
ALTER SEQUENCE ft_orders.outbox_event_id_seq OWNED BY ft_orders.outbox.event_id;
CREATE INDEX outbox_next_attempt_at_idx ON ft_orders.outbox (next_attempt_at);
CREATE INDEX outbox_order_id_idx ON ft_orders.outbox (order_id);
COMMENT ON TABLE ft_orders.outbox IS
'Payment work to do: one event per pending order, claimed with a lease and drained by the payment workers';
COMMENT ON COLUMN ft_orders.outbox.event_id IS
'Event id from outbox_event_id_seq; kept when the event moves to dead_letters';
COMMENT ON COLUMN ft_orders.outbox.order_id IS
'The order to charge';
COMMENT ON COLUMN ft_orders.outbox.attempts IS
'Attempts of this event that count towards ft_orders.max_attempts: requests answered about the order, not those an unreachable, refusing or overloaded gateway failed (every request is in payment_attempts and orders.attempts); reset when a dead letter is requeued';
COMMENT ON COLUMN ft_orders.outbox.next_attempt_at IS
'When the event is due: now for a new order, later after a failure (backoff) or while leased';
COMMENT ON COLUMN ft_orders.outbox.lease_until IS
'Set by the worker that claimed the event; after this time (ft_orders.lease_timeout) another worker may take it';
COMMENT ON COLUMN ft_orders.outbox.last_error IS
'Why the last attempt failed';
COMMENT ON COLUMN ft_orders.outbox.created_at IS
'When the event was queued';
COMMENT ON COLUMN ft_orders.outbox.refund_id IS
'NULL: charge the order; else send this refund';
COMMENT ON COLUMN ft_orders.outbox.first_sent_at IS
'When a request of this work may first have reached the gateway; older than ft_orders.gateway_key_ttl: look it up before sending again';
COMMENT ON COLUMN ft_orders.outbox.lookup IS
'Look the work up at the gateway before sending it again (reconcile(), cancel_order(), action_required)';
COMMENT ON SEQUENCE ft_orders.outbox_event_id_seq IS
'Outbox event ids; kept by pg_dump';

CREATE TABLE ft_orders.dead_letters (
	event_id		bigint PRIMARY KEY,
	order_id		bigint NOT NULL,
	attempts		integer NOT NULL,
	last_error		text,
	failed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	-- what a requeue needs (1.3)
	refund_id		bigint,
	first_sent_at	timestamptz
);
CREATE INDEX dead_letters_order_id_idx ON ft_orders.dead_letters (order_id);
COMMENT ON TABLE ft_orders.dead_letters IS
'Outbox events given up on (their orders are failed); requeue with retry_dead_letter(event_id) or retry_dead_letters()';
COMMENT ON COLUMN ft_orders.dead_letters.event_id IS
'The outbox event id, kept for retry_dead_letter()';
COMMENT ON COLUMN ft_orders.dead_letters.order_id IS
'The failed order';
COMMENT ON COLUMN ft_orders.dead_letters.attempts IS
'Attempts that counted towards ft_orders.max_attempts before giving up (1 for a permanent refusal)';
COMMENT ON COLUMN ft_orders.dead_letters.last_error IS
'The reply or error that made the worker give up';
COMMENT ON COLUMN ft_orders.dead_letters.failed_at IS
'When the event was given up on';
COMMENT ON COLUMN ft_orders.dead_letters.refund_id IS
'NULL: the charge of the order; else the refund given up on';
COMMENT ON COLUMN ft_orders.dead_letters.first_sent_at IS
'outbox.first_sent_at of the event, restored when it is requeued';

CREATE TABLE ft_orders.payment_attempts (
	order_id		bigint NOT NULL,
	attempt			integer NOT NULL,
	http_status		integer,
	outcome			text NOT NULL
					CHECK (outcome IN ('paid', 'declined', 'failed', 'retry', 'unknown',
									   'canceled', 'action_required', 'refunded', 'refund_failed')),
	error			text,
	latency_ms		double precision,
	started_at		timestamptz NOT NULL,
	-- what the request was (1.3)
	request			text NOT NULL DEFAULT 'charge'
					CHECK (request IN ('charge', 'lookup', 'refund', 'refund_lookup', 'cancel')),
	refund_id		bigint
);
CREATE INDEX payment_attempts_order_id_idx ON ft_orders.payment_attempts (order_id);
CREATE INDEX payment_attempts_started_at_idx
	ON ft_orders.payment_attempts USING brin (started_at);
COMMENT ON TABLE ft_orders.payment_attempts IS
'One row per HTTP attempt at the gateway (the payment audit trail); purged after ft_orders.audit_retention';
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
COMMENT ON COLUMN ft_orders.payment_attempts.request IS
'charge (POST), lookup (GET of the payment), refund (POST), refund_lookup (GET of the refund) or cancel (POST: cancel the unconfirmed payment of a canceled order)';
COMMENT ON COLUMN ft_orders.payment_attempts.refund_id IS
'The refund sent or looked up, NULL for a charge';

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
'Durable history of status changes (also sent as NOTIFY ft_orders_events) for consumers that were offline, and the payment audit trail; purged after ft_orders.audit_retention';
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
COMMENT ON SEQUENCE ft_orders.order_events_id_seq IS
'order_events ids; kept by pg_dump';

CREATE SEQUENCE ft_orders.refunds_refund_id_seq;
CREATE TABLE ft_orders.refunds (
	refund_id			bigint PRIMARY KEY
						DEFAULT pg_catalog.nextval('ft_orders.refunds_refund_id_seq'::pg_catalog.regclass),
	order_id			bigint NOT NULL,
	amount_minor		bigint NOT NULL CHECK (amount_minor > 0),
	currency			text NOT NULL,
	idempotency_key		text NOT NULL,
	refund_key			uuid NOT NULL UNIQUE,
	status				text NOT NULL DEFAULT 'pending'
						CHECK (status IN ('pending', 'succeeded', 'failed')),
	gateway_refund_id	text,
	reason				text,
	last_error			text,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (order_id, idempotency_key),
	-- refund_key sent as metadata (1.5)
	key_in_metadata		boolean NOT NULL DEFAULT true
);
ALTER SEQUENCE ft_orders.refunds_refund_id_seq OWNED BY ft_orders.refunds.refund_id;
CREATE INDEX refunds_order_id_idx ON ft_orders.refunds (order_id);
CREATE INDEX refunds_gateway_refund_id_idx ON ft_orders.refunds (gateway_refund_id)
	WHERE gateway_refund_id IS NOT NULL;
COMMENT ON TABLE ft_orders.refunds IS
'One row per refund (refund_order(), or the automatic refund of an order canceled while its charge was in flight); sent by the payment workers under refund_key';
COMMENT ON COLUMN ft_orders.refunds.refund_id IS
'Refund id from refunds_refund_id_seq, returned by refund_order()';
COMMENT ON COLUMN ft_orders.refunds.order_id IS
'The order refunded';
COMMENT ON COLUMN ft_orders.refunds.amount_minor IS
'Amount refunded, in the order''s minor units; pending and succeeded refunds of an order never sum above its amount';
COMMENT ON COLUMN ft_orders.refunds.currency IS
'The order''s currency';
COMMENT ON COLUMN ft_orders.refunds.idempotency_key IS
'The caller''s key (refund_order()), unique per order: a repeat returns the same refund';
COMMENT ON COLUMN ft_orders.refunds.refund_key IS
'Idempotency-Key sent to the gateway for this refund, derived from the key, the order''s payment_key and the amount';
COMMENT ON COLUMN ft_orders.refunds.status IS
'pending (not settled yet), succeeded or failed (the gateway refused it)';
COMMENT ON COLUMN ft_orders.refunds.gateway_refund_id IS
'The gateway''s reference of the refund';
COMMENT ON COLUMN ft_orders.refunds.reason IS
'Why: "canceled: ..." for the refund of a canceled order, else NULL';
COMMENT ON COLUMN ft_orders.refunds.last_error IS
'Why the last attempt did not settle the refund';
COMMENT ON COLUMN ft_orders.refunds.created_at IS
'When the refund was requested';
COMMENT ON COLUMN ft_orders.refunds.updated_at IS
'Last change of status';
COMMENT ON COLUMN ft_orders.refunds.key_in_metadata IS
'true for a refund created from 1.5 on: the stripe providers send its refund_key as metadata[refund_key]';
COMMENT ON SEQUENCE ft_orders.refunds_refund_id_seq IS
'Refund ids; kept by pg_dump';

-- Every webhook event received, once per (provider, event_id).
CREATE TABLE ft_orders.gateway_events (
	provider		text NOT NULL,
	event_id		text NOT NULL,
	type			text NOT NULL,
	order_id		bigint,
	refund_id		bigint,
	applied			boolean NOT NULL DEFAULT false,
	detail			text,
	payload			jsonb NOT NULL,
	received_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (provider, event_id)
);
CREATE INDEX gateway_events_order_id_idx ON ft_orders.gateway_events (order_id);
-- purge_history() deletes rows older than ft_orders.history_retention
CREATE INDEX gateway_events_received_at_idx
	ON ft_orders.gateway_events USING brin (received_at);
COMMENT ON TABLE ft_orders.gateway_events IS
'Every webhook event received, once per (provider, event_id): what it was, the order or refund it concerned, whether it changed anything and why (detail); purged after ft_orders.history_retention';
COMMENT ON COLUMN ft_orders.gateway_events.provider IS
'stripe or generic';
COMMENT ON COLUMN ft_orders.gateway_events.event_id IS
'The gateway''s event id (Stripe: evt_...; generic: event_id); a repeat is not applied again';
COMMENT ON COLUMN ft_orders.gateway_events.type IS
'The gateway''s event type, e.g. payment_intent.succeeded, payment.failed';
COMMENT ON COLUMN ft_orders.gateway_events.order_id IS
'The order the event concerned, NULL when none was found';
COMMENT ON COLUMN ft_orders.gateway_events.refund_id IS
'The refund the event concerned (refund events), NULL otherwise';
COMMENT ON COLUMN ft_orders.gateway_events.applied IS
'true when the event changed the order or refund; false for history (a late failure after a success), repeats of a settled outcome, unknown orders and unhandled types';
COMMENT ON COLUMN ft_orders.gateway_events.detail IS
'What the event did, or why it was not applied';
COMMENT ON COLUMN ft_orders.gateway_events.payload IS
'The event as received';
COMMENT ON COLUMN ft_orders.gateway_events.received_at IS
'When it was first received';

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
SELECT pg_catalog.pg_extension_config_dump('ft_orders.idempotency_key_generations', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.refunds', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.refunds_refund_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.gateway_events', '');

------------------------------------------------------------------------------
-- Order intake and payment keys
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
'Place an order idempotently: stores the order, its key and an outbox event in the caller''s transaction; a repeat of the key returns the same order (replayed = true); the key with other parameters raises FT409. The payment_key is derived from the database''s key space, the key, the request and the key''s purge generation. ft_orders_app may call it';

CREATE FUNCTION ft_orders.get_order(order_id bigint)
RETURNS ft_orders.orders
AS 'MODULE_PATHNAME', 'ft_orders_get_order'
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.get_order(bigint) IS
'The order with this id, or a NULL row; works on replicas. ft_orders_app and ft_orders_operator may call it';

-- A new order's payment_key: rule v2 (from 1.4 on) hashes the database's
-- key space (system identifier and database name) with the idempotency
-- key, the request fingerprint and the purge generation; rule v1 (orders
-- placed under 1.2 and 1.3) leaves the key space out and stays for
-- recomputing their keys.  No SET search_path: C functions that resolve
-- no names (and SET would cost a GUC save/restore on every order).
CREATE FUNCTION ft_orders._key_space()
RETURNS bytea
AS 'MODULE_PATHNAME', 'ft_orders_key_space'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._key_space() IS
'Internal: the key space of this database''s payment keys: the system identifier (8 bytes, big-endian) followed by the database name';

CREATE FUNCTION ft_orders._payment_key(idempotency_key text, fingerprint bytea, generation bigint, key_space bytea)
RETURNS uuid
AS 'MODULE_PATHNAME', 'ft_orders_payment_key_v2'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint, bytea) IS
'Internal: the payment_key of an order placed from 1.4 on, a version 8 UUID from SHA-256 of ("ft_orders payment_key v2", key space, idempotency key, request fingerprint, purge generation), each length-prefixed';

CREATE FUNCTION ft_orders._payment_key(idempotency_key text, fingerprint bytea, generation bigint)
RETURNS uuid
AS 'MODULE_PATHNAME', 'ft_orders_payment_key'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint) IS
'Internal: the payment_key of an order placed under 1.2 or 1.3 (rule v1), a version 8 UUID from SHA-256 of ("ft_orders payment_key v1", idempotency key, request fingerprint, purge generation), each length-prefixed';

------------------------------------------------------------------------------
-- Status changes: the one way an order's status moves
------------------------------------------------------------------------------

-- Applies a batch of status changes: updates the orders, appends one
-- order_events row each and sends NOTIFY ft_orders_events (with
-- next_action and client_secret for action_required; no NOTIFY, a
-- WARNING, while the notification queue is fuller than
-- ft_orders.notify_max_queue_usage).  NULL attempts or payment_id keep the
-- stored value.  PL/pgSQL: it plans its statement once per session.
CREATE FUNCTION ft_orders._change_status(
	order_ids	bigint[],
	statuses	ft_orders.order_status[],
	attempts	integer[],
	payment_ids text[],
	errors		text[],
	details		text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed		integer;
	notified	integer;
	usage		float8 := pg_notification_queue_usage();
	max_usage	float8 := coalesce(nullif(current_setting('ft_orders.notify_max_queue_usage', true), '')::float8,
								   0.5);
	notify		boolean := usage < max_usage;
BEGIN
	WITH v AS (
		SELECT *
		  FROM unnest(order_ids, statuses, attempts, payment_ids, errors, details)
			   AS v(order_id, status, attempts, payment_id, error, detail)
	), u AS (
		UPDATE ft_orders.orders o
		   SET status = v.status,
			   attempts = coalesce(v.attempts, o.attempts),
			   payment_id = coalesce(v.payment_id, o.payment_id),
			   last_error = v.error,
			   next_action = CASE WHEN v.status = 'action_required' THEN o.next_action END,
			   client_secret = CASE WHEN v.status = 'action_required' THEN o.client_secret END,
			   updated_at = now()
		  FROM v
		 WHERE o.order_id = v.order_id
	 RETURNING o.order_id, o.status, o.attempts, v.detail
	), e AS (
		INSERT INTO ft_orders.order_events (order_id, status, attempts, detail)
		SELECT u.order_id, u.status, u.attempts, u.detail FROM u
		RETURNING order_events.order_id, order_events.status, order_events.attempts
	)
	SELECT count(*)::integer,
		   count(CASE WHEN notify
					  THEN pg_notify('ft_orders_events'::text,
									 json_build_object('order_id', e.order_id,
													   'status', e.status,
													   'attempts', e.attempts)::text)
				 END)::integer
	  INTO changed, notified
	  FROM e;
	IF changed > 0 AND NOT notify AND max_usage > 0 THEN
		RAISE WARNING 'ft_orders: % status change(s) recorded without NOTIFY ft_orders_events: the notification queue is % %% full',
			changed, round((usage * 100)::numeric, 4)
			USING DETAIL = format('ft_orders.notify_max_queue_usage is %s; order_events holds every change.', max_usage),
				  HINT = 'A session that LISTENs and stays idle in a transaction holds the queue back: see pg_stat_activity.';
	END IF;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[]) IS
'Internal: the one way an order''s status moves (payment workers, retry_dead_letter, cancel_order, refunds, webhooks): apply status changes, append order_events rows and NOTIFY ft_orders_events with order_id, status and attempts (no NOTIFY, a WARNING, while the notification queue is fuller than ft_orders.notify_max_queue_usage)';

------------------------------------------------------------------------------
-- Dead letters and housekeeping
------------------------------------------------------------------------------

-- Requeueing runs with the owner's rights, as cancel_order and
-- refund_order do, so that the right to requeue is one EXECUTE grant.
CREATE FUNCTION ft_orders.retry_dead_letter(event_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ft_orders_retry_dead_letter'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.retry_dead_letter(bigint) IS
'Requeue one dead letter: its order goes back to pending with a fresh attempt budget and the same payment_key (a refund''s: the refund is sent again, the order keeps its status); false if there is no such dead letter. Runs with the owner''s rights; ft_orders_operator may call it';

CREATE FUNCTION ft_orders.retry_dead_letters()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ft_orders_retry_dead_letters'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.retry_dead_letters() IS
'Requeue every dead letter; returns how many. Owner only';

CREATE FUNCTION ft_orders.purge_expired_keys()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ft_orders_purge_expired_keys'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.purge_expired_keys() IS
'Delete idempotency keys older than ft_orders.idempotency_ttl and count each one''s purge generation up; returns how many (the launcher runs it every minute). Owner only';

CREATE FUNCTION ft_orders.purge_history()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ft_orders_purge_history'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.purge_history() IS
'Delete payment_attempts and order_events rows older than ft_orders.audit_retention and gateway_events rows older than ft_orders.history_retention; returns how many (the launcher runs it every minute). Owner only';

CREATE FUNCTION ft_orders.reset_stats()
RETURNS void
AS 'MODULE_PATHNAME', 'ft_orders_reset_stats'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ft_orders.reset_stats() IS
'Zero the worker and gateway counters and the latency histogram kept in shared memory. Owner only';

------------------------------------------------------------------------------
-- Refunds
------------------------------------------------------------------------------

-- The refund of (order, key): created with its outbox event, or the one
-- that exists.  Caller holds the order's row lock and has checked the
-- order.  Raises FT409 when the key names a refund of another amount and
-- 22023 when the amount is above what is left.  refund_key: the
-- _payment_key derivation of ("refund <payment_key> <key>", SHA-256 of
-- "refund:<amount>", generation 0).  Every call of one of the extension's
-- functions names its exact argument types, so that no overload can
-- capture it.
CREATE FUNCTION ft_orders._create_refund(
	p_order_id		bigint,
	p_amount_minor	bigint,
	p_key			text,
	p_reason		text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o			ft_orders.orders;
	r			ft_orders.refunds;
	committed	bigint;
	new_id		bigint;
BEGIN
	SELECT * INTO STRICT o FROM ft_orders.orders WHERE order_id = p_order_id;
	SELECT * INTO r FROM ft_orders.refunds
	 WHERE order_id = p_order_id AND idempotency_key = p_key;
	IF FOUND THEN
		IF p_amount_minor IS NOT NULL AND r.amount_minor <> p_amount_minor THEN
			RAISE EXCEPTION 'idempotency key reused with different parameters'
				USING ERRCODE = 'FT409',
					  DETAIL = format('Refund %s of order %s under key "%s" is of %s, not %s.',
									  r.refund_id, p_order_id, p_key, r.amount_minor, p_amount_minor);
		END IF;
		RETURN r.refund_id;
	END IF;

	SELECT coalesce(sum(amount_minor), 0) INTO committed
	  FROM ft_orders.refunds
	 WHERE order_id = p_order_id AND status IN ('pending', 'succeeded');
	IF p_amount_minor IS NULL THEN
		p_amount_minor := o.amount_minor - committed;
	END IF;
	IF p_amount_minor <= 0 OR p_amount_minor > o.amount_minor - committed THEN
		RAISE EXCEPTION 'invalid value for argument "amount_minor"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Order %s was paid %s; %s is refunded or being refunded, %s is left.',
								  p_order_id, o.amount_minor, committed, o.amount_minor - committed);
	END IF;

	INSERT INTO ft_orders.refunds (order_id, amount_minor, currency, idempotency_key, refund_key, reason)
	VALUES (p_order_id, p_amount_minor, o.currency, p_key,
			ft_orders._payment_key(('refund ' || o.payment_key::text || ' ' || p_key)::text,
								   sha256(convert_to('refund:' || p_amount_minor::text, 'UTF8'))::bytea,
								   0::bigint),
			p_reason)
	RETURNING refund_id INTO new_id;
	INSERT INTO ft_orders.outbox (order_id, refund_id) VALUES (p_order_id, new_id);
	PERFORM ft_orders._change_status(ARRAY[p_order_id]::bigint[], ARRAY[o.status]::ft_orders.order_status[],
									 NULL::integer[], NULL::text[], NULL::text[],
									 ARRAY[format('refund %s of %s requested', new_id, p_amount_minor)]::text[]);
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION ft_orders._create_refund(bigint, bigint, text, text) IS
'Internal: create a refund and its outbox event under the order''s row lock (refund_order, and the automatic refund of a canceled order)';

-- The order named by the order_id argument of refund_order() or
-- cancel_order(), locked.
CREATE FUNCTION ft_orders._order_arg(order_id bigint)
RETURNS ft_orders.orders
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
BEGIN
	SELECT * INTO o FROM ft_orders.orders WHERE orders.order_id = _order_arg.order_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invalid value for argument "order_id"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('There is no order %s.', _order_arg.order_id);
	END IF;
	RETURN o;
END
$$;
COMMENT ON FUNCTION ft_orders._order_arg(bigint) IS
'Internal: the order an order_id argument names, locked FOR UPDATE; 22023 when there is none (refund_order, cancel_order)';

CREATE FUNCTION ft_orders.refund_order(
	order_id		bigint,
	amount_minor	bigint DEFAULT NULL,
	idempotency_key	text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	k		text := idempotency_key;
BEGIN
	IF refund_order.order_id IS NULL THEN
		RAISE EXCEPTION 'argument "order_id" must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF refund_order.amount_minor IS NOT NULL AND
	   (refund_order.amount_minor <= 0 OR refund_order.amount_minor > 99999999999) THEN
		RAISE EXCEPTION 'invalid value for argument "amount_minor"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The amount must be between 1 and 99999999999 minor units, or NULL for all that is left.';
	END IF;
	IF k IS NOT NULL AND (length(k) NOT BETWEEN 1 AND 255 OR k !~ '^[\x20-\x7e]+$') THEN
		RAISE EXCEPTION 'invalid value for argument "idempotency_key"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The key must be 1 to 255 printable ASCII characters.';
	END IF;
	-- without a key the call is idempotent per amount
	k := coalesce(k, CASE WHEN refund_order.amount_minor IS NULL THEN 'full'
						  ELSE 'amount:' || refund_order.amount_minor END);

	o := ft_orders._order_arg(refund_order.order_id::bigint);
	IF o.status IN ('pending', 'action_required') THEN
		RAISE EXCEPTION 'order % is not paid', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', o.status),
				  HINT = 'Cancel it with ft_orders.cancel_order() instead.';
	ELSIF o.status NOT IN ('paid', 'partially_refunded', 'refunded') THEN
		RAISE EXCEPTION 'order % is not paid', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s: nothing was charged.', o.status);
	END IF;
	RETURN ft_orders._create_refund(o.order_id::bigint, refund_order.amount_minor::bigint,
									k::text, NULL::text);
END
$$;
COMMENT ON FUNCTION ft_orders.refund_order(bigint, bigint, text) IS
'Refund a paid order, in full (amount_minor NULL: all that is left) or in part; returns the refund id. Idempotent per idempotency_key (without one: per amount); the refunds of an order never sum above its amount (22023); an order that is not paid raises 55000. Sent by the payment workers. ft_orders_operator may call it';

-- The automatic refund of orders canceled while their charge was in
-- flight, once the charge is known to have succeeded.
CREATE FUNCTION ft_orders._refund_canceled(order_ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	n		integer := 0;
BEGIN
	FOR o IN SELECT * FROM ft_orders.orders
			  WHERE order_id = ANY (order_ids) AND cancel_requested_at IS NOT NULL
				AND status = 'paid'
			  ORDER BY order_id
				FOR UPDATE
	LOOP
		CONTINUE WHEN o.status <> 'paid' OR o.cancel_requested_at IS NULL;
		PERFORM ft_orders._create_refund(o.order_id::bigint, NULL::bigint, 'cancel'::text,
										 ('canceled: ' || coalesce(o.cancel_reason, 'cancel_order()'))::text);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION ft_orders._refund_canceled(bigint[]) IS
'Internal: refund in full the paid orders among these whose cancellation was requested while their charge was in flight';

-- Refunds settled by a payment worker.
CREATE FUNCTION ft_orders._settle_refunds(
	refund_ids	bigint[],
	outcomes	text[],
	gateway_ids	text[],
	errors		text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v		record;
	o		ft_orders.orders;
	n		integer := 0;
BEGIN
	FOR v IN SELECT u.refund_id, u.outcome, u.gateway_id, u.error, r.order_id, r.amount_minor
			   FROM unnest(refund_ids, outcomes, gateway_ids, errors)
					AS u(refund_id, outcome, gateway_id, error)
			   JOIN ft_orders.refunds r ON r.refund_id = u.refund_id
			  WHERE r.status = 'pending'
			  ORDER BY r.order_id, u.refund_id
	LOOP
		SELECT * INTO o FROM ft_orders.orders WHERE order_id = v.order_id FOR UPDATE;
		IF v.outcome = 'refunded' THEN
			UPDATE ft_orders.refunds
			   SET status = 'succeeded', gateway_refund_id = v.gateway_id,
				   last_error = NULL, updated_at = now()
			 WHERE refund_id = v.refund_id;
			UPDATE ft_orders.orders SET refunded_minor = refunded_minor + v.amount_minor
			 WHERE order_id = v.order_id;
			PERFORM ft_orders._change_status(
				ARRAY[v.order_id],
				ARRAY[CASE WHEN o.refunded_minor + v.amount_minor >= o.amount_minor
						   THEN 'refunded' ELSE 'partially_refunded' END::ft_orders.order_status],
				NULL::integer[], NULL::text[], NULL::text[],
				ARRAY[format('refund %s of %s succeeded', v.refund_id, v.amount_minor)]);
		ELSE
			UPDATE ft_orders.refunds
			   SET status = 'failed', gateway_refund_id = coalesce(v.gateway_id, gateway_refund_id),
				   last_error = v.error, updated_at = now()
			 WHERE refund_id = v.refund_id;
			PERFORM ft_orders._change_status(
				ARRAY[v.order_id], ARRAY[o.status], NULL::integer[], NULL::text[],
				ARRAY[o.last_error],
				ARRAY[format('refund %s failed: %s', v.refund_id, coalesce(v.error, 'refused'))]);
		END IF;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION ft_orders._settle_refunds(bigint[], text[], text[], text[]) IS
'Internal: record refunds settled by the payment workers (refund row, order refunded_minor and status, order_events, NOTIFY)';

------------------------------------------------------------------------------
-- Cancel and reconciliation
------------------------------------------------------------------------------

CREATE FUNCTION ft_orders.cancel_order(order_id bigint, reason text DEFAULT NULL)
RETURNS ft_orders.order_status
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	ev		ft_orders.outbox;
	dl		ft_orders.dead_letters;
	why		text;
BEGIN
	IF cancel_order.order_id IS NULL THEN
		RAISE EXCEPTION 'argument "order_id" must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF reason IS NOT NULL AND length(reason) NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'invalid value for argument "reason"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The reason must be 1 to 1000 characters, or NULL.';
	END IF;
	why := 'canceled' || coalesce(': ' || reason, '');

	o := ft_orders._order_arg(cancel_order.order_id);

	IF o.status = 'canceled' THEN
		RETURN o.status;
	ELSIF o.status IN ('paid', 'partially_refunded', 'refunded') THEN
		RAISE EXCEPTION 'order % is already paid', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', o.status),
				  HINT = 'Refund it with ft_orders.refund_order() instead.';
	ELSIF o.status = 'declined' THEN
		RAISE EXCEPTION 'order % was declined by the gateway', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'It was never charged; there is nothing to cancel.';
	ELSIF o.cancel_requested_at IS NOT NULL THEN
		RETURN o.status;		-- recorded already: nothing written
	END IF;

	IF o.status = 'failed' THEN
		-- given up on: its outcome may be unknown (a lost reply), so it is
		-- looked up once more and canceled only if the gateway never
		-- charged it
		DELETE FROM ft_orders.dead_letters d
		 WHERE d.order_id = o.order_id AND d.refund_id IS NULL
		RETURNING * INTO dl;
		IF dl.event_id IS NULL OR dl.first_sent_at IS NULL THEN
			PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY['canceled'::ft_orders.order_status],
											 NULL::integer[], NULL::text[], NULL::text[], ARRAY[why]);
			UPDATE ft_orders.orders SET cancel_reason = reason WHERE orders.order_id = o.order_id;
			RETURN 'canceled';
		END IF;
		INSERT INTO ft_orders.outbox (event_id, order_id, first_sent_at, lookup)
		VALUES (dl.event_id, dl.order_id, dl.first_sent_at, true);
		UPDATE ft_orders.orders SET cancel_requested_at = now(), cancel_reason = reason
		 WHERE orders.order_id = o.order_id;
		PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY['pending'::ft_orders.order_status],
										 NULL::integer[], NULL::text[], NULL::text[],
										 ARRAY['cancel requested: looking the payment up']);
		RETURN 'pending';
	END IF;

	-- pending or action_required: the charge's outbox event (waits for a
	-- worker's claim of it to commit, then sees its first_sent_at)
	SELECT * INTO ev FROM ft_orders.outbox b
	 WHERE b.order_id = o.order_id AND b.refund_id IS NULL
	   FOR UPDATE;
	IF FOUND AND ev.first_sent_at IS NULL AND ev.attempts = 0 THEN
		-- never sent: canceled now, never charged
		DELETE FROM ft_orders.outbox b WHERE b.event_id = ev.event_id;
		UPDATE ft_orders.orders SET cancel_reason = reason WHERE orders.order_id = o.order_id;
		PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY['canceled'::ft_orders.order_status],
										 NULL::integer[], NULL::text[], NULL::text[], ARRAY[why]);
		RETURN 'canceled';
	END IF;

	-- sent (in flight or outcome unknown): honoured once the outcome is known
	UPDATE ft_orders.orders SET cancel_requested_at = now(), cancel_reason = reason
	 WHERE orders.order_id = o.order_id;
	IF FOUND THEN
		UPDATE ft_orders.outbox b
		   SET lookup = true,
			   next_attempt_at = CASE WHEN b.lease_until > now() THEN b.next_attempt_at ELSE now() END
		 WHERE b.event_id = ev.event_id;
	END IF;
	PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[o.status], NULL::integer[],
									 NULL::text[], ARRAY[o.last_error],
									 ARRAY['cancel requested: honoured once the outcome is known']);
	RETURN o.status;
END
$$;
COMMENT ON FUNCTION ft_orders.cancel_order(bigint, text) IS
'Cancel an order: never sent -> canceled at once and never charged; sent (in flight, unknown or failed) -> recorded and honoured once the gateway''s answer is known (a charge that succeeded is refunded automatically); paid -> 55000 (refund it instead); canceled -> canceled, nothing written. ft_orders_operator may call it';

-- Runs with the owner's rights: it only marks outbox events due for a
-- look-up.
CREATE FUNCTION ft_orders.reconcile(older_than interval DEFAULT '1 hour')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n		bigint;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'argument "older_than" must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF older_than < interval '0' THEN
		RAISE EXCEPTION 'invalid value for argument "older_than"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The interval must not be negative.';
	END IF;
	UPDATE ft_orders.outbox b
	   SET lookup = true, next_attempt_at = now()
	 WHERE b.first_sent_at IS NOT NULL
	   AND b.first_sent_at <= now() - older_than
	   AND (b.lease_until IS NULL OR b.lease_until <= now());
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION ft_orders.reconcile(interval) IS
'Schedule a look-up at the gateway, done by the payment workers at once, of every charge or refund that was sent at least older_than ago and is not settled (outcome unknown, retrying, action_required); returns how many were scheduled. Runs with the owner''s rights; ft_orders_operator may call it';

------------------------------------------------------------------------------
-- Webhooks
------------------------------------------------------------------------------

-- apply_gateway_event() records every event once, by the gateway's event
-- id, and applies it to its order or refund when that moves it forward
-- (docs/reference.md, "Webhooks").  Lock order, the same as the payment
-- workers': the event's outbox rows first, then the order, then the
-- refund.  A webhook event reduced to what apply_gateway_event needs,
-- whatever the provider.  kind: payment_succeeded, payment_failed,
-- payment_canceled, refund_succeeded, refund_failed, refund_pending,
-- charge_refunded, or NULL for a type ft_orders does not handle.
CREATE TYPE ft_orders._gateway_event AS (
	provider		text,
	event_id		text,
	type			text,
	kind			text,
	order_id		bigint,		-- Stripe metadata.order_id
	payment_key		uuid,		-- generic
	payment_ref		text,		-- PaymentIntent id (Stripe), payment_id (generic)
	charge_ref		text,		-- Charge id (Stripe)
	refund_ref		text,		-- the gateway's refund id
	refund_key		uuid,		-- our refund_key, sent with the refund
	amount_minor	bigint,		-- payment: amount; charge_refunded: amount refunded
	currency		text,
	reason			text		-- decline or cancellation reason
);
COMMENT ON TYPE ft_orders._gateway_event IS
'Internal: a webhook event reduced to the fields apply_gateway_event uses';

CREATE FUNCTION ft_orders._gateway_text(obj jsonb, field text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v		jsonb := obj -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	ELSIF jsonb_typeof(v) <> 'string' THEN
		RAISE EXCEPTION 'event field "%" must be a string, not %', field, jsonb_typeof(v)
			USING ERRCODE = '22023';
	END IF;
	RETURN v #>> '{}';
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_text(jsonb, text) IS
'Internal: a string field of a webhook event (NULL when absent), 22023 when of another type';

CREATE FUNCTION ft_orders._gateway_int(obj jsonb, field text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v		jsonb := obj -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	ELSIF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[0-9]{1,18}$' THEN
		RAISE EXCEPTION 'event field "%" must be a non-negative integer (minor units)', field
			USING ERRCODE = '22023';
	END IF;
	RETURN (v #>> '{}')::bigint;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_int(jsonb, text) IS
'Internal: an integer field of a webhook event (NULL when absent), 22023 when not a non-negative integer';

-- Validate and normalize an event; 22023 (22004 for NULL) on bad input.
CREATE FUNCTION ft_orders._parse_gateway_event(provider text, event jsonb)
RETURNS ft_orders._gateway_event
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e		ft_orders._gateway_event;
	obj		jsonb;
	st		text;
BEGIN
	IF provider IS NULL THEN
		RAISE EXCEPTION 'provider must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF event IS NULL THEN
		RAISE EXCEPTION 'event must not be NULL' USING ERRCODE = '22004';
	END IF;
	e.provider := lower(provider);
	IF e.provider = 'stripe_charges' THEN
		e.provider := 'stripe';		-- one Stripe account, one kind of event
	END IF;
	IF e.provider NOT IN ('stripe', 'generic') THEN
		RAISE EXCEPTION 'unknown provider "%"', left(provider, 64)
			USING ERRCODE = '22023',
				  HINT = 'provider is ''stripe'' or ''generic''.';
	END IF;
	IF jsonb_typeof(event) <> 'object' THEN
		RAISE EXCEPTION 'event must be a JSON object, not %', jsonb_typeof(event)
			USING ERRCODE = '22023';
	END IF;

	e.event_id := ft_orders._gateway_text(event, CASE e.provider WHEN 'stripe' THEN 'id' ELSE 'event_id' END);
	e.type := ft_orders._gateway_text(event, 'type');
	IF e.event_id IS NULL OR e.event_id = '' OR length(e.event_id) > 255 THEN
		RAISE EXCEPTION 'event has no "%" (a string of 1 to 255 characters)',
			CASE e.provider WHEN 'stripe' THEN 'id' ELSE 'event_id' END
			USING ERRCODE = '22023';
	END IF;
	IF e.type IS NULL OR e.type = '' OR length(e.type) > 255 THEN
		RAISE EXCEPTION 'event "%" has no "type" (a string of 1 to 255 characters)', left(e.event_id, 64)
			USING ERRCODE = '22023';
	END IF;

	IF e.provider = 'stripe' THEN
		e.kind := CASE e.type
			WHEN 'payment_intent.succeeded' THEN 'payment_succeeded'
			WHEN 'payment_intent.payment_failed' THEN 'payment_failed'
			WHEN 'payment_intent.canceled' THEN 'payment_canceled'
			WHEN 'charge.refunded' THEN 'charge_refunded'
			WHEN 'refund.updated' THEN 'refund'
			WHEN 'refund.created' THEN 'refund'
			WHEN 'refund.failed' THEN 'refund'
			WHEN 'charge.refund.updated' THEN 'refund'
			END;
		IF e.kind IS NULL THEN
			RETURN e;
		END IF;
		obj := event #> '{data,object}';
		IF obj IS NULL OR jsonb_typeof(obj) <> 'object' THEN
			RAISE EXCEPTION 'Stripe event "%" has no data.object', left(e.event_id, 64)
				USING ERRCODE = '22023';
		END IF;
		IF ft_orders._gateway_text(obj, 'id') IS NULL THEN
			RAISE EXCEPTION 'Stripe event "%": data.object has no "id"', left(e.event_id, 64)
				USING ERRCODE = '22023';
		END IF;
		st := ft_orders._gateway_text(obj -> 'metadata', 'order_id');
		IF st ~ '^[0-9]{1,18}$' THEN
			e.order_id := st::bigint;
		END IF;
		-- metadata.payment_key names the order on an account several
		-- databases share (order ids are per database); a payment that
		-- carries one not a UUID is nobody's here: no order_id match either
		IF e.kind NOT LIKE 'refund%' THEN
			st := ft_orders._gateway_text(obj -> 'metadata', 'payment_key');
			IF st ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
				e.payment_key := st::uuid;
			ELSIF st IS NOT NULL THEN
				e.order_id := NULL;
			END IF;
		END IF;
		e.currency := upper(ft_orders._gateway_text(obj, 'currency'));
		IF e.kind LIKE 'payment%' THEN
			e.payment_ref := obj ->> 'id';
			e.amount_minor := ft_orders._gateway_int(obj, 'amount');
			e.reason := coalesce(ft_orders._gateway_text(obj #> '{last_payment_error}', 'decline_code'),
								 ft_orders._gateway_text(obj #> '{last_payment_error}', 'code'),
								 ft_orders._gateway_text(obj, 'cancellation_reason'));
		ELSIF e.kind = 'charge_refunded' THEN
			e.charge_ref := obj ->> 'id';
			e.payment_ref := ft_orders._gateway_text(obj, 'payment_intent');
			e.amount_minor := ft_orders._gateway_int(obj, 'amount_refunded');
			IF e.amount_minor IS NULL THEN
				RAISE EXCEPTION 'Stripe event "%": the charge has no amount_refunded', left(e.event_id, 64)
					USING ERRCODE = '22023';
			END IF;
		ELSE
			e.refund_ref := obj ->> 'id';
			e.payment_ref := ft_orders._gateway_text(obj, 'payment_intent');
			e.charge_ref := ft_orders._gateway_text(obj, 'charge');
			e.amount_minor := ft_orders._gateway_int(obj, 'amount');
			st := ft_orders._gateway_text(obj -> 'metadata', 'refund_key');
			IF st ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
				e.refund_key := st::uuid;
			END IF;
			st := ft_orders._gateway_text(obj, 'status');
			e.kind := CASE
				WHEN st = 'succeeded' THEN 'refund_succeeded'
				WHEN st IN ('failed', 'canceled') THEN 'refund_failed'
				ELSE 'refund_pending' END;
			e.reason := ft_orders._gateway_text(obj, 'failure_reason');
		END IF;
		RETURN e;
	END IF;

	-- generic: the §5 reply body plus event_id, type, payment_key
	e.kind := CASE e.type
		WHEN 'payment.succeeded' THEN 'payment_succeeded'
		WHEN 'payment.failed' THEN 'payment_failed'
		WHEN 'payment.canceled' THEN 'payment_canceled'
		WHEN 'refund.succeeded' THEN 'refund_succeeded'
		WHEN 'refund.failed' THEN 'refund_failed'
		END;
	IF e.kind IS NULL THEN
		RETURN e;
	END IF;
	st := ft_orders._gateway_text(event, 'payment_key');
	IF st IS NULL OR st !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
		RAISE EXCEPTION 'event "%" has no valid "payment_key" (a UUID)', left(e.event_id, 64)
			USING ERRCODE = '22023';
	END IF;
	e.payment_key := st::uuid;
	e.payment_ref := ft_orders._gateway_text(event, 'payment_id');
	e.amount_minor := ft_orders._gateway_int(event, 'amount_minor');
	e.currency := upper(ft_orders._gateway_text(event, 'currency'));
	e.reason := coalesce(ft_orders._gateway_text(event, 'decline_code'),
						 ft_orders._gateway_text(event, 'error'),
						 ft_orders._gateway_text(event, 'message'));
	IF e.kind LIKE 'refund%' THEN
		e.refund_ref := ft_orders._gateway_text(event, 'refund_id');
		st := ft_orders._gateway_text(event, 'refund_key');
		IF st ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
			e.refund_key := st::uuid;
		ELSIF st IS NOT NULL OR e.refund_ref IS NULL THEN
			RAISE EXCEPTION 'refund event "%" needs a "refund_key" (a UUID) or a "refund_id"', left(e.event_id, 64)
				USING ERRCODE = '22023';
		END IF;
	END IF;
	RETURN e;
END
$$;
COMMENT ON FUNCTION ft_orders._parse_gateway_event(text, jsonb) IS
'Internal: validate a webhook event and reduce it to ft_orders._gateway_event; 22023 (22004 for NULL) on bad input';

-- The order a payment or charge event is about, or NULL.  Generic: by
-- payment_key.  Stripe: by metadata.payment_key, or by the PaymentIntent
-- or Charge id stored for the order; by metadata.order_id only for an
-- order marked match_by_order_id.
CREATE FUNCTION ft_orders._gateway_event_order(e ft_orders._gateway_event)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.order_id
	  FROM ft_orders.orders o
	 WHERE e.provider = 'generic' AND o.payment_key = e.payment_key
	UNION ALL
	(SELECT o.order_id
	   FROM ft_orders.orders o
	  WHERE e.provider = 'stripe'
		AND (o.payment_key = e.payment_key
			 OR e.payment_key IS NULL AND o.order_id = e.order_id AND o.match_by_order_id
				AND (o.payment_id IS NULL OR o.payment_id IN (e.payment_ref, e.charge_ref))
			 OR o.payment_id IN (e.payment_ref, e.charge_ref))
	  ORDER BY o.payment_key = e.payment_key DESC NULLS LAST,
			   o.order_id = e.order_id DESC NULLS LAST
	  LIMIT 1)
	LIMIT 1
$$;
COMMENT ON FUNCTION ft_orders._gateway_event_order(ft_orders._gateway_event) IS
'Internal: the order a webhook payment event is about (generic: payment_key; Stripe: metadata.payment_key or the stored PaymentIntent or Charge id; metadata.order_id only for an object without a payment_key and an order marked match_by_order_id), or NULL';

-- Settle a locked, not yet paid order as charged.
CREATE FUNCTION ft_orders._gateway_settle_charged(o ft_orders.orders, e ft_orders._gateway_event)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st		text;
	detail	text;
	rid		bigint;
BEGIN
	DELETE FROM ft_orders.outbox WHERE order_id = o.order_id AND refund_id IS NULL;
	DELETE FROM ft_orders.dead_letters WHERE order_id = o.order_id AND refund_id IS NULL;
	st := CASE WHEN o.refunded_minor >= o.amount_minor THEN 'refunded'
			   WHEN o.refunded_minor > 0 THEN 'partially_refunded'
			   ELSE 'paid' END;
	detail := format('%s (webhook %s %s)', st, e.type, e.event_id);
	PERFORM ft_orders._change_status(ARRAY[o.order_id]::bigint[], ARRAY[st::ft_orders.order_status],
									 ARRAY[NULL::integer],
									 ARRAY[coalesce(CASE WHEN e.provider = 'stripe' AND e.kind = 'charge_refunded'
														 THEN coalesce(e.payment_ref, e.charge_ref)
														 ELSE e.payment_ref END, o.payment_id)]::text[],
									 ARRAY[NULL::text], ARRAY[detail]::text[]);
	-- a canceled order whose charge went through is refunded in full, under
	-- the same refund key as the workers' automatic refund (_refund_canceled),
	-- so that it is refunded once whichever path learns of the charge first
	IF (o.status = 'canceled' OR o.cancel_requested_at IS NOT NULL)
		AND (EXISTS (SELECT 1 FROM ft_orders.refunds r
					  WHERE r.order_id = o.order_id AND r.idempotency_key = 'cancel')
			 OR o.amount_minor > (SELECT coalesce(sum(r.amount_minor), 0) FROM ft_orders.refunds r
								   WHERE r.order_id = o.order_id
									 AND r.status IN ('pending', 'succeeded'))) THEN
		rid := ft_orders._create_refund(o.order_id::bigint, NULL::bigint, 'cancel'::text,
										('canceled: ' || coalesce(o.cancel_reason, 'cancel_order()'))::text);
		detail := detail || format(', canceled: refund %s', rid);
	END IF;
	RETURN detail;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_settle_charged(ft_orders.orders, ft_orders._gateway_event) IS
'Internal: settle an order whose charge a webhook confirmed: paid (refunded / partially_refunded when refunds came first), its queued charge and dead letters removed, a refund queued when it was canceled';

-- Raise a locked order's refunded_minor to total (it never goes down).
CREATE FUNCTION ft_orders._gateway_order_refunded(o ft_orders.orders, total bigint, detail text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n		bigint := greatest(o.refunded_minor, total);
BEGIN
	IF n <= o.refunded_minor THEN
		RETURN false;
	END IF;
	UPDATE ft_orders.orders SET refunded_minor = n, updated_at = now()
	 WHERE order_id = o.order_id;
	IF o.status IN ('paid', 'partially_refunded', 'refunded') THEN
		PERFORM ft_orders._change_status(
			ARRAY[o.order_id],
			ARRAY[CASE WHEN n >= o.amount_minor THEN 'refunded' ELSE 'partially_refunded' END
				  ::ft_orders.order_status],
			ARRAY[NULL::integer], ARRAY[NULL::text], ARRAY[NULL::text],
			ARRAY[format('%s, %s of %s refunded', detail, n, o.amount_minor)]);
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_order_refunded(ft_orders.orders, bigint, text) IS
'Internal: raise an order''s refunded_minor (never lowered) and move a charged order to partially_refunded or refunded';

-- An order locked in the payment workers' order.
CREATE FUNCTION ft_orders._gateway_lock_order(order_id bigint)
RETURNS ft_orders.orders
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT 1 FROM ft_orders.outbox ob
	 WHERE ob.order_id = _gateway_lock_order.order_id AND ob.refund_id IS NULL
	   FOR UPDATE;
	SELECT * FROM ft_orders.orders oo
	 WHERE oo.order_id = _gateway_lock_order.order_id
	   FOR UPDATE;
$$;
COMMENT ON FUNCTION ft_orders._gateway_lock_order(bigint) IS
'Internal: lock an order for a webhook event as the payment workers do (its charge''s outbox row, then the order) and return it';

CREATE FUNCTION ft_orders._gateway_payment_event(order_id bigint, e ft_orders._gateway_event,
												 OUT applied boolean, OUT detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	st		ft_orders.order_status;
	why		text;
BEGIN
	applied := false;
	o := ft_orders._gateway_lock_order(_gateway_payment_event.order_id);

	IF e.amount_minor IS NOT NULL AND e.amount_minor <> o.amount_minor
		OR e.currency IS NOT NULL AND e.currency <> o.currency THEN
		detail := format('not applied: the event is for %s %s, the order is %s %s',
						 e.amount_minor, e.currency, o.amount_minor, o.currency);
		RETURN;
	END IF;

	IF e.kind = 'payment_succeeded' THEN
		IF o.status IN ('paid', 'partially_refunded', 'refunded') THEN
			detail := format('repeat: order already %s', o.status);
			RETURN;
		END IF;
		applied := true;
		detail := ft_orders._gateway_settle_charged(o, e);
		RETURN;
	END IF;

	-- a failure or cancellation only settles an order still waiting for
	-- its outcome; after a success it is history, after another outcome a
	-- repeat
	IF o.status NOT IN ('pending', 'action_required') THEN
		detail := format('%s: order already %s',
						 CASE WHEN o.status IN ('paid', 'partially_refunded', 'refunded')
							  THEN 'history' ELSE 'repeat' END, o.status);
		RETURN;
	END IF;
	IF e.kind = 'payment_failed' THEN
		st := 'declined';
		why := 'declined: ' || coalesce(left(e.reason, 200), 'payment failed');
	ELSE
		st := 'canceled';
		why := 'canceled at the gateway' || coalesce(': ' || left(e.reason, 200), '');
	END IF;
	DELETE FROM ft_orders.outbox ob
	 WHERE ob.order_id = o.order_id AND ob.refund_id IS NULL;
	detail := format('%s (webhook %s %s)', st, e.type, e.event_id);
	PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[st], ARRAY[NULL::integer],
									 ARRAY[e.payment_ref], ARRAY[why], ARRAY[detail]);
	applied := true;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_payment_event(bigint, ft_orders._gateway_event) IS
'Internal: apply a payment outcome (succeeded, failed, canceled) from a webhook to its order';

CREATE FUNCTION ft_orders._gateway_charge_refunded(order_id bigint, e ft_orders._gateway_event,
												   OUT applied boolean, OUT detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
BEGIN
	applied := false;
	o := ft_orders._gateway_lock_order(_gateway_charge_refunded.order_id);
	IF e.currency IS NOT NULL AND e.currency <> o.currency THEN
		detail := format('not applied: the charge is in %s, the order in %s', e.currency, o.currency);
		RETURN;
	END IF;
	detail := format('charge refunded: %s (webhook %s %s)', e.amount_minor, e.type, e.event_id);
	IF ft_orders._gateway_order_refunded(o, e.amount_minor, detail) THEN
		applied := true;
		SELECT * INTO o FROM ft_orders.orders oo WHERE oo.order_id = o.order_id;
	END IF;
	IF o.status NOT IN ('paid', 'partially_refunded', 'refunded') THEN
		applied := true;
		detail := detail || '; ' || ft_orders._gateway_settle_charged(o, e);
	END IF;
	IF NOT applied THEN
		detail := format('repeat: %s of %s already refunded', o.refunded_minor, o.amount_minor);
	END IF;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_charge_refunded(bigint, ft_orders._gateway_event) IS
'Internal: apply Stripe''s charge.refunded (the charge''s total refunded) to its order';

CREATE FUNCTION ft_orders._gateway_refund_event(refund_id bigint, e ft_orders._gateway_event,
												OUT applied boolean, OUT detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	r		ft_orders.refunds;
	total	bigint;
	why		text;
BEGIN
	applied := false;
	-- lock order: the refund's outbox row, the order, the refund
	PERFORM 1 FROM ft_orders.outbox ob
	  WHERE ob.refund_id = _gateway_refund_event.refund_id FOR UPDATE;
	SELECT oo.* INTO o FROM ft_orders.orders oo
	  JOIN ft_orders.refunds rr ON rr.order_id = oo.order_id
	 WHERE rr.refund_id = _gateway_refund_event.refund_id
	   FOR UPDATE OF oo;
	SELECT * INTO r FROM ft_orders.refunds rr
	 WHERE rr.refund_id = _gateway_refund_event.refund_id FOR UPDATE;

	IF e.payment_key IS NOT NULL AND e.payment_key <> o.payment_key THEN
		detail := 'not applied: the refund belongs to another payment_key';
		RETURN;
	END IF;
	IF e.kind = 'refund_pending' THEN
		detail := 'refund still pending at the gateway';
		RETURN;
	END IF;
	IF r.status = 'succeeded' THEN
		detail := CASE e.kind WHEN 'refund_succeeded' THEN 'repeat: refund already succeeded'
							  ELSE 'history: refund already succeeded' END;
		RETURN;
	END IF;
	IF r.status = 'failed' AND e.kind = 'refund_failed' THEN
		detail := 'repeat: refund already failed';
		RETURN;
	END IF;

	DELETE FROM ft_orders.outbox ob WHERE ob.refund_id = r.refund_id;
	applied := true;
	IF e.kind = 'refund_succeeded' THEN
		UPDATE ft_orders.refunds
		   SET status = 'succeeded', last_error = NULL, updated_at = now(),
			   gateway_refund_id = coalesce(gateway_refund_id, e.refund_ref)
		 WHERE refunds.refund_id = r.refund_id;
		SELECT sum(rr.amount_minor) INTO total FROM ft_orders.refunds rr
		 WHERE rr.order_id = o.order_id AND rr.status = 'succeeded';
		detail := format('refund %s succeeded: %s (webhook %s %s)',
						 r.refund_id, r.amount_minor, e.type, e.event_id);
		PERFORM ft_orders._gateway_order_refunded(o, total, detail);
	ELSE
		why := 'failed: ' || coalesce(left(e.reason, 200), 'refund failed');
		UPDATE ft_orders.refunds
		   SET status = 'failed', last_error = why, updated_at = now(),
			   gateway_refund_id = coalesce(gateway_refund_id, e.refund_ref)
		 WHERE refunds.refund_id = r.refund_id;
		detail := format('refund %s %s (webhook %s %s)', r.refund_id, why, e.type, e.event_id);
		-- the order's status stays; its history says what happened
		PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[o.status], ARRAY[NULL::integer],
										 ARRAY[NULL::text], ARRAY[o.last_error], ARRAY[detail]);
	END IF;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_refund_event(bigint, ft_orders._gateway_event) IS
'Internal: apply a refund outcome (succeeded, failed) from a webhook to its refunds row and order';

-- Stripe livemode: an event whose livemode is not the mode of the gateway
-- key (sk_live_ / sk_test_) is recorded and not applied.
CREATE FUNCTION ft_orders._gateway_key_mode()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'ft_orders_gateway_key_mode';
COMMENT ON FUNCTION ft_orders._gateway_key_mode() IS
'Internal: live for a Stripe live-mode key in ft_orders.gateway_token (sk_live_, rk_live_), test for a test-mode key (sk_test_, rk_test_), NULL otherwise; the key itself is never shown';

CREATE FUNCTION ft_orders._gateway_mode_refusal(provider text, event jsonb)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live	jsonb := event -> 'livemode';
	mode	text;
BEGIN
	IF provider <> 'stripe' OR live IS NULL OR jsonb_typeof(live) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(live) <> 'boolean' THEN
		RAISE EXCEPTION 'event "livemode" must be a boolean, not %', jsonb_typeof(live)
			USING ERRCODE = '22023';
	END IF;
	mode := ft_orders._gateway_key_mode();
	IF mode IS NULL OR (live = 'true'::jsonb) = (mode = 'live') THEN
		RETURN NULL;
	END IF;
	RETURN format('not applied: a %s-mode event, and ft_orders.gateway_token is a %s-mode key',
				  CASE WHEN live = 'true'::jsonb THEN 'live' ELSE 'test' END, mode);
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_mode_refusal(text, jsonb) IS
'Internal: why apply_gateway_event does not apply a Stripe event of another mode (livemode) than the gateway key''s, or NULL';

-- The webhook receiver authenticates the gateway (the signature); the
-- function trusts its caller, so it is not granted to ft_orders_app: a
-- role that can place orders cannot also declare them paid.
-- GRANT EXECUTE ON FUNCTION ft_orders.apply_gateway_event(text, jsonb) TO <receiver role>;
CREATE FUNCTION ft_orders.apply_gateway_event(provider text, event jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e		ft_orders._gateway_event := ft_orders._parse_gateway_event(provider, event);
	oid_	bigint;
	rid		bigint;
	ok		boolean := false;
	what	text;
	amt		bigint;
BEGIN
	INSERT INTO ft_orders.gateway_events (provider, event_id, type, payload)
	VALUES (e.provider, e.event_id, e.type, event)
	ON CONFLICT DO NOTHING;
	IF NOT FOUND THEN
		RETURN false;			-- a redelivery: recorded and handled the first time
	END IF;

	-- Stripe livemode: a test-mode event never settles what a live key
	-- charged, nor the reverse (_gateway_mode_refusal)
	what := ft_orders._gateway_mode_refusal(e.provider, event);
	IF what IS NOT NULL THEN
		NULL;				-- recorded, not applied, as said
	ELSIF e.kind IS NULL THEN
		what := 'event type not handled by ft_orders';
	ELSIF e.kind LIKE 'refund%' THEN
		SELECT r.refund_id, r.order_id INTO rid, oid_
		  FROM ft_orders.refunds r
		 WHERE r.gateway_refund_id = e.refund_ref OR r.refund_key = e.refund_key
		 ORDER BY r.gateway_refund_id = e.refund_ref DESC NULLS LAST
		 LIMIT 1;
		IF rid IS NULL THEN
			what := 'no refund for this event';
		ELSE
			SELECT g.applied, g.detail INTO ok, what
			  FROM ft_orders._gateway_refund_event(rid, e) g;
		END IF;
	ELSE
		oid_ := ft_orders._gateway_event_order(e);
		-- a Stripe charge carries its amount apart from amount_refunded:
		-- another amount than the order's is another order's charge
		IF e.kind = 'charge_refunded' AND oid_ IS NOT NULL THEN
			amt := ft_orders._gateway_int(event #> '{data,object}', 'amount'::text);
			SELECT format('not applied: the charge is for %s, the order is %s', amt, o.amount_minor)
			  INTO what
			  FROM ft_orders.orders o
			 WHERE o.order_id = oid_ AND amt <> o.amount_minor;
		END IF;
		IF oid_ IS NULL THEN
			what := 'no order for this event';
		ELSIF what IS NOT NULL THEN
			NULL;				-- not applied, as said
		ELSIF e.kind = 'charge_refunded' THEN
			SELECT g.applied, g.detail INTO ok, what
			  FROM ft_orders._gateway_charge_refunded(oid_, e) g;
		ELSE
			SELECT g.applied, g.detail INTO ok, what
			  FROM ft_orders._gateway_payment_event(oid_, e) g;
		END IF;
	END IF;

	UPDATE ft_orders.gateway_events g
	   SET applied = ok, detail = what,
		   order_id = oid_, refund_id = rid
	 WHERE g.provider = e.provider AND g.event_id = e.event_id;
	RETURN ok;
END
$$;
COMMENT ON FUNCTION ft_orders.apply_gateway_event(text, jsonb) IS
'Apply a webhook event of the gateway (provider stripe or generic) once: recorded in gateway_events by its event id, applied to its order or refund unless it is a repeat or history (a late failure after a success); true when it changed something. Bad input: 22023, nothing written. Owner only; GRANT EXECUTE to the role of the webhook receiver';

------------------------------------------------------------------------------
-- Payment workers
------------------------------------------------------------------------------

-- The claim floor kept in shared memory (docs/design.md, "The claim
-- floor"), for monitoring and tests.
CREATE FUNCTION ft_orders._claim_floor()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'ft_orders_claim_floor'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION ft_orders._claim_floor() IS
'Internal: the claim floor of this database, the least next_attempt_at the payment workers'' claims look at; NULL when claims start at the head of the outbox''s next_attempt_at index';

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
'Payment worker figures from shared memory; read them through the worker_status view';

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
COMMENT ON FUNCTION ft_orders.gateway_stats() IS
'Gateway, circuit-breaker and gateway-limit figures from shared memory; read them through the gateway_status view';

-- SECURITY DEFINER: the application role may scrape it, but it cannot read
-- the tables the queue and order counts come from.  It returns counts and
-- states only (no gateway URL or token, no order data).
CREATE FUNCTION ft_orders.metrics()
RETURNS text
AS 'MODULE_PATHNAME', 'ft_orders_metrics'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ft_orders.metrics() IS
'All monitoring figures as Prometheus text (exposition format 0.0.4): worker outcome counters, worker states, gateway requests, errors, circuit and latency histogram, outbox, orders and dead letters. ft_orders_app and ft_orders_operator may call it';

CREATE VIEW ft_orders.queue_status AS
SELECT pg_catalog.count(*) AS pending,
	   pg_catalog.count(*) FILTER (WHERE o.next_attempt_at <= pg_catalog.now()) AS due_now,
	   pg_catalog.count(*) FILTER (WHERE o.lease_until > pg_catalog.now()) AS in_flight,
	   pg_catalog.count(*) FILTER (WHERE o.attempts > 0
								   AND o.next_attempt_at > pg_catalog.now()
								   AND (o.lease_until IS NULL OR o.lease_until <= pg_catalog.now()))
			AS scheduled_retries,
	   (SELECT pg_catalog.count(*) FROM ft_orders.dead_letters) AS dead_letters,
	   pg_catalog.now() - pg_catalog.min(o.created_at) AS oldest_pending_age,
	   pg_catalog.count(*) FILTER (WHERE o.refund_id IS NOT NULL) AS refunds
  FROM ft_orders.outbox o;
COMMENT ON VIEW ft_orders.queue_status IS
'One row: outbox events pending, due now, in flight, waiting for a retry, dead letters, and the age of the oldest. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.queue_status.pending IS
'Outbox events: charges and refunds still to be sent';
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
COMMENT ON COLUMN ft_orders.queue_status.refunds IS
'Of the outbox events, refunds still to be sent';

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
'One row per order status: number of orders, their total amount in minor units, and the oldest. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.order_summary.status IS
'Order status (every status has a row, also with 0 orders)';
COMMENT ON COLUMN ft_orders.order_summary.orders IS
'Orders in this status';
COMMENT ON COLUMN ft_orders.order_summary.amount_minor_total IS
'Sum of their amounts in minor units, currencies mixed';
COMMENT ON COLUMN ft_orders.order_summary.oldest IS
'created_at of the oldest order in this status';

CREATE VIEW ft_orders.worker_status AS
SELECT * FROM ft_orders.worker_stats();
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
'Requests whose outcome this worker recorded since the last reset_stats(), of any kind: every attempt (retries and look-ups included), not orders';
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

CREATE VIEW ft_orders.gateway_status AS
SELECT * FROM ft_orders.gateway_stats();
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

------------------------------------------------------------------------------
-- Roles and privileges
------------------------------------------------------------------------------

-- Roles belong to the server, not to a database: a second database of the
-- same server finds them there and only adds its grants.
-- ft_orders_app: the shop's application (places and reads orders).
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'ft_orders_app') THEN
		CREATE ROLE ft_orders_app NOLOGIN;
	END IF;
EXCEPTION
	-- another database's CREATE EXTENSION made it at the same moment
	WHEN duplicate_object OR unique_violation THEN
		NULL;
END
$$;
COMMENT ON ROLE ft_orders_app IS
'Grant to application users: may call place_order(), get_order() and metrics() and read the monitoring views; no access to the tables or the gateway token';

-- ft_orders_operator: the people who run the shop's payments (a console,
-- psql).  They read the orders, their history and the monitoring, cancel,
-- refund, requeue dead letters and schedule look-ups, each through a
-- function that checks its arguments; they cannot write a table, call an
-- internal function or place an order.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'ft_orders_operator') THEN
		CREATE ROLE ft_orders_operator NOLOGIN;
	END IF;
EXCEPTION
	-- another database's CREATE EXTENSION made it at the same moment
	WHEN duplicate_object OR unique_violation THEN
		NULL;
END
$$;
COMMENT ON ROLE ft_orders_operator IS
'Grant to operators: may read the orders, their history, the dead letters and the monitoring views, and call cancel_order(), refund_order(), retry_dead_letter(), reconcile(), get_order() and metrics(); may not write the tables, call internal functions or place orders';

-- Nothing is PUBLIC's.  cancel, refund, reconcile and requeue are the
-- owner's and the operator's; an application role gets them with one
-- GRANT (docs/reference.md, "Privileges").
REVOKE ALL ON SCHEMA ft_orders FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA ft_orders FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA ft_orders FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ft_orders FROM PUBLIC;

GRANT USAGE ON SCHEMA ft_orders TO ft_orders_app;
GRANT EXECUTE ON FUNCTION
	ft_orders.place_order(text, text, bigint, text, jsonb, text),
	ft_orders.get_order(bigint),
	ft_orders.worker_stats(),
	ft_orders.gateway_stats(),
	ft_orders.metrics()
TO ft_orders_app;
GRANT SELECT ON
	ft_orders.queue_status,
	ft_orders.order_summary,
	ft_orders.worker_status,
	ft_orders.gateway_status
TO ft_orders_app;

GRANT USAGE ON SCHEMA ft_orders TO ft_orders_operator;
GRANT SELECT ON
	ft_orders.queue_status,
	ft_orders.order_summary,
	ft_orders.worker_status,
	ft_orders.gateway_status,
	ft_orders.orders,
	ft_orders.order_events,
	ft_orders.payment_attempts,
	ft_orders.refunds,
	ft_orders.dead_letters,
	ft_orders.gateway_events
TO ft_orders_operator;
GRANT EXECUTE ON FUNCTION
	ft_orders.worker_stats(),
	ft_orders.gateway_stats(),
	ft_orders.metrics(),
	ft_orders.get_order(bigint),
	ft_orders.cancel_order(bigint, text),
	ft_orders.refund_order(bigint, bigint, text),
	ft_orders.retry_dead_letter(bigint),
	ft_orders.reconcile(interval)
TO ft_orders_operator;
