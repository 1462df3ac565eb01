/* ft_orders--1.1--1.2.sql: version 1.2 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.2'" to load this file. \quit

-- CREATE EXTENSION ft_orders runs ft_orders--1.0.sql, ft_orders--1.0--1.1.sql
-- and then this script; ALTER EXTENSION ft_orders UPDATE runs only the
-- scripts after the installed version: both end with the same objects,
-- grants and comments.  Each change of 1.2 has its own section below.

------------------------------------------------------------------------------
-- Deterministic payment keys: one Idempotency-Key per client order
------------------------------------------------------------------------------

-- place_order derives a new order's payment_key from its idempotency key,
-- the request fingerprint and the key's purge generation (how many times
-- purge_expired_keys() purged the key; 0 when never):
--   _payment_key(key, fingerprint, generation) = SHA-256 name-based UUID
--   (RFC 9562 version 8).
-- Every incarnation of one order (say one lost with an old timeline and
-- retried on the new primary) goes to the gateway under the same key; the
-- same key and request placed after the key expired is a new order, charged
-- under a new key.  Orders placed before 1.2 keep their random keys.
--
-- Growth: one row per distinct idempotency key ever purged (the key plus
-- ~40 bytes), kept for good, like the orders it guards: a row deleted while
-- orders of its key exist would make the key's next order derive the
-- payment_key of an earlier one (place_order then refuses it with 40001
-- every time).  Rows whose key has no order left may be deleted by hand;
-- the key's next order then reuses generation 0's payment_key, which the
-- gateway answers as a replay for as long as it remembers that key.
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

SELECT pg_catalog.pg_extension_config_dump('ft_orders.idempotency_key_generations', '');
REVOKE ALL ON TABLE ft_orders.idempotency_key_generations FROM PUBLIC;

-- No SET search_path: a C function that resolves no names (and SET would
-- cost a GUC save/restore on every order).
CREATE FUNCTION ft_orders._payment_key(idempotency_key text, fingerprint bytea, generation bigint)
RETURNS uuid
AS 'MODULE_PATHNAME', 'ft_orders_payment_key'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint) IS
'Internal: the payment_key of an order, a version 8 UUID from SHA-256 of ("ft_orders payment_key v1", idempotency key, request fingerprint, purge generation), each length-prefixed';
REVOKE EXECUTE ON FUNCTION ft_orders._payment_key(text, bytea, bigint) FROM PUBLIC;

COMMENT ON COLUMN ft_orders.orders.payment_key IS
'Idempotency-Key sent to the gateway for the whole life of the order, across retries, restarts and failovers; derived from the idempotency key, the request fingerprint and the key''s purge generation (orders placed before 1.2: random)';
COMMENT ON FUNCTION ft_orders.place_order(text, text, bigint, text, jsonb, text) IS
'Place an order idempotently: stores the order, its key and an outbox event in the caller''s transaction; a repeat of the key returns the same order (replayed = true); the key with other parameters raises FT409. The payment_key is derived from the key, the request and the key''s purge generation. ft_orders_app may call it';
COMMENT ON FUNCTION ft_orders.purge_expired_keys() IS
'Delete idempotency keys older than ft_orders.idempotency_ttl and count each one''s purge generation up; returns how many (the launcher runs it every minute). Owner only';

------------------------------------------------------------------------------
-- One status change for every caller
------------------------------------------------------------------------------

-- _change_status stays the one way an order's status moves, now also for
-- the payment workers, which call it inside their kept statement that
-- settles a batch.  PL/pgSQL instead of SQL: a SQL-language function that
-- writes is parsed and planned again on every call, while PL/pgSQL plans
-- its statement once per session and keeps it (same arguments, same rows,
-- same NOTIFY payload as in 1.0).  CREATE OR REPLACE keeps the function's
-- OID, owner and grants.
CREATE OR REPLACE FUNCTION ft_orders._change_status(
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
	  INTO changed
	  FROM e;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[]) IS
'Internal: the one way an order''s status moves (payment workers, retry_dead_letter): apply status changes, append order_events rows and NOTIFY ft_orders_events';
