/* ft_orders--1.1--1.2.sql */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.2'" to load this file. \quit

-- CREATE EXTENSION ft_orders runs ft_orders--1.0.sql, ft_orders--1.0--1.1.sql
-- and then this script; ALTER EXTENSION ft_orders UPDATE runs only the
-- scripts it lacks: both end with the same objects, grants and comments.

------------------------------------------------------------------------------
-- issue 18: one status change for every caller
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
