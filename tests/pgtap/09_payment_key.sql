-- 09_payment_key.sql: payment keys derived from (key space, idempotency
-- key, request fingerprint, purge generation) (1.4; 1.2 and 1.3 without
-- the key space; docs/reference.md, "Failures").  Any incarnation of one
-- order carries the same key; the same key and request after a purge is a
-- new order under a new key; a derived key that is taken is refused with
-- 40001 and writes nothing; a purge racing a placement of its key gives
-- 40001 too (sessions opened with dblink, their rows deleted at the end).
BEGIN;
SELECT plan(61);

-- the key of an order recomputed from what is stored
CREATE FUNCTION pg_temp.recomputed(p_order_id bigint, p_generation bigint) RETURNS uuid
LANGUAGE sql AS $$
	SELECT ft_orders._payment_key(k.idempotency_key, k.fingerprint, p_generation, ft_orders._key_space())
	  FROM ft_orders.idempotency_keys k WHERE k.order_id = p_order_id
$$;

-------------------------------------------------------------------------------
-- the derivation function
-------------------------------------------------------------------------------
SELECT has_function('ft_orders', '_payment_key', ARRAY['text', 'bytea', 'bigint'], '_payment_key(text, bytea, bigint) exists');
SELECT function_returns('ft_orders', '_payment_key', ARRAY['text', 'bytea', 'bigint'], 'uuid', '... returns uuid');
SELECT volatility_is('ft_orders', '_payment_key', ARRAY['text', 'bytea', 'bigint'], 'immutable', '... is IMMUTABLE');
SELECT is(ft_orders._payment_key('k', '\x00', 0), 'd38d0f4d-17b5-82d8-8740-36353b191edb'::uuid,
		  'the derivation is fixed (a known value; gateways hold these keys)');
SELECT isnt(ft_orders._payment_key('k', '\x00', 0), ft_orders._payment_key('k', '\x00', 1), 'the generation changes the key');
SELECT isnt(ft_orders._payment_key('k', '\x00', 0), ft_orders._payment_key('k', '\x01', 0), 'the fingerprint changes the key');
SELECT isnt(ft_orders._payment_key('k', '\x00', 0), ft_orders._payment_key('k2', '\x00', 0), 'the idempotency key changes the key');
SELECT isnt(ft_orders._payment_key('ab', '\x63', 0), ft_orders._payment_key('a', '\x6263', 0),
			'fields are length-prefixed: moving a byte from key to fingerprint changes the key');
SELECT throws_ok($$SELECT ft_orders._payment_key('k', '\x00', -1)$$, '22023',
				 'invalid value for argument "generation"', 'a negative generation -> 22023');
SELECT is(ft_orders._payment_key(NULL, '\x00', 0), NULL, 'STRICT: NULL in, NULL out');
SELECT is(has_function_privilege('ft_orders_app', 'ft_orders._payment_key(text, bytea, bigint)', 'EXECUTE'), false,
		  'ft_orders_app may not call _payment_key');
SELECT is(has_function_privilege('public', 'ft_orders._payment_key(text, bytea, bigint)', 'EXECUTE'), false,
		  'PUBLIC may not call _payment_key');
-- rule v2 (1.4): the key space (system identifier, database name) first
SELECT has_function('ft_orders', '_payment_key', ARRAY['text', 'bytea', 'bigint', 'bytea'], '_payment_key(text, bytea, bigint, bytea) exists');
SELECT volatility_is('ft_orders', '_payment_key', ARRAY['text', 'bytea', 'bigint', 'bytea'], 'immutable', '... is IMMUTABLE');
SELECT is(ft_orders._payment_key('k', '\x00', 0, '\x0000000000000001'::bytea || convert_to('db', 'UTF8')),
		  '4abc3c47-07b3-8a5e-89c0-086be5d119b8'::uuid,
		  'rule v2 is fixed (a known value; gateways hold these keys)');
