/* ft_orders--1.3--1.4.sql: version 1.4 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.4'" to load this file. \quit

-- #17 several databases: payment keys unique per database ------------------
--
-- One server may serve several databases (ft_orders.database is a list), all
-- talking to one gateway account.  The payment_key rule of 1.2 (v1: derived
-- from the idempotency key, the request fingerprint and the purge
-- generation) gave the same key and request placed in two databases the
-- same Idempotency-Key: the gateway answered the second order with the
-- first one's payment.  From 1.4 on, place_order derives rule v2, which
-- also hashes the key space: the server's system identifier and the
-- database's name, equal on every member of one replication cluster (so a
-- lost incarnation of an order retried on the new primary keeps its key)
-- and different for every other database or server.  Orders placed before
-- keep their keys; _payment_key(text, bytea, bigint) stays, for
-- recomputing them.

-- No SET search_path: C functions that resolve no names.
CREATE FUNCTION ft_orders._key_space()
RETURNS bytea
AS 'MODULE_PATHNAME', 'ft_orders_key_space'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._key_space() IS
'Internal: the key space of this database''s payment keys: the system identifier (8 bytes, big-endian) followed by the database name';
REVOKE EXECUTE ON FUNCTION ft_orders._key_space() FROM PUBLIC;

CREATE FUNCTION ft_orders._payment_key(idempotency_key text, fingerprint bytea, generation bigint, key_space bytea)
RETURNS uuid
AS 'MODULE_PATHNAME', 'ft_orders_payment_key_v2'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint, bytea) IS
'Internal: the payment_key of an order placed from 1.4 on, a version 8 UUID from SHA-256 of ("ft_orders payment_key v2", key space, idempotency key, request fingerprint, purge generation), each length-prefixed';
REVOKE EXECUTE ON FUNCTION ft_orders._payment_key(text, bytea, bigint, bytea) FROM PUBLIC;

COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint) IS
'Internal: the payment_key of an order placed under 1.2 or 1.3 (rule v1), a version 8 UUID from SHA-256 of ("ft_orders payment_key v1", idempotency key, request fingerprint, purge generation), each length-prefixed';
COMMENT ON COLUMN ft_orders.orders.payment_key IS
'Idempotency-Key sent to the gateway for the whole life of the order, across retries, restarts and failovers; derived from the database''s key space, the idempotency key, the request fingerprint and the key''s purge generation (orders placed under 1.2 and 1.3: without the key space; before 1.2: random)';
COMMENT ON FUNCTION ft_orders._check_database() IS
'Internal: refuses CREATE EXTENSION in a database that ft_orders.database does not list';
COMMENT ON FUNCTION ft_orders.place_order(text, text, bigint, text, jsonb, text) IS
'Place an order idempotently: stores the order, its key and an outbox event in the caller''s transaction; a repeat of the key returns the same order (replayed = true); the key with other parameters raises FT409. The payment_key is derived from the database''s key space, the key, the request and the key''s purge generation. ft_orders_app may call it';
