-- 05_privileges.sql: what the application role (app_user, member of
-- ft_orders_app) may and may not do, the secret GUC, and SECURITY DEFINER
-- place_order resisting search_path tricks.
BEGIN;
SELECT plan(88);

-------------------------------------------------------------------------------
-- catalogue invariants (as the superuser)
-------------------------------------------------------------------------------
SELECT is(pg_has_role('app_user', 'ft_orders_app', 'MEMBER'), true, 'setup: app_user is in ft_orders_app');
SELECT is(rolsuper, false, 'setup: app_user is not a superuser') FROM pg_roles WHERE rolname = 'app_user';
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
	   WHERE p.pronamespace = 'ft_orders'::regnamespace
		 AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
										   WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))$$,
	'no ft_orders function is executable by PUBLIC');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
	   WHERE p.pronamespace = 'ft_orders'::regnamespace
		 AND has_function_privilege('ft_orders_app', p.oid, 'EXECUTE')
		 AND p.oid NOT IN ('ft_orders.place_order(text, text, bigint, text, jsonb, text)'::regprocedure,
						   'ft_orders.get_order(bigint)'::regprocedure,
						   'ft_orders.worker_stats()'::regprocedure,
						   'ft_orders.gateway_stats()'::regprocedure,
						   'ft_orders.metrics()'::regprocedure)$$,
	'ft_orders_app may execute place_order, get_order, metrics and the stats functions behind the views, nothing else');
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || priv FROM pg_class c,
			 unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS priv
	   WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'p')
		 AND has_table_privilege('ft_orders_app', c.oid, priv)$$,
	'ft_orders_app has no privilege on any ft_orders table');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind = 'S'
		 AND CASE WHEN c.relkind = 'S'
				  THEN has_sequence_privilege('ft_orders_app', c.oid, 'USAGE,SELECT,UPDATE') END$$,
	'ft_orders_app has no privilege on any ft_orders sequence');
SELECT is(has_schema_privilege('ft_orders_app', 'ft_orders', 'CREATE'), false,
		  'ft_orders_app cannot create objects in schema ft_orders');
SELECT lives_ok($$SHOW ft_orders.gateway_token$$, 'the superuser can SHOW ft_orders.gateway_token (the setting exists)');

-- traps for the search_path test below: created by the superuser in public
-- (PostgreSQL 15 no longer lets ordinary roles create there)
CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE sql
	AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
CREATE FUNCTION public.nextval(regclass) RETURNS bigint LANGUAGE sql AS $$ SELECT 1::bigint $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
	AS $$ SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION public.evil_texteq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_texteq);
CREATE FUNCTION public.evil_int8eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_int8eq);

SELECT order_id AS su_order FROM ft_orders.place_order('key-05-su', 'cust-5', 100, 'EUR', '[]', 'pm_card_visa') \gset

-------------------------------------------------------------------------------
-- as the application role
-------------------------------------------------------------------------------
SET ROLE app_user;
SELECT is(current_user::text, 'app_user', 'now acting as app_user');

-- allowed
SELECT lives_ok($$SELECT * FROM ft_orders.place_order('key-05-app', 'cust-5', 250, 'EUR',
													   '[{"sku":"Z"}]', 'pm_card_visa')$$,
				'app_user can call place_order');
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-05-app', 'cust-5', 250, 'EUR',
																'[{"sku":"Z"}]', 'pm_card_visa')$$,
				  $$VALUES (true)$$, 'app_user gets a replay');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-05-app', 'cust-5', 251, 'EUR',
														'[{"sku":"Z"}]', 'pm_card_visa')$$,
				 'FT409', NULL, 'app_user gets FT409');
SELECT is((ft_orders.get_order(:su_order)).customer_id, 'cust-5', 'app_user can call get_order');
SELECT ok(ft_orders.get_order(-5) IS NULL, 'app_user: get_order(unknown) is NULL');
SELECT lives_ok(format('SELECT * FROM ft_orders.%I', v), format('app_user can SELECT ft_orders.%s', v))
  FROM unnest(ARRAY['queue_status', 'order_summary', 'worker_status', 'gateway_status']) AS v;
SELECT is((SELECT orders FROM ft_orders.order_summary WHERE status = 'pending') >= 2, true,
		  'app_user sees the order counts through order_summary');

-- denied: the tables
SELECT throws_ok(format(sql, t), '42501', NULL, format('app_user: %s ft_orders.%s -> 42501', op, t))
  FROM unnest(ARRAY['orders', 'idempotency_keys', 'outbox', 'dead_letters',
					'payment_attempts', 'order_events']) AS t,
	   (VALUES ('SELECT', 'SELECT * FROM ft_orders.%I'),
			   ('INSERT', 'INSERT INTO ft_orders.%I DEFAULT VALUES'),
			   ('UPDATE', 'UPDATE ft_orders.%I SET order_id = order_id'),
			   ('DELETE', 'DELETE FROM ft_orders.%I'),
			   ('TRUNCATE', 'TRUNCATE ft_orders.%I')) AS ops(op, sql);		-- 30 tests
