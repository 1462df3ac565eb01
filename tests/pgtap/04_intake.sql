-- 04_intake.sql: what place_order writes, get_order, _change_status,
-- the dead-letter requeue, key purging and the queue/summary views.
-- The server runs without payment workers, so nothing moves behind our back.
BEGIN;
SELECT plan(63);

-------------------------------------------------------------------------------
-- a new order
-------------------------------------------------------------------------------
SELECT order_id AS a_id, status AS a_status, replayed AS a_replayed
  FROM ft_orders.place_order('key-04-a', 'cust-4', 1999, 'gbp',
							 '[{"sku":"X-1","qty":1},{"sku":"Y-2","qty":3}]', 'pm_card_visa') \gset
SELECT is(:'a_status'::text, 'pending', 'new order: place_order says pending');
SELECT is(:'a_replayed'::boolean, false, 'new order: replayed = false');

SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = 'key-04-a'), 1,
		  'exactly one orders row for the key');
SELECT results_eq(
	format($$SELECT order_id, idempotency_key, customer_id, amount_minor, currency, items,
					payment_method, status::text, attempts, payment_id, last_error
			   FROM ft_orders.orders WHERE order_id = %s$$, :a_id),
	format($$VALUES (%s::bigint, 'key-04-a', 'cust-4', 1999::bigint, 'GBP',
					 '[{"qty":1,"sku":"X-1"},{"sku":"Y-2","qty":3}]'::jsonb, 'pm_card_visa',
					 'pending', 0, NULL::text, NULL::text)$$, :a_id),
	'orders row: key, customer, amount, upper-case currency, items, method, pending, 0 attempts');
SELECT isnt((SELECT payment_key FROM ft_orders.orders WHERE order_id = :a_id), NULL,
			'orders row has a payment_key');
SELECT is((SELECT created_at = now() AND updated_at = now() FROM ft_orders.orders WHERE order_id = :a_id),
		  true, 'created_at and updated_at are the transaction time');

