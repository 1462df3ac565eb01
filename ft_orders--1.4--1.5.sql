/* ft_orders--1.4--1.5.sql: version 1.5 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.5'" to load this file. \quit

-- Each section below is one feature of 1.5, headed by its name.

-- The claim floor -----------------------------------------------------------
-- The payment workers claim from a floor in the next_attempt_at index kept
-- in shared memory, so that the dead row versions an old snapshot keeps
-- (pg_dump, a long reader) are not walked again on every claim
-- (docs/design.md, "The claim floor").  No table changes: the floor works
-- on every schema version.  This reads it, for monitoring and tests (no SET
-- search_path: a C function that resolves no names).
CREATE FUNCTION ft_orders._claim_floor()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'ft_orders_claim_floor'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION ft_orders._claim_floor() IS
'Internal: the claim floor of this database, the least next_attempt_at the payment workers'' claims look at; NULL when claims start at the head of the outbox''s next_attempt_at index';
REVOKE EXECUTE ON FUNCTION ft_orders._claim_floor() FROM PUBLIC;