SELECT throws_ok($$SELECT nextval('ft_orders.orders_order_id_seq')$$, '42501', NULL,
				 'app_user: nextval(orders_order_id_seq) -> 42501');
SELECT throws_ok($$CREATE TABLE ft_orders.evil (x int)$$, '42501', NULL,
				 'app_user: CREATE TABLE in schema ft_orders -> 42501');

-- denied: internal and operator functions
SELECT throws_ok($$SELECT ft_orders._change_status(ARRAY[1]::bigint[], ARRAY['paid']::ft_orders.order_status[],
												   ARRAY[1], ARRAY['x'], ARRAY['x'], ARRAY['x'])$$,
				 '42501', NULL, 'app_user: _change_status -> 42501');
SELECT throws_ok($$SELECT ft_orders._check_database()$$, '42501', NULL, 'app_user: _check_database -> 42501');
SELECT throws_ok($$SELECT ft_orders.retry_dead_letter(1)$$, '42501', NULL, 'app_user: retry_dead_letter -> 42501');
SELECT throws_ok($$SELECT ft_orders.retry_dead_letters()$$, '42501', NULL, 'app_user: retry_dead_letters -> 42501');
SELECT throws_ok($$SELECT ft_orders.purge_expired_keys()$$, '42501', NULL, 'app_user: purge_expired_keys -> 42501');
SELECT throws_ok($$SELECT ft_orders.purge_history()$$, '42501', NULL, 'app_user: purge_history -> 42501');
SELECT throws_ok($$SELECT ft_orders.reset_stats()$$, '42501', NULL, 'app_user: reset_stats -> 42501');

-- the gateway secret
SELECT throws_ok($$SHOW ft_orders.gateway_token$$, '42501', NULL, 'app_user: SHOW ft_orders.gateway_token -> 42501');
SELECT throws_ok($$SELECT current_setting('ft_orders.gateway_token')$$, '42501', NULL,
				 'app_user: current_setting(''ft_orders.gateway_token'') -> 42501');
SELECT throws_ok($$SELECT current_setting('ft_orders.gateway_token', true)$$, '42501', NULL,
				 'app_user: current_setting(''ft_orders.gateway_token'', missing_ok) -> 42501');
SELECT is((SELECT count(*)::int FROM pg_settings WHERE name = 'ft_orders.gateway_token'), 0,
		  'app_user: no pg_settings row for ft_orders.gateway_token');
SELECT is((SELECT count(*)::int FROM pg_settings WHERE name LIKE 'ft_orders.%' AND setting ~* 'bearer'), 0,
		  'app_user: no ft_orders setting leaks a bearer token');
SELECT cmp_ok((SELECT count(*)::int FROM pg_settings WHERE name = 'ft_orders.batch_size'), '=', 1,
			  'app_user still sees ordinary ft_orders settings (ft_orders.batch_size)');

-- sighup settings cannot be changed in a session
SELECT throws_ok($$SET ft_orders.batch_size = 5$$, '55P02',
				 'parameter "ft_orders.batch_size" cannot be changed now',
				 'app_user: SET ft_orders.batch_size -> 55P02 (sighup setting)');
SELECT throws_ok($$SELECT set_config('ft_orders.gateway_url', 'http://evil.example', true)$$, '55P02', NULL,
				 'app_user: set_config(ft_orders.gateway_url) -> 55P02');
SELECT throws_ok($$SET ft_orders.gateway_token = 'x'$$, '55P02', NULL,
				 'app_user: SET ft_orders.gateway_token -> 55P02');
SELECT is(current_setting('ft_orders.batch_size'), '100', 'ft_orders.batch_size is unchanged');

-------------------------------------------------------------------------------
-- SECURITY DEFINER place_order ignores the caller's search_path tricks
-------------------------------------------------------------------------------
-- temp tables shadowing the extension's tables, first on the path
CREATE TEMP TABLE orders (LIKE pg_catalog.pg_class);
CREATE TEMP TABLE idempotency_keys (idempotency_key text, fingerprint bytea, order_id bigint);
CREATE TEMP TABLE outbox (order_id bigint);
-- pgTAP itself cannot run on that path (the "=" trap breaks it): collect
-- the values with \gset under the hostile path, assert after resetting it.
SET LOCAL search_path = pg_temp, public, pg_catalog;
SELECT gen_random_uuid() AS trap_uuid, now() AS trap_now, ('a'::text = 'b'::text) AS trap_eq \gset
SELECT order_id AS evil_order, replayed AS evil_replayed
  FROM ft_orders.place_order('key-05-evil', 'cust-5', 300, 'EUR', '[]', 'pm_card_visa') \gset
DO $$
BEGIN
	PERFORM * FROM ft_orders.place_order('key-05-evil', 'cust-5', 301, 'EUR', '[]', 'pm_card_visa');
	PERFORM pg_catalog.set_config('ft05.reuse', 'no error', true);
EXCEPTION WHEN OTHERS THEN
	PERFORM pg_catalog.set_config('ft05.reuse', SQLSTATE, true);