SELECT is((SELECT count(*)::int FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-a'), 1,
		  'exactly one idempotency_keys row');
SELECT is((SELECT order_id FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-a'),
		  :a_id::bigint, 'the key points at the order');
SELECT is((SELECT octet_length(fingerprint) FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-a'),
		  32, 'the fingerprint is 32 bytes (SHA-256)');

SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :a_id), 1,
		  'exactly one outbox row for the order');
SELECT results_eq(
	format($$SELECT attempts, next_attempt_at <= now(), lease_until, last_error
			   FROM ft_orders.outbox WHERE order_id = %s$$, :a_id),
	$$VALUES (0, true, NULL::timestamptz, NULL::text)$$,
	'outbox row: 0 attempts, due now, no lease, no error');
SELECT is((SELECT count(*)::int FROM ft_orders.dead_letters WHERE order_id = :a_id), 0,
		  'no dead letter for a new order');

-- a second order: its own payment_key; same request under another key: same fingerprint
SELECT order_id AS b_id FROM ft_orders.place_order('key-04-b', 'cust-4', 1999, 'GBP',
							 '[{"sku":"X-1","qty":1},{"sku":"Y-2","qty":3}]', 'pm_card_visa') \gset
SELECT isnt(:b_id::bigint, :a_id::bigint, 'another key makes another order');
SELECT isnt((SELECT payment_key FROM ft_orders.orders WHERE order_id = :b_id),
			(SELECT payment_key FROM ft_orders.orders WHERE order_id = :a_id),
			'the two orders have different payment_keys');
SELECT is((SELECT fingerprint FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-b'),
		  (SELECT fingerprint FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-a'),
		  'the fingerprint covers the request, not the key');
SELECT order_id AS c_id FROM ft_orders.place_order('key-04-c', 'cust-4', 2000, 'GBP', '[]', 'pm_card_visa') \gset
SELECT isnt((SELECT fingerprint FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-c'),
			(SELECT fingerprint FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-a'),
			'another request has another fingerprint');
SELECT is((SELECT count(DISTINCT payment_key)::int FROM ft_orders.orders), (SELECT count(*)::int FROM ft_orders.orders),
		  'payment_key is unique over all orders');
SELECT cmp_ok(:b_id::bigint, '>', :a_id::bigint, 'order ids increase');

-------------------------------------------------------------------------------
-- get_order
-------------------------------------------------------------------------------
SELECT is((ft_orders.get_order(:a_id))::text,
		  (SELECT o::text FROM ft_orders.orders o WHERE order_id = :a_id),
		  'get_order returns the orders row');
SELECT is((ft_orders.get_order(:a_id)).payment_key,
		  (SELECT payment_key FROM ft_orders.orders WHERE order_id = :a_id),
		  'get_order: field access works');
SELECT is((SELECT count(*)::int FROM ft_orders.get_order(:a_id)), 1, 'get_order in FROM: one row');
SELECT ok(ft_orders.get_order(-1) IS NULL, 'get_order(unknown id) is NULL');
SELECT is((SELECT g.order_id FROM ft_orders.get_order(-1) g), NULL::bigint,
		  'get_order(unknown id) in FROM: a NULL row');

-------------------------------------------------------------------------------
-- _change_status
-------------------------------------------------------------------------------
SELECT is(ft_orders._change_status(ARRAY[:a_id, :b_id]::bigint[],
								   ARRAY['paid', 'declined']::ft_orders.order_status[],
								   ARRAY[1, NULL]::integer[],
								   ARRAY['ch_04a', NULL]::text[],
								   ARRAY[NULL, 'card_declined']::text[],
								   ARRAY['charged', 'refused']::text[]),
		  2, '_change_status returns the number of orders changed');
SELECT results_eq(
	format($$SELECT order_id, status::text, attempts, payment_id, last_error
			   FROM ft_orders.orders WHERE order_id IN (%s, %s) ORDER BY order_id$$, :a_id, :b_id),
	format($$VALUES (%s::bigint, 'paid', 1, 'ch_04a', NULL::text),
					(%s::bigint, 'declined', 0, NULL, 'card_declined')$$, :a_id, :b_id),
	'_change_status updated the orders (NULL attempts / payment_id keep the stored value)');
SELECT results_eq(
	format($$SELECT order_id, status::text, attempts, detail
			   FROM ft_orders.order_events WHERE order_id IN (%s, %s) ORDER BY order_id$$, :a_id, :b_id),
	format($$VALUES (%s::bigint, 'paid', 1, 'charged'), (%s::bigint, 'declined', 0, 'refused')$$, :a_id, :b_id),
	'_change_status appended one order_events row per order with status, attempts, detail');
SELECT is(ft_orders._change_status(ARRAY[-1]::bigint[], ARRAY['paid']::ft_orders.order_status[],
								   ARRAY[1], ARRAY['x'], ARRAY[NULL::text], ARRAY['x']),
		  0, '_change_status of an unknown order changes nothing');
SELECT is((SELECT count(*)::int FROM ft_orders.order_events WHERE order_id = -1), 0,
		  '... and appends no event');
SELECT is(ft_orders._change_status(ARRAY[:a_id]::bigint[], ARRAY['paid']::ft_orders.order_status[],
								   ARRAY[NULL::integer], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY['again']),
		  1, '_change_status again on the same order');
SELECT is((SELECT count(*)::int FROM ft_orders.order_events WHERE order_id = :a_id), 2,
		  'order_events is a history: two rows for the order now');
SELECT is((SELECT payment_id FROM ft_orders.orders WHERE order_id = :a_id), 'ch_04a',
		  'a NULL payment_id keeps the stored one');

-------------------------------------------------------------------------------
-- dead letters: retry_dead_letter / retry_dead_letters
-------------------------------------------------------------------------------
-- move c's outbox event to the dead letters by hand, as a worker would
SELECT event_id AS c_event FROM ft_orders.outbox WHERE order_id = :c_id \gset
SELECT is(ft_orders._change_status(ARRAY[:c_id]::bigint[], ARRAY['failed']::ft_orders.order_status[],
								   ARRAY[10], ARRAY[NULL::text], ARRAY['HTTP 500'], ARRAY['gave up']),
		  1, 'setup: order c failed');
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error)
VALUES (:c_event, :c_id, 10, 'HTTP 500');
DELETE FROM ft_orders.outbox WHERE event_id = :c_event;

SELECT is(ft_orders.retry_dead_letter(:c_event), true, 'retry_dead_letter(existing) returns true');
SELECT is((SELECT count(*)::int FROM ft_orders.dead_letters WHERE event_id = :c_event), 0,
		  'the dead letter is gone');
SELECT results_eq(
	format($$SELECT event_id, order_id, attempts, next_attempt_at <= now(), lease_until
			   FROM ft_orders.outbox WHERE order_id = %s$$, :c_id),
	format($$VALUES (%s::bigint, %s::bigint, 0, true, NULL::timestamptz)$$, :c_event, :c_id),
	'the event is back in the outbox under its event_id: 0 attempts, due now, no lease');
SELECT is((SELECT status::text FROM ft_orders.orders WHERE order_id = :c_id), 'pending',
		  'the order is pending again');
SELECT is((SELECT status::text || '/' || detail FROM ft_orders.order_events
			WHERE order_id = :c_id ORDER BY id DESC LIMIT 1),
		  'pending/requeued from dead letters', 'the requeue appended a pending order_events row');
SELECT is(ft_orders.retry_dead_letter(:c_event), false, 'retry_dead_letter of the same event again returns false');
SELECT is(ft_orders.retry_dead_letter(-42), false, 'retry_dead_letter(unknown) returns false');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :c_id), 1,
		  'still one outbox row for the order');

-- two dead letters, requeued at once
SELECT order_id AS d_id FROM ft_orders.place_order('key-04-d', 'cust-4', 10, 'EUR', '[]', 'pm_card_visa') \gset
SELECT order_id AS e_id FROM ft_orders.place_order('key-04-e', 'cust-4', 20, 'EUR', '[]', 'pm_card_visa') \gset
WITH moved AS (
	DELETE FROM ft_orders.outbox WHERE order_id IN (:d_id, :e_id) RETURNING event_id, order_id
)
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error)
SELECT event_id, order_id, 10, 'timeout' FROM moved;
UPDATE ft_orders.orders SET status = 'failed' WHERE order_id IN (:d_id, :e_id);
SELECT is((SELECT count(*)::int FROM ft_orders.dead_letters), 2, 'setup: two dead letters');
SELECT is(ft_orders.retry_dead_letters(), 2::bigint, 'retry_dead_letters() returns 2');
SELECT is((SELECT count(*)::int FROM ft_orders.dead_letters), 0, 'no dead letters left');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id IN (:d_id, :e_id)), 2,
		  'both events are back in the outbox');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE order_id IN (:d_id, :e_id) AND status = 'pending'), 2,
		  'both orders are pending');
