-- 01_schema.sql: the objects of docs/reference.md, "SQL API" and
-- "Monitoring views" exist with the right shape,
-- pg_dump keeps the user data, SECURITY DEFINER functions pin search_path.
BEGIN;
SELECT plan(140);

SELECT has_extension('ft_orders', 'extension ft_orders is installed');
SELECT has_schema('ft_orders', 'schema ft_orders exists');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'ft_orders'), false,
		  'ft_orders is not relocatable');

-- the tables (SPEC.md, "Tables")
SELECT has_table('ft_orders', t, format('table ft_orders.%s exists', t))
  FROM unnest(ARRAY['orders', 'idempotency_keys', 'outbox', 'dead_letters',
					'payment_attempts', 'order_events']) AS t;

-- their columns (public names; more columns may exist)
SELECT has_column('ft_orders', t, c, format('column ft_orders.%s.%s exists', t, c))
  FROM (VALUES
	('orders', ARRAY['order_id', 'idempotency_key', 'customer_id', 'amount_minor',
					 'currency', 'items', 'payment_method', 'payment_key', 'status',
					 'attempts', 'payment_id', 'last_error', 'created_at', 'updated_at']),
	('idempotency_keys', ARRAY['idempotency_key', 'fingerprint', 'order_id', 'created_at']),
	('outbox', ARRAY['event_id', 'order_id', 'attempts', 'next_attempt_at',
					 'lease_until', 'last_error', 'created_at']),
	('dead_letters', ARRAY['event_id', 'order_id', 'attempts', 'last_error', 'failed_at']),
	('payment_attempts', ARRAY['order_id', 'attempt', 'http_status', 'outcome', 'error',
							   'latency_ms', 'started_at']),
	('order_events', ARRAY['order_id', 'status', 'attempts', 'detail', 'created_at'])
  ) AS tc(t, cols), unnest(tc.cols) AS c;		-- 42 tests

-- key column types
SELECT col_type_is('ft_orders', t, c, ty, format('ft_orders.%s.%s is %s', t, c, ty))
  FROM (VALUES
	('orders', 'order_id', 'bigint'),
	('orders', 'idempotency_key', 'text'),
	('orders', 'customer_id', 'text'),
	('orders', 'amount_minor', 'bigint'),
	('orders', 'currency', 'text'),
	('orders', 'items', 'jsonb'),
	('orders', 'payment_method', 'text'),
	('orders', 'payment_key', 'uuid'),
	('orders', 'status', 'ft_orders.order_status'),
	('orders', 'attempts', 'integer'),
	('orders', 'created_at', 'timestamp with time zone'),
	('idempotency_keys', 'idempotency_key', 'text'),
	('idempotency_keys', 'fingerprint', 'bytea'),
	('idempotency_keys', 'order_id', 'bigint'),
	('outbox', 'event_id', 'bigint'),
	('outbox', 'order_id', 'bigint'),
	('outbox', 'next_attempt_at', 'timestamp with time zone'),
	('outbox', 'lease_until', 'timestamp with time zone'),
	('dead_letters', 'event_id', 'bigint'),
	('order_events', 'status', 'ft_orders.order_status')
  ) AS v(t, c, ty);		-- 20 tests

SELECT col_is_pk('ft_orders', 'orders', 'order_id', 'orders.order_id is the primary key');
SELECT col_is_pk('ft_orders', 'idempotency_keys', 'idempotency_key',
				 'idempotency_keys.idempotency_key is the primary key');
SELECT col_is_unique('ft_orders', 'orders', 'payment_key', 'orders.payment_key is unique');
SELECT col_not_null('ft_orders', 'orders', 'payment_key', 'orders.payment_key is NOT NULL');
SELECT col_not_null('ft_orders', 'orders', 'status', 'orders.status is NOT NULL');
SELECT col_default_is('ft_orders', 'orders', 'status', 'pending', 'orders.status defaults to pending');

-- the status enum
SELECT has_enum('ft_orders', 'order_status', 'enum ft_orders.order_status exists');
SELECT enum_has_labels('ft_orders', 'order_status',
					   ARRAY['pending', 'paid', 'declined', 'failed', 'action_required', 'canceled',
							 'refunded', 'partially_refunded'],
					   'order_status has labels pending, paid, declined, failed, then 1.3''s action_required, canceled, refunded, partially_refunded (in that order)');

-- the views (SPEC.md, "Views")
SELECT has_view('ft_orders', v, format('view ft_orders.%s exists', v))
  FROM unnest(ARRAY['queue_status', 'order_summary', 'worker_status', 'gateway_status']) AS v;
SELECT has_column('ft_orders', v, c, format('view column ft_orders.%s.%s exists', v, c))
  FROM (VALUES
	('queue_status', ARRAY['pending', 'due_now', 'in_flight', 'scheduled_retries',
						   'dead_letters', 'oldest_pending_age']),
	('order_summary', ARRAY['status', 'orders', 'amount_minor_total', 'oldest']),
	('worker_status', ARRAY['worker_id', 'pid', 'state', 'in_flight', 'processed',
							'succeeded', 'declined', 'retried', 'failed',
							'last_activity', 'last_error']),
	('gateway_status', ARRAY['circuit', 'consecutive_failures', 'opened_at', 'requests',
							 'errors', 'latency_p50_ms', 'latency_p99_ms', 'last_http_status',
							 'rate_limit', 'concurrency_limit', 'throttled', 'paused_until',
							 'failure_rate'])
  ) AS vc(v, cols), unnest(vc.cols) AS c;		-- 34 tests

