-- upgrade: the chain 1.0 -> 1.1 -> 1.2 -> 1.3 -> 1.4 -> 1.5 keeps the data; 1.1 adds metrics()
-- and the comments, 1.2 the derived payment keys and their purge
-- generations and makes _change_status PL/pgSQL (runs last: it drops and
-- re-creates the extension).  The same
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

-- every row of the data tables, as jsonb; an update keeps the data when each
-- row is still there with the same values (columns an update adds are not
-- compared) and no row appeared
CREATE TEMP VIEW data_now AS
SELECT 'orders' AS tbl, t.order_id::text AS id, to_jsonb(t) AS r FROM ft_orders.orders t
UNION ALL
SELECT 'outbox', t.event_id::text, to_jsonb(t) FROM ft_orders.outbox t
UNION ALL
SELECT 'dead_letters', t.event_id::text, to_jsonb(t) FROM ft_orders.dead_letters t
UNION ALL
SELECT 'idempotency_keys', t.idempotency_key, to_jsonb(t) FROM ft_orders.idempotency_keys t
UNION ALL
SELECT 'order_events', t.id::text, to_jsonb(t) FROM ft_orders.order_events t;
CREATE TEMP TABLE data_before AS SELECT * FROM data_now;
-- per table: rows before and after, and rows changed or new since data_before
CREATE TEMP VIEW data_changes AS
SELECT tbl, count(b.id) AS rows_before, count(n.id) AS rows_after,
	   count(*) FILTER (WHERE NOT coalesce(b.r <@ n.r, false)) AS changed_or_new
  FROM data_before b FULL JOIN data_now n USING (tbl, id)
 GROUP BY tbl ORDER BY tbl;

-- the extension's members, each with whether it has a comment; how many
-- columns its tables and views have and how many of them are commented
CREATE TEMP VIEW members AS
SELECT pg_describe_object(d.classid, d.objid, 0) AS member,
	   obj_description(d.objid, c.relname) IS NOT NULL AS commented
  FROM pg_depend d JOIN pg_class c ON c.oid = d.classid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ft_orders')
   -- not the row and array types made with a table, view or type (their
   -- internal dependency): members too from PostgreSQL 17 on, uncommented
   AND NOT EXISTS (SELECT FROM pg_depend i
                    WHERE i.classid = d.classid AND i.objid = d.objid AND i.deptype = 'i');
CREATE TEMP VIEW columns_commented AS
SELECT count(*) AS columns, count(col_description(a.attrelid, a.attnum)) AS commented
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'v')
   AND a.attnum > 0 AND NOT a.attisdropped;

ALTER EXTENSION ft_orders UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';

-- the data is untouched
SELECT * FROM data_changes;
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
SELECT * FROM members ORDER BY 1;
SELECT * FROM columns_commented;
SELECT obj_description('ft_orders'::regnamespace, 'pg_namespace') AS schema_comment;

-- 1.1 -> 1.2: the rows stay, old orders keep their random payment keys, new
-- orders get keys derived from (key, fingerprint, purge generation)
-- purge under 1.1 (ttl 24h) deletes keys only
UPDATE ft_orders.idempotency_keys SET created_at = created_at - interval '2 days' WHERE idempotency_key = 'up-2';
SELECT ft_orders.purge_expired_keys() AS purged_under_1_1;
TRUNCATE data_before;
INSERT INTO data_before SELECT * FROM data_now;
-- under 1.1 (new library, old schema) keys are random v4 UUIDs as before
SELECT substr(payment_key::text, 15, 1) AS version_digit_1_1
  FROM ft_orders.orders WHERE idempotency_key = 'up-4';

ALTER EXTENSION ft_orders UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';
SELECT * FROM data_changes;
SELECT count(*) AS generations_after_update FROM ft_orders.idempotency_key_generations;
-- a replay of a 1.0 key still returns its order
SELECT order_id, status, replayed FROM ft_orders.place_order('up-1', 'c', 100, 'EUR');
-- a new order under 1.2: version 8, variant 10, and the recomputation matches
SELECT order_id, status, replayed FROM ft_orders.place_order('up-5', 'c', 500, 'EUR');
SELECT substr(o.payment_key::text, 15, 1) AS version_digit,
	   substr(o.payment_key::text, 20, 1) IN ('8', '9', 'a', 'b') AS variant_10,
	   o.payment_key = ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0) AS derived
  FROM ft_orders.orders o JOIN ft_orders.idempotency_keys k USING (order_id)
 WHERE o.idempotency_key = 'up-5';
-- the key purged under 1.1 (generation 0, no row) starts a new order
SELECT order_id, status, replayed FROM ft_orders.place_order('up-2', 'c', 200, 'EUR');
SELECT count(*) AS orders_of_up_2, count(DISTINCT payment_key) AS payment_keys_of_up_2
  FROM ft_orders.orders WHERE idempotency_key = 'up-2';
