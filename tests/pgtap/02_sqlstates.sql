-- 02_sqlstates.sql: every validation rule of place_order raises the
-- SQLSTATE of docs/reference.md, "SQL API", with a message naming the
-- argument; FT409 on a key reused with other parameters; replays and the
-- normalisations that make two calls the same request.  (Calls with the
-- default NULL payment_method are in 07_default_payment_method.sql.)
BEGIN;
SELECT plan(77);

-- a helper: call place_order with one argument replaced, the others valid
CREATE FUNCTION pg_temp.po(k text DEFAULT 'key-02', c text DEFAULT 'cust-1',
						   a bigint DEFAULT 1000, cur text DEFAULT 'EUR',
						   i jsonb DEFAULT '[{"sku":"A-1","qty":2}]',
						   pm text DEFAULT 'pm_card_visa')
RETURNS TABLE (order_id bigint, status ft_orders.order_status, replayed boolean)
LANGUAGE sql AS $$ SELECT * FROM ft_orders.place_order(k, c, a, cur, i, pm) $$;

-------------------------------------------------------------------------------
-- 22004: NULL where a value is required, message names the argument
-------------------------------------------------------------------------------
SELECT throws_ok($$SELECT * FROM ft_orders.place_order(NULL, 'c', 1, 'EUR', '[]', 'pm_x')$$,
				 '22004', 'argument "idempotency_key" must not be null', 'NULL idempotency_key: 22004');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('k', NULL, 1, 'EUR', '[]', 'pm_x')$$,
				 '22004', 'argument "customer_id" must not be null', 'NULL customer_id: 22004');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('k', 'c', NULL, 'EUR', '[]', 'pm_x')$$,
				 '22004', 'argument "amount_minor" must not be null', 'NULL amount_minor: 22004');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('k', 'c', 1, NULL, '[]', 'pm_x')$$,
				 '22004', 'argument "currency" must not be null', 'NULL currency: 22004');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('k', 'c', 1, 'EUR', NULL, 'pm_x')$$,
				 '22004', 'argument "items" must not be null', 'NULL items: 22004');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('k', 'c', 1, 'EUR', NULL::jsonb)$$,
				 '22004', 'argument "items" must not be null', 'NULL items (default payment_method): 22004');
SELECT throws_ok($$SELECT ft_orders.get_order(NULL)$$,
				 '22004', 'argument "order_id" must not be null', 'get_order(NULL): 22004');
SELECT throws_ok($$SELECT ft_orders.retry_dead_letter(NULL)$$,
				 '22004', 'argument "event_id" must not be null', 'retry_dead_letter(NULL): 22004');

-------------------------------------------------------------------------------
-- 22023: bad values
-------------------------------------------------------------------------------
-- idempotency_key: 1..255 printable ASCII
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => '')$$,
				 '22023', 'invalid value for argument "idempotency_key"', 'empty idempotency_key: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => repeat('k', 256))$$,
				 '22023', 'invalid value for argument "idempotency_key"', '256-char idempotency_key: 22023');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => repeat('k', 255))$$,
				'255-char idempotency_key is accepted');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'ord 2024/11 #7 ~!')$$,
				'idempotency_key with space and punctuation is accepted (printable ASCII)');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => E'key\x01x')$$,
				 '22023', 'invalid value for argument "idempotency_key"', 'idempotency_key with \x01: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => E'key\nx')$$,
				 '22023', 'invalid value for argument "idempotency_key"', 'idempotency_key with newline: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => E'key\x7f')$$,
				 '22023', 'invalid value for argument "idempotency_key"', 'idempotency_key with DEL: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'clé')$$,
				 '22023', 'invalid value for argument "idempotency_key"', 'non-ASCII idempotency_key: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => repeat('é', 200))$$,
				 '22023', 'invalid value for argument "idempotency_key"', 'non-ASCII idempotency_key under 255 chars: 22023');