SELECT isnt(ft_orders._payment_key('k', '\x00', 0, '\x00'), ft_orders._payment_key('k', '\x00', 0, '\x01'),
			'the key space changes the key');
SELECT isnt(ft_orders._payment_key('k', '\x00', 0, ''), ft_orders._payment_key('k', '\x00', 0),
			'rule v2 with an empty key space is not rule v1');
SELECT isnt(ft_orders._payment_key('k', '\x00', 0, '\x00'), ft_orders._payment_key('', '\x006b', 0, ''),
			'... and its fields are length-prefixed too');
SELECT throws_ok($$SELECT ft_orders._payment_key('k', '\x00', -1, '\x00')$$, '22023',
				 'invalid value for argument "generation"', 'rule v2: a negative generation -> 22023');
SELECT is(ft_orders._key_space(),
		  (SELECT decode(lpad(to_hex(system_identifier), 16, '0'), 'hex') FROM pg_control_system())
		  || convert_to(current_database(), 'UTF8'),
		  '_key_space() is the system identifier (8 bytes, big-endian) and the database name');
SELECT volatility_is('ft_orders', '_key_space', ARRAY[]::text[], 'stable', '... STABLE');
SELECT is(has_function_privilege('ft_orders_app', 'ft_orders._payment_key(text, bytea, bigint, bytea)', 'EXECUTE'), false,
		  'ft_orders_app may not call _payment_key (rule v2)');
SELECT is(has_function_privilege('public', 'ft_orders._key_space()', 'EXECUTE'), false,
		  'PUBLIC may not call _key_space');
SELECT has_table('ft_orders', 'idempotency_key_generations', 'table idempotency_key_generations exists');
SELECT col_is_pk('ft_orders', 'idempotency_key_generations', 'idempotency_key', '... keyed by idempotency_key');
SELECT is(has_table_privilege('ft_orders_app', 'ft_orders.idempotency_key_generations', 'SELECT'), false,
		  'ft_orders_app may not read the generations');
SELECT ok((SELECT 'ft_orders.idempotency_key_generations'::regclass = ANY (extconfig)
			 FROM pg_extension WHERE extname = 'ft_orders'), 'pg_dump keeps the generations (extconfig)');

-------------------------------------------------------------------------------
-- one order, its replays, its lost-and-retried incarnation
-------------------------------------------------------------------------------
SELECT order_id AS a_id FROM ft_orders.place_order('key-09-a', 'cust-9', 1500, 'EUR', '[{"sku":"P"}]', 'pm_card_visa') \gset
SELECT payment_key AS a_key FROM ft_orders.orders WHERE order_id = :a_id \gset
SELECT is(:'a_key'::uuid, pg_temp.recomputed(:a_id, 0),
		  'a new order''s payment_key is _payment_key(key, stored fingerprint, generation 0, _key_space())');
SELECT isnt(:'a_key'::uuid, (SELECT ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0)
							   FROM ft_orders.idempotency_keys k WHERE k.order_id = :a_id),
			'... not rule v1''s key: the same key and request in another database gets another payment_key');
SELECT is(substr(:'a_key', 15, 1), '8', '... a version 8 UUID');
SELECT ok(substr(:'a_key', 20, 1) IN ('8', '9', 'a', 'b'), '... with the RFC 9562 variant');
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-09-a', 'cust-9', 1500, 'eur', '[{"sku": "P"}]', 'pm_card_visa')$$,
				  $$VALUES (true)$$, 'the same key and request replays');
SELECT is((SELECT payment_key FROM ft_orders.orders WHERE order_id = :a_id), :'a_key'::uuid, '... the payment_key is unchanged');

SELECT order_id AS b_id FROM ft_orders.place_order('key-09-b', 'cust-9', 1500, 'EUR', '[{"sku":"P"}]', 'pm_card_visa') \gset
SELECT isnt((SELECT payment_key FROM ft_orders.orders WHERE order_id = :b_id), :'a_key'::uuid,
			'the same request under another key gets another payment_key');

