-- 03_writes_nothing.sql: a rejected call (bad argument, FT409) and a replay
-- leave the tables as they were.  A failed call inside throws_ok is rolled
-- back to a savepoint anyway, so the counts mostly prove that the call did
-- fail; the sequences are not transactional and show whether anything was
-- attempted at all ("every argument is checked before anything is written").
BEGIN;
SELECT plan(45);

-- table row counts and the newest outbox event, as one comparable text
-- (sequence positions: ft_test.seq_positions())
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql AS $$
	SELECT ft_test.row_counts() || format(' max_event=%s', (SELECT coalesce(max(event_id), 0) FROM ft_orders.outbox))
$$;

-- one existing order, so that the key paths (FT409, replay) have a target
SELECT lives_ok($$SELECT * FROM ft_orders.place_order('key-03', 'cust-3', 500, 'USD',
													   '[{"sku":"B"}]', 'pm_card_visa')$$,
				'setup: place key-03');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox o JOIN ft_orders.orders r USING (order_id)
			WHERE r.idempotency_key = 'key-03'), 1, 'setup: key-03 has its outbox row');

SELECT pg_temp.counts() AS before_counts, ft_test.seq_positions() AS before_seqs,
	   (SELECT last_value FROM ft_orders.orders_order_id_seq) AS before_seqs_last \gset

-- every rejected input: the error, then the same counts and sequences
CREATE TEMP TABLE bad_inputs (n serial, descr text, call text, sqlstate text);
INSERT INTO bad_inputs (descr, call, sqlstate) VALUES
	('NULL key',         $$ft_orders.place_order(NULL, 'c', 1, 'EUR', '[]', 'pm_x')$$, '22004'),
	('NULL customer',    $$ft_orders.place_order('k-03-bad', NULL, 1, 'EUR', '[]', 'pm_x')$$, '22004'),
	('NULL amount',      $$ft_orders.place_order('k-03-bad', 'c', NULL, 'EUR', '[]', 'pm_x')$$, '22004'),
	('NULL currency',    $$ft_orders.place_order('k-03-bad', 'c', 1, NULL, '[]', 'pm_x')$$, '22004'),
	('NULL items',       $$ft_orders.place_order('k-03-bad', 'c', 1, 'EUR', NULL, 'pm_x')$$, '22004'),
	('empty key',        $$ft_orders.place_order('', 'c', 1, 'EUR', '[]', 'pm_x')$$, '22023'),
	('non-ASCII key',    $$ft_orders.place_order('kë', 'c', 1, 'EUR', '[]', 'pm_x')$$, '22023'),
	('empty customer',   $$ft_orders.place_order('k-03-bad', '', 1, 'EUR', '[]', 'pm_x')$$, '22023'),
	('amount 0',         $$ft_orders.place_order('k-03-bad', 'c', 0, 'EUR', '[]', 'pm_x')$$, '22023'),
	('amount too big',   $$ft_orders.place_order('k-03-bad', 'c', 100000000000, 'EUR', '[]', 'pm_x')$$, '22023'),
	('currency EURO',    $$ft_orders.place_order('k-03-bad', 'c', 1, 'EURO', '[]', 'pm_x')$$, '22023'),
	('items object',     $$ft_orders.place_order('k-03-bad', 'c', 1, 'EUR', '{}', 'pm_x')$$, '22023'),
	('items > 64 kB',    $$ft_orders.place_order('k-03-bad', 'c', 1, 'EUR', jsonb_build_array(repeat('x', 70000)), 'pm_x')$$, '22023'),
	('empty method',     $$ft_orders.place_order('k-03-bad', 'c', 1, 'EUR', '[]', '')$$, '22023'),
	('bad key, known key', $$ft_orders.place_order('key-03', 'cust-3', 0, 'USD', '[{"sku":"B"}]', 'pm_card_visa')$$, '22023');

SELECT throws_ok(format('SELECT * FROM %s', call), sqlstate, NULL,
				 format('%s: %s', descr, sqlstate))
  FROM bad_inputs ORDER BY n;		-- 15 tests
SELECT is(pg_temp.counts(), :'before_counts', 'after the 15 rejected calls: no row written');
SELECT is(ft_test.seq_positions(), :'before_seqs',
		  'after the 15 rejected calls: no order_id or event_id drawn (checked before writing)');