-- purged under 1.2: generation 1, and the next order of the key gets another key
UPDATE ft_orders.idempotency_keys SET created_at = created_at - interval '2 days' WHERE idempotency_key = 'up-2';
SELECT ft_orders.purge_expired_keys() AS purged_under_1_2;
SELECT idempotency_key, generation FROM ft_orders.idempotency_key_generations;
SELECT order_id, status, replayed FROM ft_orders.place_order('up-2', 'c', 200, 'EUR');
SELECT count(*) AS orders_of_up_2, count(DISTINCT payment_key) AS payment_keys_of_up_2
  FROM ft_orders.orders WHERE idempotency_key = 'up-2';
-- the derivation is fixed: these values must never change (gateways hold them)
SELECT ft_orders._payment_key('k', '\x00'::bytea, 0) AS key_k_0,
	   ft_orders._payment_key('k', '\x00'::bytea, 1) AS key_k_1,
	   ft_orders._payment_key('k', '\x01'::bytea, 0) AS key_k_fp1;
SELECT ft_orders._payment_key('k', '\x00'::bytea, -1);

-- the new members: commented, internal ones closed to PUBLIC, dumped
SELECT * FROM members WHERE member ~ '(generations|_payment_key)' ORDER BY 1;
SELECT has_function_privilege('public', 'ft_orders._payment_key(text, bytea, bigint)', 'EXECUTE') AS public_may_derive,
	   has_table_privilege('ft_orders_app', 'ft_orders.idempotency_key_generations', 'SELECT') AS app_may_read_generations,
	   'ft_orders.idempotency_key_generations'::regclass = ANY (extconfig) AS generations_dumped
  FROM pg_extension WHERE extname = 'ft_orders';
SELECT * FROM columns_commented;

-- 1.2: _change_status is PL/pgSQL (the payment workers call it too); same
-- signature, grants and rows
SELECT l.lanname, has_function_privilege('ft_orders_app', p.oid, 'EXECUTE') AS app_may_call,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[])'::regprocedure;
SELECT ft_orders._change_status(ARRAY[1::bigint], ARRAY['paid'::ft_orders.order_status],
	ARRAY[1], ARRAY['pay_up1'], ARRAY[NULL::text], ARRAY['paid']);
SELECT order_id, status, attempts, payment_id FROM ft_orders.orders WHERE order_id = 1;
SELECT order_id, status, attempts, detail FROM ft_orders.order_events WHERE order_id = 1 ORDER BY id;

-- 1.2 -> 1.3: the rows stay (the tables only gain columns); events of 1.2
-- that were tried count as sent at their creation; the payment lifecycle
-- (new statuses, functions, the refunds table) and the webhook events
-- arrive commented, closed to PUBLIC and dumped; a 1.2 order is settled by
-- a webhook, once; gateway_status gains the gateway limits (rate_limit,
-- concurrency_limit, throttled, paused_until, failure_rate), and the view
-- of 1.2 keeps working on the new library until the update
SELECT circuit, requests, errors FROM ft_orders.gateway_status;
UPDATE ft_orders.outbox SET attempts = 1 WHERE order_id = 2;
TRUNCATE data_before;
INSERT INTO data_before SELECT * FROM data_now;
ALTER EXTENSION ft_orders UPDATE TO '1.3';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';
SELECT * FROM data_changes;
SELECT order_id, attempts, first_sent_at IS NOT NULL AS counted_as_sent, lookup, refund_id
  FROM ft_orders.outbox ORDER BY event_id;
SELECT event_id, first_sent_at IS NOT NULL AS counted_as_sent, refund_id FROM ft_orders.dead_letters;
SELECT enum_range(NULL::ft_orders.order_status);
SELECT * FROM members WHERE member ~ '(refund|cancel|reconcile|_settle)' ORDER BY 1;
SELECT p.oid::regprocedure AS function,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call,
	   has_function_privilege('ft_orders_app', p.oid, 'EXECUTE') AS app_may_call
  FROM pg_proc p
 WHERE p.pronamespace = 'ft_orders'::regnamespace
   AND p.proname IN ('cancel_order', 'refund_order', 'reconcile', '_create_refund',
					 '_refund_canceled', '_settle_refunds')
 ORDER BY 1;
SELECT 'ft_orders.refunds'::regclass = ANY (extconfig) AS refunds_dumped,
	   'ft_orders.refunds_refund_id_seq'::regclass = ANY (extconfig) AS refund_ids_dumped
  FROM pg_extension WHERE extname = 'ft_orders';