-- different parameters under the existing key: FT409, nothing written
SELECT count(*) AS orders_before FROM ft_orders.orders \gset
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-09-a', 'cust-9', 1501, 'EUR', '[{"sku":"P"}]', 'pm_card_visa')$$,
				 'FT409', 'idempotency key reused with different parameters',
				 'the key with another request still raises FT409 while the key exists');
SELECT is((SELECT count(*) FROM ft_orders.orders), :orders_before::bigint, '... and writes no order');

-- the order and its key are lost (as with an old timeline after pg_rewind);
-- the client retries the same key and request: same payment_key
DELETE FROM ft_orders.outbox WHERE order_id = :a_id;
DELETE FROM ft_orders.order_events WHERE order_id = :a_id;
DELETE FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-09-a';
DELETE FROM ft_orders.orders WHERE order_id = :a_id;
SELECT order_id AS a2_id, replayed AS a2_replayed
  FROM ft_orders.place_order('key-09-a', 'cust-9', 1500, 'EUR', '[{"sku":"P"}]', 'pm_card_visa') \gset
SELECT is(:'a2_replayed'::boolean, false, 'after the loss the retry creates the order again');
SELECT isnt(:a2_id::bigint, :a_id::bigint, '... under a new order_id');
SELECT is((SELECT payment_key FROM ft_orders.orders WHERE order_id = :a2_id), :'a_key'::uuid,
		  '... and the same payment_key: the gateway sees one Idempotency-Key for both incarnations');

-------------------------------------------------------------------------------
-- after a purge the same key and request is a new order with a new key
-------------------------------------------------------------------------------
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'key-09-a';
SELECT is(ft_orders.purge_expired_keys(), 1::bigint, 'purge_expired_keys() purges the expired key');
SELECT is((SELECT generation FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-09-a'), 1::bigint,
		  '... and counts its generation up to 1');
SELECT is((SELECT count(*)::int FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-09-b'), 0,
		  'a key that was not purged has no generation row');
SELECT order_id AS a3_id, replayed AS a3_replayed
  FROM ft_orders.place_order('key-09-a', 'cust-9', 1500, 'EUR', '[{"sku":"P"}]', 'pm_card_visa') \gset
SELECT is(:'a3_replayed'::boolean, false, 'the same key and request after the purge: a new order');
SELECT isnt((SELECT payment_key FROM ft_orders.orders WHERE order_id = :a3_id), :'a_key'::uuid,
			'... under a new payment_key (while the earlier order still exists)');
SELECT is((SELECT payment_key FROM ft_orders.orders WHERE order_id = :a3_id), pg_temp.recomputed(:a3_id, 1),
		  '... derived with generation 1');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :a3_id), 1, '... with its own outbox event: charged again');

UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'key-09-a';
SELECT is(ft_orders.purge_expired_keys(), 1::bigint, 'a second purge of the key');
SELECT is((SELECT generation FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-09-a'), 2::bigint,
		  '... generation 2');
SELECT order_id AS a4_id FROM ft_orders.place_order('key-09-a', 'cust-9', 1500, 'EUR', '[{"sku":"P"}]', 'pm_card_visa') \gset
SELECT is((SELECT count(DISTINCT payment_key)::int FROM ft_orders.orders WHERE idempotency_key = 'key-09-a'), 3,
		  'three orders of the key (generations 0, 1, 2), three payment keys');

-------------------------------------------------------------------------------
-- a derived key that is taken: 40001, nothing written
-------------------------------------------------------------------------------
-- the generation row lost (deleted by hand) while the key's orders exist:
-- the next order of the key would derive generation 0's key again
DELETE FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-09-a';
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'key-09-a';
SELECT is(ft_orders.purge_expired_keys(), 1::bigint, 'purge after the generation row was deleted: generation 1 again');
SELECT count(*) AS orders_before, (SELECT count(*) FROM ft_orders.outbox) AS outbox_before FROM ft_orders.orders \gset
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-09-a', 'cust-9', 1500, 'EUR', '[{"sku":"P"}]', 'pm_card_visa')$$,
				 '40001', NULL, 'a derived payment_key that is taken raises 40001, not a unique violation');