-- each one on its own, with the counts after each
SELECT throws_ok(format('SELECT * FROM %s', call), sqlstate, NULL, format('%s (again)', descr))
	   || E'\n' ||
	   is(pg_temp.counts(), :'before_counts', format('%s: tables unchanged', descr))
  FROM bad_inputs WHERE n IN (1, 9, 12, 13, 14) ORDER BY n;	-- 10 tests

-- FT409: same key, other parameters
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-03', 'cust-3', 501, 'USD',
														'[{"sku":"B"}]', 'pm_card_visa')$$,
				 'FT409', NULL, 'key-03 with another amount: FT409');
SELECT is(pg_temp.counts(), :'before_counts', 'FT409: tables unchanged');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-03', 'cust-3', 500, 'USD',
														'[{"sku":"B"}]', 'pm_other')$$,
				 'FT409', NULL, 'key-03 with another payment_method: FT409');
SELECT is(pg_temp.counts(), :'before_counts', 'FT409 (payment_method): tables unchanged');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox o JOIN ft_orders.orders r USING (order_id)
			WHERE r.idempotency_key = 'key-03'), 1, 'FT409: still exactly one outbox row for key-03');
SELECT is((SELECT amount_minor FROM ft_orders.orders WHERE idempotency_key = 'key-03'), 500::bigint,
		  'FT409: the stored order keeps its amount');

-- replay: same key, same request
SELECT (SELECT row(updated_at, status, attempts)::text FROM ft_orders.orders
		 WHERE idempotency_key = 'key-03') AS before_row,
	   (SELECT row(fingerprint, created_at)::text FROM ft_orders.idempotency_keys
		 WHERE idempotency_key = 'key-03') AS before_key \gset
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-03', 'cust-3', 500, 'usd',
																'[{"sku": "B"}]', 'pm_card_visa')$$,
				  $$VALUES (true)$$, 'replay of key-03');
SELECT is(pg_temp.counts(), :'before_counts', 'replay: tables unchanged (no order, key, outbox or event row)');
SELECT is((SELECT row(updated_at, status, attempts)::text FROM ft_orders.orders
			WHERE idempotency_key = 'key-03'), :'before_row', 'replay: the order row is untouched');
SELECT is((SELECT row(fingerprint, created_at)::text FROM ft_orders.idempotency_keys
			WHERE idempotency_key = 'key-03'), :'before_key', 'replay: the key row is untouched');
-- not an assertion: replays and FT409s do draw (and waste) an order_id,
-- because nextval() is evaluated before ON CONFLICT finds the key
SELECT diag(format('order ids drawn by 2 FT409s and 1 replay: %s',
				   (SELECT last_value FROM ft_orders.orders_order_id_seq) - :'before_seqs_last'::bigint));

-- a replay after the outbox row was consumed (order paid) does not queue new work
UPDATE ft_orders.orders SET status = 'paid', payment_id = 'ch_03' WHERE idempotency_key = 'key-03';
DELETE FROM ft_orders.outbox WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'key-03');
SELECT pg_temp.counts() AS paid_counts \gset
SELECT results_eq($$SELECT status::text, replayed FROM ft_orders.place_order('key-03', 'cust-3', 500, 'USD',
																			  '[{"sku":"B"}]', 'pm_card_visa')$$,
				  $$VALUES ('paid', true)$$, 'replay of a paid order says paid');
SELECT is(pg_temp.counts(), :'paid_counts', 'replay of a paid order: no outbox row re-appears, nothing written');

-- a failing call inside a caller's transaction does not disturb the caller's own writes
SELECT lives_ok($$SELECT * FROM ft_orders.place_order('key-03-ok', 'cust-3', 700, 'USD', '[]', 'pm_card_visa')$$,
				'caller places key-03-ok');
SELECT throws_ok($$SELECT * FROM ft_orders.place_order('key-03-ok', 'cust-3', 701, 'USD', '[]', 'pm_card_visa')$$,
				 'FT409', NULL, 'then reuses it wrongly: FT409');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = 'key-03-ok'), 1,
		  'key-03-ok: one order after the FT409');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox o JOIN ft_orders.orders r USING (order_id)
			WHERE r.idempotency_key = 'key-03-ok'), 1, 'key-03-ok: one outbox row after the FT409');
SELECT * FROM finish();
ROLLBACK;