SELECT is(ft_orders.retry_dead_letters(), 0::bigint, 'retry_dead_letters() with none returns 0');
SELECT is((SELECT count(*)::int FROM ft_orders.order_events WHERE order_id IN (:d_id, :e_id)), 2,
		  'one pending event each, none for the empty run');

-------------------------------------------------------------------------------
-- purge_expired_keys
-------------------------------------------------------------------------------
SELECT is(current_setting('ft_orders.idempotency_ttl'), '1d', 'idempotency_ttl is the default 24h');
DELETE FROM ft_orders.idempotency_keys WHERE idempotency_key NOT LIKE 'key-04-%';	-- (rolled back)
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'key-04-d';
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '23 hours' WHERE idempotency_key = 'key-04-e';
SELECT is((SELECT count(*)::int FROM ft_orders.idempotency_keys), 5, 'setup: five keys');
SELECT is(ft_orders.purge_expired_keys(), 1::bigint, 'purge_expired_keys() deletes the one key older than 24h');
SELECT is(ARRAY(SELECT idempotency_key FROM ft_orders.idempotency_keys ORDER BY 1),
		  ARRAY['key-04-a', 'key-04-b', 'key-04-c', 'key-04-e'], 'only key-04-d is gone');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE order_id = :d_id), 1,
		  'the order of a purged key stays');
SELECT is(ft_orders.purge_expired_keys(), 0::bigint, 'a second purge deletes nothing');
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-04-e', 'cust-4', 20, 'EUR', '[]', 'pm_card_visa')$$,
				  $$VALUES (true)$$, 'a key younger than the TTL still replays');
SELECT order_id AS d2_id, replayed AS d2_replayed
  FROM ft_orders.place_order('key-04-d', 'cust-other', 77, 'USD', '[]', 'pm_card_visa') \gset
SELECT is(:'d2_replayed'::boolean, false, 'a purged key places a new order (other parameters, no FT409)');
SELECT isnt(:d2_id::bigint, :d_id::bigint, '... with a new order_id');
SELECT is((SELECT count(*)::int FROM ft_orders.orders WHERE idempotency_key = 'key-04-d'), 2,
		  'two orders now carry key-04-d (old and new)');
SELECT is((SELECT order_id FROM ft_orders.idempotency_keys WHERE idempotency_key = 'key-04-d'), :d2_id::bigint,
		  'the key now points at the new order');
SELECT results_eq($$SELECT replayed FROM ft_orders.place_order('key-04-d', 'cust-other', 77, 'USD', '[]', 'pm_card_visa')$$,
				  $$VALUES (true)$$, 'and replays it');