SELECT is((SELECT count(*) FROM ft_orders.orders), :orders_before::bigint, '... no order written');
SELECT is((SELECT count(*) FROM ft_orders.outbox), :outbox_before::bigint, '... no outbox event written');
SELECT is((SELECT count(*)::int FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-09-a'), 0, '... no key written');

-------------------------------------------------------------------------------
-- a purge that commits while a placement of its key waits: 40001, then a
-- retry makes the new order under the next generation
-------------------------------------------------------------------------------
SELECT ft_test.conninfo('ft09') AS conninfo, ft_test.run_id('key-09') AS run \gset
SELECT is(dblink_connect('a', :'conninfo'), 'OK', 'session A connected');
SELECT is(dblink_connect('b', :'conninfo'), 'OK', 'session B connected');
SELECT ft_test.backend_pid('a') AS a_pid, ft_test.backend_pid('b') AS b_pid \gset
SELECT order_id AS r_id FROM dblink('a', format($$SELECT order_id FROM ft_orders.place_order(%L, 'cust-9', 900, 'EUR')$$, :'run'))
	   AS t(order_id bigint) \gset
SELECT dblink_exec('a', format($$UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '25 hours'
								  WHERE idempotency_key = %L$$, :'run')) AS ignore \gset
SELECT dblink_exec('a', 'BEGIN') AS ignore \gset
SELECT n AS a_purged FROM dblink('a', 'SELECT ft_orders.purge_expired_keys()') AS t(n bigint) \gset
SELECT dblink_send_query('b', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-9', 900, 'EUR')$$, :'run')) AS sent \gset
SELECT ok(ft_test.waits_for(:b_pid, :a_pid),
		  'B''s placement waits for A''s purge of the key');
SELECT ok(ft_test.ends('a', 'b'), 'B returns once the purge commits');
SELECT count(*) AS b_rows FROM dblink_get_result('b', false) AS t(order_id bigint, replayed boolean) \gset
SELECT alike(dblink_error_message('b'), '%could not serialize access due to a concurrent purge%',
			'B gets the 40001 error, not a unique violation');
SELECT count(*) AS drained FROM dblink_get_result('b', false) AS t(order_id bigint, replayed boolean) \gset
SELECT order_id AS r2_id, replayed AS r2_replayed
  FROM dblink('b', format($$SELECT order_id, replayed FROM ft_orders.place_order(%L, 'cust-9', 900, 'EUR')$$, :'run'))
	   AS t(order_id bigint, replayed boolean) \gset
SELECT is(:'r2_replayed'::boolean, false, 'B''s retry places the new order');
SELECT isnt((SELECT payment_key FROM ft_orders.orders WHERE order_id = :r2_id),
			(SELECT payment_key FROM ft_orders.orders WHERE order_id = :r_id),
			'... under another payment_key than the first incarnation');

SELECT dblink_exec('a', format($$
	WITH o AS (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = %L),
		 x AS (DELETE FROM ft_orders.outbox WHERE order_id IN (SELECT order_id FROM o)),
		 e AS (DELETE FROM ft_orders.order_events WHERE order_id IN (SELECT order_id FROM o)),
		 k AS (DELETE FROM ft_orders.idempotency_keys WHERE idempotency_key = %L),
		 g AS (DELETE FROM ft_orders.idempotency_key_generations WHERE idempotency_key = %L)
	DELETE FROM ft_orders.orders WHERE order_id IN (SELECT order_id FROM o)$$,
	:'run', :'run', :'run')) AS cleanup \gset
SELECT dblink_disconnect('a') AS ignore \gset
SELECT dblink_disconnect('b') AS ignore \gset

SELECT * FROM finish();
ROLLBACK;
