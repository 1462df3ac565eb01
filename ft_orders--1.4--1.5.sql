/* ft_orders--1.4--1.5.sql: version 1.5 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.5'" to load this file. \quit

-- Each section below is one feature of 1.5, headed by its name.

------------------------------------------------------------------------------
-- Operator role
------------------------------------------------------------------------------

-- ft_orders_operator: the people who run the shop's payments (a console,
-- psql).  They read the orders, their history and the monitoring, cancel,
-- refund, requeue dead letters and schedule look-ups, each through a
-- function that checks its arguments; they cannot write a table, call an
-- internal function or place an order (that is ft_orders_app's, the
-- shop's, and the two roles stay apart).  Roles belong to the server, not
-- to a database: a second database of the same server finds the role
-- there and only adds its grants.
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

-- Requeueing runs with the owner's rights, as cancel_order and
-- refund_order do, so that the right to requeue is one EXECUTE grant and
-- not the writes the requeue makes (outbox, dead_letters, orders,
-- order_events, _change_status).  Its statement names every object with
-- its schema and every operator with pg_catalog's, and its search_path has
-- been pinned since 1.0.  reconcile() likewise: it only marks outbox
-- events due for a look-up.  Neither is PUBLIC's; grants made before 1.5
-- are kept.
ALTER FUNCTION ft_orders.retry_dead_letter(bigint) SECURITY DEFINER;
ALTER FUNCTION ft_orders.reconcile(interval) SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION
	ft_orders.retry_dead_letter(bigint),
	ft_orders.reconcile(interval)
FROM PUBLIC;

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

COMMENT ON FUNCTION ft_orders.retry_dead_letter(bigint) IS
'Requeue one dead letter: its order goes back to pending with a fresh attempt budget and the same payment_key (a refund''s: the refund is sent again, the order keeps its status); false if there is no such dead letter. Runs with the owner''s rights; ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.get_order(bigint) IS
'The order with this id, or a NULL row; works on replicas. ft_orders_app and ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.metrics() IS
'All monitoring figures as Prometheus text (exposition format 0.0.4): worker outcome counters, worker states, gateway requests, errors, circuit and latency histogram, outbox, orders and dead letters. ft_orders_app and ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.reconcile(interval) IS
'Schedule a look-up at the gateway, done by the payment workers at once, of every charge or refund that was sent at least older_than ago and is not settled (outcome unknown, retrying, action_required); returns how many were scheduled. Runs with the owner''s rights; ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.cancel_order(bigint, text) IS
'Cancel an order: never sent -> canceled at once and never charged; sent (in flight, unknown or failed) -> recorded and honoured once the gateway''s answer is known (a charge that succeeded is refunded automatically); paid -> 55000 (refund it instead); canceled -> canceled, nothing written. ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.refund_order(bigint, bigint, text) IS
'Refund a paid order, in full (amount_minor NULL: all that is left) or in part; returns the refund id. Idempotent per idempotency_key (without one: per amount); the refunds of an order never sum above its amount (22023); an order that is not paid raises 55000. Sent by the payment workers. ft_orders_operator may call it';