-- customer_id: 1..255 characters, no control characters
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => '')$$,
				 '22023', 'invalid value for argument "customer_id"', 'empty customer_id: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => repeat('c', 256))$$,
				 '22023', 'invalid value for argument "customer_id"', '256-char customer_id: 22023');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-c255', c => repeat('c', 255))$$,
				'255-char customer_id is accepted');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-c255u', c => repeat('ü', 255))$$,
				'255-character (510-byte) non-ASCII customer_id is accepted: the limit is in characters');
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => repeat('ü', 256))$$,
				 '22023', 'invalid value for argument "customer_id"', '256-character non-ASCII customer_id: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => E'cust\x01')$$,
				 '22023', 'invalid value for argument "customer_id"', 'customer_id with \x01: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => E'cust\n1')$$,
				 '22023', 'invalid value for argument "customer_id"', 'customer_id with newline: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => E'cust\t1')$$,
				 '22023', 'invalid value for argument "customer_id"', 'customer_id with tab: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(c => E'cust\x7f')$$,
				 '22023', 'invalid value for argument "customer_id"', 'customer_id with DEL: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-c1', c => E'cust\u0085x')$$,
				 '22023', 'invalid value for argument "customer_id"', 'customer_id with U+0085 (NEL, a C1 control): 22023');

-- amount_minor: > 0 and <= 99999999999
SELECT throws_ok($$SELECT * FROM pg_temp.po(a => 0)$$,
				 '22023', 'invalid value for argument "amount_minor"', 'amount_minor 0: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(a => -1)$$,
				 '22023', 'invalid value for argument "amount_minor"', 'amount_minor -1: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(a => -9223372036854775808)$$,
				 '22023', 'invalid value for argument "amount_minor"', 'amount_minor bigint min: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(a => 100000000000)$$,
				 '22023', 'invalid value for argument "amount_minor"', 'amount_minor 100000000000: 22023');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-amax', a => 99999999999)$$,
				'amount_minor 99999999999 is accepted');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-amin', a => 1)$$,
				'amount_minor 1 is accepted');

-- currency: three letters
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => 'EU')$$,
				 '22023', 'invalid value for argument "currency"', 'currency EU: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => 'EURO')$$,
				 '22023', 'invalid value for argument "currency"', 'currency EURO: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => 'E1R')$$,
				 '22023', 'invalid value for argument "currency"', 'currency E1R: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => '€UR')$$,
				 '22023', 'invalid value for argument "currency"', 'currency €UR: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => 'ÉUR')$$,
				 '22023', 'invalid value for argument "currency"', 'currency ÉUR (non-ASCII letter): 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => '')$$,
				 '22023', 'invalid value for argument "currency"', 'empty currency: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(cur => 'E R')$$,
				 '22023', 'invalid value for argument "currency"', 'currency with a space: 22023');

-- items: a JSON array of at most 64 kB of JSON text
SELECT throws_ok($$SELECT * FROM pg_temp.po(i => '{}')$$,
				 '22023', 'invalid value for argument "items"', 'items {}: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(i => '1')$$,
				 '22023', 'invalid value for argument "items"', 'items 1: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(i => '"x"')$$,
				 '22023', 'invalid value for argument "items"', 'items "x": 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(i => 'null')$$,
				 '22023', 'invalid value for argument "items"', 'items JSON null: 22023');
-- ["xxx...x"] is n + 4 bytes of JSON text
SELECT throws_ok($$SELECT * FROM pg_temp.po(i => jsonb_build_array(repeat('x', 65533)))$$,
				 '22023', 'invalid value for argument "items"', 'items of 65537 bytes: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(i => (SELECT jsonb_agg(jsonb_build_object('sku', 'A' || g, 'qty', g)) FROM generate_series(1, 5000) g))$$,
				 '22023', 'invalid value for argument "items"', 'items array of 5000 objects (> 64 kB): 22023');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-i64k', i => jsonb_build_array(repeat('x', 65532)))$$,
				'items of exactly 65536 bytes are accepted');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-iempty', i => '[]')$$,
				'items [] are accepted');

-- payment_method: NULL or 1..255 printable ASCII without space
SELECT throws_ok($$SELECT * FROM pg_temp.po(pm => '')$$,
				 '22023', 'invalid value for argument "payment_method"', 'empty payment_method: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(pm => 'pm card')$$,
				 '22023', 'invalid value for argument "payment_method"', 'payment_method with a space: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(pm => repeat('p', 256))$$,
				 '22023', 'invalid value for argument "payment_method"', '256-char payment_method: 22023');
SELECT throws_ok($$SELECT * FROM pg_temp.po(pm => E'pm\x01')$$,
				 '22023', 'invalid value for argument "payment_method"', 'payment_method with \x01: 22023');
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-pm255', pm => repeat('p', 255))$$,
				'255-char payment_method is accepted');

