-- 08_metrics.sql: ft_orders.metrics() (1.1): who may call it, what it
-- counts from the tables, that a hostile search_path does not change it,
-- the shape of its text; and the COMMENTs of 1.1 on every object and column.
-- (The text is validated by Prometheus' own parser, and the figures are
-- watched moving under real workers, in tests/integration/metrics.sh.)
BEGIN;
SELECT plan(40);

SELECT has_function('ft_orders', 'metrics', ARRAY[]::text[], 'metrics() exists');
SELECT function_returns('ft_orders', 'metrics', ARRAY[]::text[], 'text', 'metrics() returns text');
SELECT is_definer('ft_orders', 'metrics', ARRAY[]::text[],
				  'metrics() is SECURITY DEFINER (ft_orders_app cannot read the tables)');
SELECT volatility_is('ft_orders', 'metrics', ARRAY[]::text[], 'volatile', 'metrics() is VOLATILE');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'), '1.5',
		  'the installed version is the default, 1.5');

-- one sample's value, or NULL if the series is absent
CREATE FUNCTION pg_temp.sample(m text, series text) RETURNS text LANGUAGE sql AS $$
	SELECT pg_catalog.split_part(l, ' ', 2)
	  FROM pg_catalog.regexp_split_to_table(m, E'\n') AS l
	 WHERE pg_catalog.left(l, pg_catalog.length(series) + 1) OPERATOR(pg_catalog.=) (series || ' ')
$$;

-------------------------------------------------------------------------------
-- known table contents (rolled back at the end)
-------------------------------------------------------------------------------
TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events;

SELECT pg_temp.sample(ft_orders.metrics(), 'ft_orders_orders{status="pending"}') AS pending0,
	   pg_temp.sample(ft_orders.metrics(), 'ft_orders_outbox_oldest_event_age_seconds') AS age0 \gset
SELECT is(:'pending0'::text, '0', 'empty tables: ft_orders_orders{status="pending"} 0');
SELECT is(:'age0'::text, '0', 'empty outbox: oldest event age 0');

-- five orders: A leased, B waiting for a retry, C failed (dead letter),
-- D paid, E due
SELECT count(*) FROM (VALUES ('m-a'), ('m-b'), ('m-c'), ('m-d'), ('m-e')) v(k),
	   LATERAL ft_orders.place_order(v.k, 'cust-8', 800, 'EUR') \gset
UPDATE ft_orders.outbox SET lease_until = now() + interval '1 min',
	   next_attempt_at = now() + interval '1 min', attempts = 1
 WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'm-a');
UPDATE ft_orders.outbox SET next_attempt_at = now() + interval '1 min', attempts = 1
 WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'm-b');
WITH d AS (DELETE FROM ft_orders.outbox
			WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'm-c')
		   RETURNING event_id, order_id)
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error)
SELECT event_id, order_id, 1, 'HTTP 422' FROM d;
DELETE FROM ft_orders.outbox
 WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'm-d');
SELECT ft_orders._change_status(
	ARRAY(SELECT order_id FROM ft_orders.orders WHERE idempotency_key IN ('m-c', 'm-d') ORDER BY idempotency_key),
	ARRAY['failed', 'paid']::ft_orders.order_status[], ARRAY[1, 1],
	ARRAY[NULL, 'pay_1'], ARRAY['HTTP 422', NULL], ARRAY['failed: HTTP 422', 'paid']) AS changed \gset

SELECT ft_orders.metrics() AS su_metrics \gset
SELECT is(pg_temp.sample(:'su_metrics', s), v, format('superuser: %s %s', s, v))
  FROM (VALUES ('ft_orders_outbox_events{state="due"}', '1'),
			   ('ft_orders_outbox_events{state="leased"}', '1'),
			   ('ft_orders_outbox_events{state="delayed"}', '1'),
			   ('ft_orders_dead_letters', '1'),
			   ('ft_orders_orders{status="pending"}', '3'),
			   ('ft_orders_orders{status="paid"}', '1'),
			   ('ft_orders_orders{status="declined"}', '0'),
			   ('ft_orders_orders{status="failed"}', '1')) AS t(s, v);		-- 8 tests
-- in one transaction now() stands still: the oldest event is 0 s old
SELECT is(pg_temp.sample(:'su_metrics', 'ft_orders_outbox_oldest_event_age_seconds'), '0',
		  'oldest event age is measured from now() (0 inside the creating transaction)');

-- shared memory is there (preloaded) but this server runs no worker
SELECT is(pg_temp.sample(:'su_metrics', 'ft_orders_gateway_circuit_state'), '0', 'circuit closed: 0');
SELECT is(pg_temp.sample(:'su_metrics', 'ft_orders_gateway_request_duration_seconds_bucket{le="+Inf"}'),
		  pg_temp.sample(:'su_metrics', 'ft_orders_gateway_request_duration_seconds_count'),
		  'histogram: +Inf bucket equals _count');
SELECT is(pg_temp.sample(:'su_metrics', 'ft_orders_gateway_requests_total'), '0', 'no gateway request yet');
SELECT is((SELECT count(*)::int FROM regexp_split_to_table(:'su_metrics', E'\n') l
			WHERE l LIKE 'ft_orders_worker_state{%'), 0,
		  'ft_orders.workers = 0: no worker series');

-------------------------------------------------------------------------------
-- the shape of the text
-------------------------------------------------------------------------------
SELECT is_empty(format($$SELECT l FROM regexp_split_to_table(%L, E'\n') l
						  WHERE l <> '' AND l !~ '^# (HELP|TYPE) ft_orders_[a-z_]+ '
							AND l !~ '^ft_orders_[a-z_]+(\{[a-z_]+="[^"\\\n]*"(,[a-z_]+="[^"\\\n]*")*\})? (-?[0-9.e+-]+|\+Inf|NaN)$'$$,
					   :'su_metrics'),
				'every line is a HELP, a TYPE or a "name{labels} value" sample under the ft_orders_ prefix');
