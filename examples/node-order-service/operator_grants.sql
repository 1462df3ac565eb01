-- operator_grants.sql: what an operator's own PostgreSQL role needs for
-- every part of the console (examples/node-order-service/README.md,
-- "Console").  The console signs in as that role and has exactly its rights.
--
--   CREATE ROLE alice LOGIN PASSWORD '...';
--   psql -d ftdb -v operator=alice -f operator_grants.sql
--
-- Looking only (every page, no action): the first two statements.

GRANT ft_orders_app TO :"operator";                         -- the views, metrics()
GRANT SELECT ON ALL TABLES IN SCHEMA ft_orders TO :"operator";  -- search, history, dead letters

-- cancel and refund: SECURITY DEFINER functions, one grant each
GRANT EXECUTE ON FUNCTION ft_orders.cancel_order(bigint, text),
                          ft_orders.refund_order(bigint, bigint, text) TO :"operator";

-- requeue a dead letter: retry_dead_letter() runs with its caller's rights,
-- so the caller also needs the writes it makes and the function it calls
GRANT EXECUTE ON FUNCTION ft_orders.retry_dead_letter(bigint) TO :"operator";
GRANT INSERT, UPDATE, DELETE ON ft_orders.outbox, ft_orders.dead_letters,
                                ft_orders.orders, ft_orders.order_events TO :"operator";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ft_orders TO :"operator";
SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', p.oid::regprocedure, :'operator')
  FROM pg_proc p
 WHERE p.pronamespace = 'ft_orders'::regnamespace AND p.proname = '_change_status'
\gexec