-------------------------------------------------------------------------------
-- FT409: the same key with any other parameter different
-------------------------------------------------------------------------------
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409')$$, 'first use of key-02-409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', a => 1001)$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, other amount: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', cur => 'USD')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, other currency: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', c => 'cust-2')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, other customer: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', c => 'CUST-1')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, customer differing in case: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', i => '[{"sku":"A-1","qty":3}]')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, other items: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', i => '[]')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, empty items: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', i => '[{"qty":2}, {"sku":"A-1"}]')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, items split differently: FT409');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409', pm => 'pm_card_amex')$$,
				 'FT409', 'idempotency key reused with different parameters', 'same key, other payment_method: FT409');
-- field boundaries: customer 'ab' + amount 1 vs customer 'a' + amount 'b1'-like shifts
SELECT lives_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409b', c => 'cust1', a => 23)$$, 'first use of key-02-409b');
SELECT throws_ok($$SELECT * FROM pg_temp.po(k => 'key-02-409b', c => 'cust12', a => 3)$$,
				 'FT409', 'idempotency key reused with different parameters',
				 'same key, customer||amount equal but split differently: FT409');
-- the stored fingerprint did not change through the failed reuses
SELECT results_eq($$SELECT replayed FROM pg_temp.po(k => 'key-02-409')$$, $$VALUES (true)$$,
				  'after the FT409s the original request still replays');

-------------------------------------------------------------------------------
-- Replays: same key, same request
-------------------------------------------------------------------------------
SELECT order_id AS first_id, replayed AS first_replayed
  FROM pg_temp.po(k => 'key-02-replay', cur => 'eur') \gset
SELECT is(:'first_replayed'::boolean, false, 'first call: replayed = false');
SELECT results_eq($$SELECT order_id, replayed FROM pg_temp.po(k => 'key-02-replay', cur => 'eur')$$,
				  format('VALUES (%s::bigint, true)', :'first_id'),
				  'same key, same arguments: same order_id, replayed = true');
SELECT results_eq($$SELECT order_id, replayed FROM pg_temp.po(k => 'key-02-replay', cur => 'EUR')$$,
				  format('VALUES (%s::bigint, true)', :'first_id'),
				  'currency EUR vs eur is the same request');
SELECT results_eq($$SELECT order_id, replayed FROM pg_temp.po(k => 'key-02-replay', cur => 'eUr')$$,
				  format('VALUES (%s::bigint, true)', :'first_id'),
				  'currency eUr is the same request too');
SELECT is((SELECT currency FROM ft_orders.orders WHERE order_id = :first_id), 'EUR',
		  'currency is stored upper-case');
SELECT results_eq($$SELECT order_id, replayed
					  FROM ft_orders.place_order('key-02-replay', 'cust-1', 1000, 'EUR',
												 '  [ { "qty" : 2 ,
													   "sku":"A-1" } ]', 'pm_card_visa')$$,
				  format('VALUES (%s::bigint, true)', :'first_id'),
				  'items with other key order and white space are the same request');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-02-replay', 'cust-1', 1000, 'EUR',
													   '[{"qty":2,"sku":"A-1"},{}]', 'pm_card_visa')$$,
				 'FT409', 'idempotency key reused with different parameters',
				 'items with one more element: FT409');
SELECT results_eq($$SELECT status::text FROM pg_temp.po(k => 'key-02-replay')$$,
				  $$VALUES ('pending')$$, 'a replay returns the current status (pending)');
UPDATE ft_orders.orders SET status = 'paid' WHERE order_id = :first_id;
SELECT results_eq($$SELECT order_id, status::text, replayed FROM pg_temp.po(k => 'key-02-replay')$$,
				  format('VALUES (%s::bigint, %L, true)', :'first_id', 'paid'),
				  'a replay after the order was paid returns status paid');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = 'key-02-replay'), 1,
		  'all the replays made one order');

-- the key is case-sensitive: another key, another order
SELECT results_eq($$SELECT replayed FROM pg_temp.po(k => 'KEY-02-REPLAY', cur => 'eur')$$,
				  $$VALUES (false)$$, 'idempotency keys are case-sensitive (KEY-02-REPLAY is new)');
SELECT isnt((SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'KEY-02-REPLAY'),
			:first_id::bigint, 'KEY-02-REPLAY got its own order');

SELECT * FROM finish();
ROLLBACK;