-------------------------------------------------------------------------------
-- queue_status and order_summary against a known state
-------------------------------------------------------------------------------
DELETE FROM ft_orders.outbox;
DELETE FROM ft_orders.dead_letters;
DELETE FROM ft_orders.orders;
SELECT order_id AS q1 FROM ft_orders.place_order('key-04-q1', 'cust-q', 100, 'EUR', '[]', 'pm_card_visa') \gset
SELECT order_id AS q2 FROM ft_orders.place_order('key-04-q2', 'cust-q', 200, 'EUR', '[]', 'pm_card_visa') \gset
SELECT order_id AS q3 FROM ft_orders.place_order('key-04-q3', 'cust-q', 400, 'EUR', '[]', 'pm_card_visa') \gset
SELECT order_id AS q4 FROM ft_orders.place_order('key-04-q4', 'cust-q', 800, 'EUR', '[]', 'pm_card_visa') \gset
SELECT order_id AS q5 FROM ft_orders.place_order('key-04-q5', 'cust-q', 1600, 'EUR', '[]', 'pm_card_visa') \gset
SELECT order_id AS q6 FROM ft_orders.place_order('key-04-q6', 'cust-q', 3200, 'EUR', '[]', 'pm_card_visa') \gset
-- q1: due now, created an hour ago
UPDATE ft_orders.outbox SET created_at = now() - interval '1 hour' WHERE order_id = :q1;
UPDATE ft_orders.orders SET created_at = now() - interval '1 hour' WHERE order_id = :q1;
-- q2: claimed by a worker (in flight)
UPDATE ft_orders.outbox SET attempts = 1, next_attempt_at = now() + interval '1 min',
	   lease_until = now() + interval '1 min' WHERE order_id = :q2;
-- q3: waiting for a retry
UPDATE ft_orders.outbox SET attempts = 2, next_attempt_at = now() + interval '5 min' WHERE order_id = :q3;
-- q4: lease expired (worker died): due again, not in flight
UPDATE ft_orders.outbox SET attempts = 1, next_attempt_at = now() - interval '1 s',
	   lease_until = now() - interval '1 s' WHERE order_id = :q4;
-- q5: paid, q6: failed with a dead letter
DELETE FROM ft_orders.outbox WHERE order_id = :q5;
UPDATE ft_orders.orders SET status = 'paid' WHERE order_id = :q5;
WITH moved AS (DELETE FROM ft_orders.outbox WHERE order_id = :q6 RETURNING event_id, order_id)
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts) SELECT event_id, order_id, 10 FROM moved;
UPDATE ft_orders.orders SET status = 'failed' WHERE order_id = :q6;

SELECT results_eq(
	$$SELECT pending, due_now, in_flight, scheduled_retries, dead_letters, oldest_pending_age
		FROM ft_orders.queue_status$$,
	$$VALUES (4::bigint, 2::bigint, 1::bigint, 1::bigint, 1::bigint, interval '1 hour')$$,
	'queue_status: 4 pending, 2 due now, 1 in flight, 1 scheduled retry, 1 dead letter, oldest 1 hour');
SELECT results_eq(
	$$SELECT status::text, orders, amount_minor_total, oldest FROM ft_orders.order_summary$$,
	$$VALUES ('pending', 4::bigint, 1500::numeric, now() - interval '1 hour'),
			 ('paid', 1, 1600, now()),
			 ('declined', 0, 0, NULL),
			 ('failed', 1, 3200, now()),
			 ('action_required', 0, 0, NULL),
			 ('canceled', 0, 0, NULL),
			 ('refunded', 0, 0, NULL),
			 ('partially_refunded', 0, 0, NULL)$$,
	'order_summary: one row per status with count, total and oldest');
DELETE FROM ft_orders.outbox;
DELETE FROM ft_orders.dead_letters;
DELETE FROM ft_orders.orders;
SELECT results_eq(
	$$SELECT pending, due_now, in_flight, scheduled_retries, dead_letters, oldest_pending_age
		FROM ft_orders.queue_status$$,
	$$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, NULL::interval)$$,
	'queue_status with nothing queued: one row of zeros');
SELECT results_eq($$SELECT status::text, orders, amount_minor_total FROM ft_orders.order_summary$$,
				  $$VALUES ('pending', 0::bigint, 0::numeric), ('paid', 0, 0), ('declined', 0, 0), ('failed', 0, 0),
						   ('action_required', 0, 0), ('canceled', 0, 0), ('refunded', 0, 0),
						   ('partially_refunded', 0, 0)$$,
				  'order_summary with no orders: a row of zeros per status');

SELECT * FROM finish();
ROLLBACK;