-- the functions and their signatures
SELECT has_function('ft_orders', 'place_order',
					ARRAY['text', 'text', 'bigint', 'text', 'jsonb', 'text'],
					'place_order(text, text, bigint, text, jsonb, text) exists');
SELECT is(pg_get_function_result('ft_orders.place_order(text, text, bigint, text, jsonb, text)'::regprocedure),
		  'TABLE(order_id bigint, status ft_orders.order_status, replayed boolean)',
		  'place_order returns TABLE(order_id, status, replayed)');
SELECT is(pg_get_function_arguments('ft_orders.place_order(text, text, bigint, text, jsonb, text)'::regprocedure),
		  'idempotency_key text, customer_id text, amount_minor bigint, currency text, items jsonb DEFAULT ''[]''::jsonb, payment_method text DEFAULT NULL::text',
		  'place_order argument names and defaults');
SELECT is_definer('ft_orders', 'place_order',
				  ARRAY['text', 'text', 'bigint', 'text', 'jsonb', 'text'],
				  'place_order is SECURITY DEFINER');
SELECT volatility_is('ft_orders', 'place_order',
					 ARRAY['text', 'text', 'bigint', 'text', 'jsonb', 'text'], 'volatile',
					 'place_order is VOLATILE');
SELECT has_function('ft_orders', 'get_order', ARRAY['bigint'], 'get_order(bigint) exists');
SELECT function_returns('ft_orders', 'get_order', ARRAY['bigint'], 'ft_orders.orders',
						'get_order returns ft_orders.orders');
SELECT is_definer('ft_orders', 'get_order', ARRAY['bigint'], 'get_order is SECURITY DEFINER');
SELECT has_function('ft_orders', 'retry_dead_letter', ARRAY['bigint'], 'retry_dead_letter(bigint) exists');
SELECT function_returns('ft_orders', 'retry_dead_letter', ARRAY['bigint'], 'boolean',
						'retry_dead_letter returns boolean');
SELECT has_function('ft_orders', 'retry_dead_letters', ARRAY[]::text[], 'retry_dead_letters() exists');
SELECT function_returns('ft_orders', 'retry_dead_letters', ARRAY[]::text[], 'bigint',
						'retry_dead_letters returns bigint');
SELECT has_function('ft_orders', 'purge_expired_keys', ARRAY[]::text[], 'purge_expired_keys() exists');
SELECT function_returns('ft_orders', 'purge_expired_keys', ARRAY[]::text[], 'bigint',
						'purge_expired_keys returns bigint');
SELECT has_function('ft_orders', 'reset_stats', ARRAY[]::text[], 'reset_stats() exists');
SELECT function_returns('ft_orders', 'reset_stats', ARRAY[]::text[], 'void',
						'reset_stats returns void');
SELECT has_function('ft_orders', 'purge_history', ARRAY[]::text[], 'purge_history() exists');
SELECT has_function('ft_orders', '_change_status',
					ARRAY['bigint[]', 'ft_orders.order_status[]', 'integer[]', 'text[]', 'text[]', 'text[]'],
					'_change_status(bigint[], order_status[], integer[], text[], text[], text[]) exists');

-- pg_dump keeps the rows of every user-data table and the sequences' positions
SELECT set_has(
	$$SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) AS c
	   WHERE e.extname = 'ft_orders'$$,
	$$VALUES ('ft_orders.orders'), ('ft_orders.idempotency_keys'), ('ft_orders.outbox'),
			 ('ft_orders.dead_letters'), ('ft_orders.payment_attempts'), ('ft_orders.order_events')$$,
	'pg_extension.extconfig lists every user-data table');
SELECT is_empty(
	$$SELECT s.oid::regclass::text
		FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.deptype = 'e'
	   WHERE s.relkind = 'S'
		 AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ft_orders')
		 AND s.oid <> ALL (coalesce((SELECT extconfig FROM pg_extension WHERE extname = 'ft_orders'), '{}'::oid[]))$$,
	'every sequence of ft_orders is in extconfig too (ids survive dump/restore)');

-- SECURITY DEFINER functions pin search_path, with pg_temp explicitly last
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text || ' ' || coalesce(array_to_string(p.proconfig, ';'), '(no SET)')
		FROM pg_proc p
	   WHERE p.pronamespace = 'ft_orders'::regnamespace
		 AND p.prosecdef
		 AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
						  WHERE c ~ '^search_path=pg_catalog(, *[a-z_]+)*, *pg_temp$')$$,
	'every SECURITY DEFINER function has SET search_path = pg_catalog, ..., pg_temp');
SELECT cmp_ok((SELECT count(*)::int FROM pg_proc
				WHERE pronamespace = 'ft_orders'::regnamespace AND prosecdef), '>=', 2,
			  'there are SECURITY DEFINER functions to check (place_order, get_order)');

-- COMMENT ON every public object (docs/reference.md, "SQL API", Roles)
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'v')
		 AND obj_description(c.oid, 'pg_class') IS NULL
	  UNION ALL
	  SELECT p.oid::regprocedure::text FROM pg_proc p
	   WHERE p.pronamespace = 'ft_orders'::regnamespace AND p.proname !~ '^_'
		 AND obj_description(p.oid, 'pg_proc') IS NULL
	  UNION ALL
	  SELECT t.oid::regtype::text FROM pg_type t
	   WHERE t.typnamespace = 'ft_orders'::regnamespace AND t.typtype = 'e'
		 AND obj_description(t.oid, 'pg_type') IS NULL$$,
	'every public table, view, function and enum has a COMMENT');

SELECT * FROM finish();
ROLLBACK;
