-- upgrade: the chain 1.0 -> 1.1 -> 1.2 keeps the data; 1.1 adds metrics()
-- and the comments, 1.2 makes _change_status PL/pgSQL (runs last: it drops
-- and re-creates the extension).  The same
-- under live payment workers: tests/integration/upgrade.sh.
\set SHOW_CONTEXT never
SELECT name, version, installed FROM pg_available_extension_versions
 WHERE name = 'ft_orders' ORDER BY version;
SELECT source, target, path FROM pg_extension_update_paths('ft_orders')
 WHERE path IS NOT NULL ORDER BY source, target;

DROP EXTENSION ft_orders;
CREATE EXTENSION ft_orders VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';
SELECT ft_orders.metrics();		-- not in 1.0
SELECT col_description('ft_orders.orders'::regclass, 3) AS customer_id_comment_in_1_0;

-- data under 1.0: three orders, one of them failed with a dead letter
SELECT order_id, status, replayed FROM ft_orders.place_order('up-1', 'c', 100, 'EUR');
SELECT order_id, status, replayed FROM ft_orders.place_order('up-2', 'c', 200, 'EUR');
SELECT order_id, status, replayed FROM ft_orders.place_order('up-3', 'c', 300, 'USD');
WITH d AS (DELETE FROM ft_orders.outbox WHERE order_id = 3 RETURNING event_id, order_id)
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error)
SELECT event_id, order_id, 1, 'HTTP 422' FROM d;
SELECT ft_orders._change_status(ARRAY[3::bigint], ARRAY['failed'::ft_orders.order_status],
	ARRAY[1], ARRAY[NULL::text], ARRAY['HTTP 422'], ARRAY['failed: HTTP 422']);
CREATE TEMP TABLE before_update AS
SELECT (SELECT string_agg(t::text, ' ' ORDER BY order_id) FROM ft_orders.orders t) AS orders,
	   (SELECT string_agg(t::text, ' ' ORDER BY event_id) FROM ft_orders.outbox t) AS outbox,
	   (SELECT string_agg(t::text, ' ' ORDER BY event_id) FROM ft_orders.dead_letters t) AS dead_letters,
	   (SELECT string_agg(t::text, ' ' ORDER BY idempotency_key) FROM ft_orders.idempotency_keys t) AS idempotency_keys,
	   (SELECT string_agg(t::text, ' ' ORDER BY id) FROM ft_orders.order_events t) AS order_events;

ALTER EXTENSION ft_orders UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';

-- the data is untouched
SELECT b.orders = (SELECT string_agg(t::text, ' ' ORDER BY order_id) FROM ft_orders.orders t) AS orders_same,
	   b.outbox = (SELECT string_agg(t::text, ' ' ORDER BY event_id) FROM ft_orders.outbox t) AS outbox_same,
	   b.dead_letters = (SELECT string_agg(t::text, ' ' ORDER BY event_id) FROM ft_orders.dead_letters t) AS dead_letters_same,
	   b.idempotency_keys = (SELECT string_agg(t::text, ' ' ORDER BY idempotency_key) FROM ft_orders.idempotency_keys t) AS keys_same,
	   b.order_events = (SELECT string_agg(t::text, ' ' ORDER BY id) FROM ft_orders.order_events t) AS events_same
  FROM before_update b;
SELECT order_id, status, replayed FROM ft_orders.place_order('up-1', 'c', 100, 'EUR');
SELECT order_id, status, replayed FROM ft_orders.place_order('up-4', 'c', 400, 'EUR');

-- metrics() arrived; its table figures (the shared-memory ones move with
-- the idle workers' states, so they are left out here)
SELECT l.line
  FROM regexp_split_to_table(ft_orders.metrics(), E'\n') WITH ORDINALITY AS l(line, n)
 WHERE l.line ~ '^(# (HELP|TYPE) )?ft_orders_(outbox_events|dead_letters|orders)\M'
 ORDER BY l.n;
SELECT has_function_privilege('ft_orders_app', 'ft_orders.metrics()', 'EXECUTE') AS app_may_scrape,
	   has_function_privilege('public', 'ft_orders.metrics()', 'EXECUTE') AS public_may_scrape;

-- the comments of 1.1: every member and every column explains itself
SELECT col_description('ft_orders.orders'::regclass, 3) AS customer_id_comment_in_1_1;
SELECT pg_describe_object(d.classid, d.objid, 0) AS member,
	   obj_description(d.objid, c.relname) IS NOT NULL AS commented
  FROM pg_depend d JOIN pg_class c ON c.oid = d.classid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ft_orders')
 ORDER BY 1;
SELECT count(*) AS columns, count(col_description(a.attrelid, a.attnum)) AS commented
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'v')
   AND a.attnum > 0 AND NOT a.attisdropped;
SELECT obj_description('ft_orders'::regnamespace, 'pg_namespace') AS schema_comment;
\dx+ ft_orders

-- 1.2: _change_status becomes PL/pgSQL (the payment workers call it too);
-- same signature, grants and data
ALTER EXTENSION ft_orders UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';
SELECT l.lanname, has_function_privilege('ft_orders_app', p.oid, 'EXECUTE') AS app_may_call,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[])'::regprocedure;
SELECT ft_orders._change_status(ARRAY[1::bigint], ARRAY['paid'::ft_orders.order_status],
	ARRAY[1], ARRAY['pay_up1'], ARRAY[NULL::text], ARRAY['paid']);
SELECT order_id, status, attempts, payment_id FROM ft_orders.orders ORDER BY order_id;
SELECT order_id, status, attempts, detail FROM ft_orders.order_events ORDER BY id;