END
$$;
SELECT order_id AS other_order, replayed AS other_replayed
  FROM ft_orders.place_order('key-05-other', 'cust-5', 301, 'EUR', '[]', 'pm_card_visa') \gset
SELECT (ft_orders.get_order(:evil_order)).payment_key AS evil_key,
	   (ft_orders.get_order(:evil_order)).created_at AS evil_created,
	   (ft_orders.get_order(:evil_order)).idempotency_key AS evil_idem,
	   (ft_orders.get_order(:su_order)).idempotency_key AS su_idem \gset
RESET search_path;

-- the traps do bite code that does not pin its search_path
SELECT is(:'trap_uuid'::uuid, '00000000-0000-0000-0000-000000000000'::uuid,
		  'trap check: unqualified gen_random_uuid() resolved to public.gen_random_uuid()');
SELECT is(:'trap_now'::timestamptz, '2000-01-01 00:00:00+00'::timestamptz,
		  'trap check: unqualified now() resolved to public.now()');
SELECT is(:'trap_eq'::boolean, true, 'trap check: text = text resolved to the public operator');
-- ... but not place_order / get_order
SELECT is(:'evil_replayed'::boolean, false, 'place_order under the hostile search_path creates a new order');
SELECT isnt(:evil_order::bigint, 1::bigint, 'the order_id does not come from public.nextval()');
SELECT isnt(:'evil_key'::uuid, '00000000-0000-0000-0000-000000000000'::uuid,
			'the payment_key is a real UUID, not public.gen_random_uuid()');
SELECT is(:'evil_created'::timestamptz, now(), 'created_at is the real transaction time, not public.now()');
SELECT is((SELECT count(*)::int FROM pg_temp.orders) + (SELECT count(*)::int FROM pg_temp.idempotency_keys)
		  + (SELECT count(*)::int FROM pg_temp.outbox), 0,
		  'nothing went into the caller''s temp tables');
SELECT is(current_setting('ft05.reuse'), 'FT409',
		  'the same key with another amount is still FT409 (fingerprints compared truly)');
SELECT is(:'other_replayed'::boolean, false,
		  'another key is a new order, not a replay of key-05-evil (keys compared with pg_catalog.=)');
SELECT isnt(:other_order::bigint, :evil_order::bigint, '... with its own order_id');
SELECT is(:'evil_idem'::text, 'key-05-evil', 'get_order finds the right row (hostile "=" on bigint)');
SELECT is(:'su_idem'::text, 'key-05-su', 'get_order finds the right row (2)');
RESET ROLE;

-- the same in a fresh backend, where the hostile path is in force at the
-- first place_order call (when the C code prepares and keeps its plans)
SELECT dblink_connect('fresh', format('host=127.0.0.1 port=%s dbname=ftdb user=app_user', current_setting('port'))) AS ignore \gset
SELECT dblink_exec('fresh', 'BEGIN') AS ignore \gset
SELECT dblink_exec('fresh', $$CREATE TEMP TABLE idempotency_keys (idempotency_key text, fingerprint bytea, order_id bigint);
							  CREATE TEMP TABLE orders (order_id bigint, status text);
							  CREATE TEMP TABLE outbox (order_id bigint);
							  SET LOCAL search_path = pg_temp, public$$) AS ignore \gset
SELECT * FROM dblink('fresh', $$SELECT current_user::text, order_id, replayed
								 FROM ft_orders.place_order('key-05-fresh', 'cust-5', 300, 'EUR', '[]', 'pm_card_visa')$$)
	AS t(who text, order_id bigint, replayed boolean) \gset fresh_
SELECT * FROM dblink('fresh', $$SELECT (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM orders)
									  + (SELECT count(*) FROM outbox),
									  (SELECT replayed FROM ft_orders.place_order('key-05-fresh', 'cust-5', 300, 'EUR', '[]', 'pm_card_visa')),
									  (ft_orders.get_order($$ || :fresh_order_id || $$)).idempotency_key$$)
	AS t(temp_rows bigint, replay boolean, idem text) \gset fresh_
SELECT dblink_exec('fresh', 'ROLLBACK') AS ignore \gset
SELECT dblink_disconnect('fresh') AS ignore \gset
SELECT is(:'fresh_who'::text, 'app_user', 'fresh backend runs as app_user');
SELECT is(:'fresh_replayed'::boolean, false, 'fresh backend, hostile path at the first call: a new order');
SELECT is(:fresh_temp_rows::bigint, 0::bigint, 'fresh backend: nothing went into the shadowing temp tables');
SELECT is(:'fresh_replay'::boolean, true, 'fresh backend: the repeat is a replay (key found in ft_orders.idempotency_keys)');
SELECT is(:'fresh_idem'::text, 'key-05-fresh', 'fresh backend: get_order reads ft_orders.orders');

SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key IN ('key-05-evil', 'key-05-other')), 2,
		  'as superuser: both orders are in ft_orders.orders');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox o JOIN ft_orders.orders r USING (order_id)
			WHERE r.idempotency_key IN ('key-05-evil', 'key-05-other')), 2,
		  'as superuser: both have their outbox row');

SELECT * FROM finish();
ROLLBACK;