SELECT is_empty(format($$SELECT split_part(l, ' ', 3) FROM regexp_split_to_table(%L, E'\n') l
						  WHERE l LIKE '# TYPE %%'
						 EXCEPT
						 SELECT split_part(l, ' ', 3) FROM regexp_split_to_table(%L, E'\n') l
						  WHERE l LIKE '# HELP %%'$$, :'su_metrics', :'su_metrics'),
				'every TYPE has a HELP');
SELECT is_empty(format($$SELECT split_part(l, ' ', 3) FROM regexp_split_to_table(%L, E'\n') l
						  WHERE l LIKE '# TYPE %% counter' AND split_part(l, ' ', 3) NOT LIKE '%%\_total'$$,
					   :'su_metrics'),
				'every counter is named *_total');
SELECT ok(:'su_metrics' LIKE E'%\n', 'the text ends with a newline');
SELECT ok(:'su_metrics' !~* '(token|bearer|password|https?://)',
		  'no token, password or URL in the text');

-------------------------------------------------------------------------------
-- who may call it
-------------------------------------------------------------------------------
CREATE ROLE ft08_outsider;
SET ROLE app_user;
SELECT lives_ok($$SELECT ft_orders.metrics()$$, 'app_user (ft_orders_app) may call metrics()');
SELECT is(ft_orders.metrics(), :'su_metrics',
		  'app_user sees the same figures as the superuser, though it cannot read the tables');
SELECT throws_ok($$SELECT count(*) FROM ft_orders.outbox$$, '42501', NULL,
				 '... and app_user indeed cannot read ft_orders.outbox');
RESET ROLE;
SET ROLE ft08_outsider;
SELECT throws_ok($$SELECT ft_orders.metrics()$$, '42501', NULL,
				 'a role outside ft_orders_app cannot call metrics() (42501)');
RESET ROLE;
SELECT is(has_function_privilege('public', 'ft_orders.metrics()', 'EXECUTE'), false,
		  'PUBLIC has no EXECUTE on metrics()');

-------------------------------------------------------------------------------
-- a hostile search_path cannot change the figures
-------------------------------------------------------------------------------
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
	AS $$ SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION public.evil_int8eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_int8eq);
GRANT EXECUTE ON FUNCTION public.now(), public.evil_int8eq(bigint, bigint) TO app_user;
SET ROLE app_user;
CREATE TEMP TABLE outbox (order_id bigint, next_attempt_at timestamptz, lease_until timestamptz);
CREATE TEMP TABLE dead_letters (order_id bigint);
SET LOCAL search_path = pg_temp, public, pg_catalog;
SELECT ft_orders.metrics() AS hostile_metrics \gset
RESET search_path;
RESET ROLE;
SELECT is(:'hostile_metrics'::text, :'su_metrics'::text,
		  'metrics() under search_path = pg_temp, public (shadow tables, now(), =) gives the same text');

-------------------------------------------------------------------------------
-- self-documentation (1.1 comments): \dx+ / \d+ / \df+ explain everything
-------------------------------------------------------------------------------
SELECT isnt(obj_description('ft_orders'::regnamespace, 'pg_namespace'), NULL, 'schema ft_orders has a comment');
SELECT isnt(shobj_description((SELECT oid FROM pg_roles WHERE rolname = 'ft_orders_app'), 'pg_authid'), NULL,
			'role ft_orders_app has a comment');
SELECT alike(obj_description('ft_orders.metrics()'::regprocedure, 'pg_proc'), '%Prometheus%',
			'metrics() has a comment naming Prometheus');
SELECT is_empty(
	$$SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
		FROM pg_depend d
	   WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		 AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ft_orders')
		 -- not the row and array types made with a table, view or type
		 -- (internal dependency): members too from PostgreSQL 17 on
		 AND NOT EXISTS (SELECT FROM pg_depend i
						  WHERE i.classid = d.classid AND i.objid = d.objid AND i.deptype = 'i')
		 AND obj_description(d.objid, (SELECT relname FROM pg_class WHERE oid = d.classid)) IS NULL$$,
	'every member of the extension (\dx+ ft_orders) has a comment, internal functions and sequences too');
SELECT is_empty(
	$$SELECT c.relname || '.' || a.attname
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
	   WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'v')
		 AND a.attnum > 0 AND NOT a.attisdropped
		 AND col_description(c.oid, a.attnum) IS NULL$$,
	'every column of every table and view has a comment');
SELECT cmp_ok((SELECT count(*)::int FROM pg_depend d
				WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
				  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ft_orders')), '>=', 26,
			  'the extension has its 26 members (the check above is not vacuous)');
SELECT alike(col_description('ft_orders.orders'::regclass,
							(SELECT attnum FROM pg_attribute WHERE attrelid = 'ft_orders.orders'::regclass
															 AND attname = 'payment_key')),
			'%Idempotency-Key%', 'orders.payment_key explains that it is the Idempotency-Key');
SELECT alike(obj_description('ft_orders.place_order(text, text, bigint, text, jsonb, text)'::regprocedure, 'pg_proc'),
			'%ft_orders_app may call it%', 'place_order''s comment says who may call it');
SELECT alike(obj_description('ft_orders.retry_dead_letters()'::regprocedure, 'pg_proc'),
			'%Owner only%', 'retry_dead_letters''s comment says it is for the owner only');

SELECT * FROM finish();
ROLLBACK;