SELECT * FROM columns_commented;
-- order 1 is paid: a refund of it is queued; order 3 (failed) is canceled
-- after a look-up, so cancel_order requeues it
SELECT ft_orders.refund_order(1, 40, 'up') AS refund_id;
SELECT refund_id, order_id, amount_minor, currency, status FROM ft_orders.refunds;
SELECT ft_orders.cancel_order(3, 'upgrade test');
SELECT order_id, status, cancel_requested_at IS NOT NULL AS cancel_recorded FROM ft_orders.orders WHERE order_id = 3;
SELECT order_id, refund_id IS NOT NULL AS is_refund, lookup FROM ft_orders.outbox ORDER BY event_id;
SELECT pending, refunds FROM ft_orders.queue_status;
SELECT ft_orders.apply_gateway_event('generic',
	jsonb_build_object('event_id', 'up-wh-1', 'type', 'payment.succeeded', 'payment_id', 'pay_up5',
					   'payment_key', (SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'up-5')))
	AS applied,
	   ft_orders.apply_gateway_event('generic',
	jsonb_build_object('event_id', 'up-wh-1', 'type', 'payment.succeeded', 'payment_id', 'pay_up5',
					   'payment_key', (SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'up-5')))
	AS applied_again;
SELECT status, payment_id FROM ft_orders.orders WHERE idempotency_key = 'up-5';
SELECT event_id, type, applied, detail FROM ft_orders.gateway_events;
SELECT has_function_privilege('ft_orders_app', 'ft_orders.apply_gateway_event(text, jsonb)', 'EXECUTE') AS app_may_apply,
	   has_function_privilege('public', 'ft_orders._parse_gateway_event(text, jsonb)', 'EXECUTE') AS public_may_parse,
	   'ft_orders.gateway_events'::regclass = ANY (extconfig) AS gateway_events_dumped
  FROM pg_extension WHERE extname = 'ft_orders';
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type,
	   col_description(a.attrelid, a.attnum) IS NOT NULL AS commented
  FROM pg_attribute a
 WHERE a.attrelid = 'ft_orders.gateway_status'::regclass AND a.attnum > 0
 ORDER BY a.attnum;
-- no gateway, no limit: nothing throttled, no pause, an empty window
SELECT circuit, rate_limit, concurrency_limit, throttled, paused_until, failure_rate
  FROM ft_orders.gateway_status;
SELECT has_table_privilege('ft_orders_app', 'ft_orders.gateway_status', 'SELECT') AS app_may_read,
	   has_function_privilege('ft_orders_app', 'ft_orders.gateway_stats()', 'EXECUTE') AS app_may_call,
	   has_function_privilege('public', 'ft_orders.gateway_stats()', 'EXECUTE') AS public_may_call,
	   obj_description('ft_orders.gateway_status'::regclass, 'pg_class') IS NOT NULL AS view_commented,
	   obj_description('ft_orders.gateway_stats()'::regprocedure, 'pg_proc') IS NOT NULL AS function_commented;
SELECT l.line
  FROM regexp_split_to_table(ft_orders.metrics(), E'\n') WITH ORDINALITY AS l(line, n)
 WHERE l.line ~ '^ft_orders_gateway_(rate_limit|concurrency_limit|throttled_total|paused_until_timestamp_seconds|failure_rate) '
 ORDER BY l.n;

-- 1.3 -> 1.4: the rows stay; orders placed from now on derive their
-- payment_key within the database's key space (rule v2); the keys of
-- earlier orders stay as they were (rule v1 still recomputes them)
SELECT order_id AS v13_id FROM ft_orders.place_order('up-v13', 'c', 700, 'EUR') \gset
TRUNCATE data_before;
INSERT INTO data_before SELECT * FROM data_now;
ALTER EXTENSION ft_orders UPDATE TO '1.4';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';
SELECT * FROM data_changes;
SELECT order_id AS v14_id FROM ft_orders.place_order('up-v14', 'c', 700, 'EUR') \gset
SELECT o.idempotency_key,
	   o.payment_key = ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0) AS rule_v1,
	   o.payment_key = ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0, ft_orders._key_space()) AS rule_v2
  FROM ft_orders.orders o JOIN ft_orders.idempotency_keys k USING (order_id)
 WHERE o.order_id IN (:v13_id, :v14_id) ORDER BY o.order_id;
SELECT * FROM members WHERE member ~ '(_payment_key|_key_space)' ORDER BY 1;
SELECT p.oid::regprocedure AS function,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call,
	   has_function_privilege('ft_orders_app', p.oid, 'EXECUTE') AS app_may_call
  FROM pg_proc p
 WHERE p.pronamespace = 'ft_orders'::regnamespace AND p.proname IN ('_payment_key', '_key_space')
 ORDER BY 1;
SELECT * FROM columns_commented;

-- 1.4 -> 1.5: the rows stay
TRUNCATE data_before;
INSERT INTO data_before SELECT * FROM data_now;
ALTER EXTENSION ft_orders UPDATE TO '1.5';
SELECT extversion FROM pg_extension WHERE extname = 'ft_orders';
SELECT * FROM data_changes;
