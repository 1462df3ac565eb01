-- 11_webhooks.sql: ft_orders.apply_gateway_event (1.3, docs/reference.md, "Webhooks"):
-- bad input (SQLSTATE, nothing written), each event recorded once, any
-- order of arrival, a settled order never moves back, a late failure after
-- a success is history, queued charges removed, refund events, Stripe
-- lookups, privileges.  No payment workers run (tests/pgtap/run.sh), so
-- every change below is the function's.
BEGIN;
SELECT plan(101);

SELECT has_function('ft_orders', 'apply_gateway_event', ARRAY['text', 'jsonb'],
					'apply_gateway_event(text, jsonb) exists');
SELECT function_returns('ft_orders', 'apply_gateway_event', ARRAY['text', 'jsonb'], 'boolean',
						'apply_gateway_event returns boolean');
SELECT is_definer('ft_orders', 'apply_gateway_event', ARRAY['text', 'jsonb'],
				  'apply_gateway_event is SECURITY DEFINER');
SELECT has_table('ft_orders', 'gateway_events', 'table gateway_events exists');
SELECT col_is_pk('ft_orders', 'gateway_events', ARRAY['provider', 'event_id'],
				 'gateway_events: one row per (provider, event_id)');
SELECT ok((SELECT 'ft_orders.gateway_events'::regclass = ANY (extconfig)
			 FROM pg_extension WHERE extname = 'ft_orders'),
		  'gateway_events is dumped with its data (pg_extension_config_dump)');

-- helpers: a generic event for an order, row counts
CREATE FUNCTION pg_temp.gen(id text, type text, ord bigint, extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('event_id', id, 'type', type,
							  'payment_key', (SELECT payment_key FROM ft_orders.orders WHERE order_id = ord))
		   || extra
$$;
CREATE FUNCTION pg_temp.apply(e jsonb) RETURNS boolean LANGUAGE sql AS $$
	SELECT ft_orders.apply_gateway_event('generic', e)
$$;
CREATE FUNCTION pg_temp.status(ord bigint) RETURNS text LANGUAGE sql AS $$
	SELECT status::text FROM ft_orders.orders WHERE order_id = ord
$$;
CREATE FUNCTION pg_temp.nevents(ord bigint) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM ft_orders.order_events WHERE order_id = ord
$$;

SELECT o.order_id AS a FROM ft_orders.place_order('wh-a', 'c', 1000, 'EUR') o \gset
SELECT o.order_id AS b FROM ft_orders.place_order('wh-b', 'c', 1100, 'EUR') o \gset
SELECT o.order_id AS c FROM ft_orders.place_order('wh-c', 'c', 1200, 'EUR') o \gset
SELECT o.order_id AS d FROM ft_orders.place_order('wh-d', 'c', 1300, 'EUR') o \gset
SELECT o.order_id AS s1 FROM ft_orders.place_order('wh-s1', 'c', 2000, 'USD') o \gset
SELECT o.order_id AS pk FROM ft_orders.place_order('wh-pk', 'c', 2500, 'USD') o \gset
SELECT o.order_id AS pr FROM ft_orders.place_order('wh-pr', 'c', 2600, 'USD') o \gset
SELECT o.order_id AS s2 FROM ft_orders.place_order('wh-s2', 'c', 2100, 'USD') o \gset
SELECT o.order_id AS s3 FROM ft_orders.place_order('wh-s3', 'c', 2200, 'USD') o \gset
SELECT o.order_id AS ar FROM ft_orders.place_order('wh-ar', 'c', 2300, 'USD') o \gset
SELECT o.order_id AS cr FROM ft_orders.place_order('wh-cr', 'c', 2400, 'USD') o \gset
SELECT o.order_id AS cx FROM ft_orders.place_order('wh-cx', 'c', 2500, 'USD') o \gset

-------------------------------------------------------------------------------
-- bad input: SQLSTATE, nothing written
-------------------------------------------------------------------------------
SELECT ft_test.row_counts() AS before \gset
CREATE TEMP TABLE bad (n serial, descr text, provider text, event jsonb, sqlstate text);
INSERT INTO bad (descr, provider, event, sqlstate) VALUES
	('NULL provider', NULL, '{"event_id":"x","type":"payment.succeeded"}', '22004'),
	('NULL event', 'generic', NULL, '22004'),
	('unknown provider', 'paypal', '{"event_id":"x","type":"payment.succeeded"}', '22023'),
	('event an array', 'generic', '[]', '22023'),
	('event a string', 'stripe', '"evt_1"', '22023'),
	('generic without event_id', 'generic', '{"type":"payment.succeeded"}', '22023'),
	('generic empty event_id', 'generic', '{"event_id":"","type":"payment.succeeded"}', '22023'),
	('generic numeric event_id', 'generic', '{"event_id":7,"type":"payment.succeeded"}', '22023'),
	('generic without type', 'generic', '{"event_id":"x"}', '22023'),
	('generic without payment_key', 'generic', '{"event_id":"x","type":"payment.succeeded"}', '22023'),
	('generic bad payment_key', 'generic', '{"event_id":"x","type":"payment.succeeded","payment_key":"nope"}', '22023'),
	('generic refund without refund_key/refund_id', 'generic',
	 '{"event_id":"x","type":"refund.succeeded","payment_key":"6f1c1e2a-0d7e-4b55-9a55-2f9a4c0b1c11"}', '22023'),
	('generic amount a string', 'generic',
	 '{"event_id":"x","type":"payment.succeeded","payment_key":"6f1c1e2a-0d7e-4b55-9a55-2f9a4c0b1c11","amount_minor":"10"}', '22023'),
	('stripe without id', 'stripe', '{"type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}', '22023'),
	('stripe without data.object', 'stripe', '{"id":"evt_x","type":"payment_intent.succeeded"}', '22023'),
	('stripe object without id', 'stripe', '{"id":"evt_x","type":"payment_intent.succeeded","data":{"object":{}}}', '22023'),
	('stripe charge.refunded without amount_refunded', 'stripe',
	 '{"id":"evt_x","type":"charge.refunded","data":{"object":{"id":"ch_1"}}}', '22023');
SELECT throws_ok(format('SELECT ft_orders.apply_gateway_event(%L, %L::jsonb)', provider, event),
				 sqlstate, NULL, format('%s: %s', descr, sqlstate))
  FROM bad ORDER BY n;		-- 17 tests
SELECT is(ft_test.row_counts(), :'before', 'after the 17 rejected events: nothing written');
SELECT throws_like($$SELECT ft_orders.apply_gateway_event('paypal', '{}')$$,
				   'unknown provider "paypal"', 'the message names the unknown provider');

-------------------------------------------------------------------------------
-- generic: success, its duplicate, a late failure (history)
-------------------------------------------------------------------------------
UPDATE ft_orders.outbox SET lease_until = now() + interval '1 min', attempts = 1
 WHERE order_id = :a;		-- A's charge in flight at a worker
SELECT is(pg_temp.apply(pg_temp.gen('g-a1', 'payment.succeeded', :a,
									'{"status":"succeeded","payment_id":"pay_a","amount_minor":1000,"currency":"EUR"}')),
		  true, 'payment.succeeded on a pending order: applied (true)');
SELECT is(pg_temp.status(:a), 'paid', 'A is paid');
SELECT is((SELECT payment_id FROM ft_orders.orders WHERE order_id = :a), 'pay_a', 'A carries the event''s payment_id');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :a), 0,
		  'A''s outbox event (even leased) was removed in the same transaction: no second charge, the worker''s record finds no lease');
SELECT is(pg_temp.nevents(:a), 1::bigint, 'A: one order_events row');
SELECT results_eq($$SELECT type, order_id, applied FROM ft_orders.gateway_events WHERE event_id = 'g-a1'$$,
				  format($$VALUES ('payment.succeeded'::text, %s::bigint, true)$$, :a),
				  'gateway_events row: type, order, applied');

SELECT ft_test.row_counts() AS before \gset
SELECT is(pg_temp.apply(pg_temp.gen('g-a1', 'payment.succeeded', :a,
									'{"status":"succeeded","payment_id":"pay_a"}')),
		  false, 'the same event again: false');
SELECT is(ft_test.row_counts(), :'before', 'the duplicate wrote nothing');
SELECT is(pg_temp.apply(pg_temp.gen('g-a2', 'payment.succeeded', :a)), false,
		  'another success event for a paid order: false (repeat)');
SELECT is(pg_temp.apply(pg_temp.gen('g-a3', 'payment.failed', :a, '{"status":"declined"}')), false,
		  'a failure after the success: false');
SELECT is(pg_temp.status(:a), 'paid', 'A is still paid');
SELECT results_eq($$SELECT applied, detail FROM ft_orders.gateway_events WHERE event_id = 'g-a3'$$,
				  $$VALUES (false, 'history: order already paid'::text)$$,
				  'the late failure is recorded as history, not applied');
SELECT is(pg_temp.apply(pg_temp.gen('g-a4', 'payment.canceled', :a)), false, 'a cancellation after the success: false');
SELECT is(pg_temp.nevents(:a), 1::bigint, 'A: still one order_events row');

-------------------------------------------------------------------------------
-- out of order: failure first, success later (the success is the money)
-------------------------------------------------------------------------------
SELECT is(pg_temp.apply(pg_temp.gen('g-b2', 'payment.failed', :b, '{"status":"declined","decline_code":"insufficient_funds"}')),
		  true, 'B: payment.failed on a pending order: applied');
SELECT results_eq(format('SELECT status::text, last_error FROM ft_orders.orders WHERE order_id = %s', :b),
				  $$VALUES ('declined', 'declined: insufficient_funds')$$, 'B declined with the reason');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :b), 0, 'B: queued charge removed');
SELECT is(pg_temp.apply(pg_temp.gen('g-b2', 'payment.failed', :b)), false, 'B: the failure again: false');
SELECT is(pg_temp.apply(pg_temp.gen('g-b1', 'payment.succeeded', :b, '{"payment_id":"pay_b"}')), true,
		  'B: the success arriving after the failure is applied');
SELECT is(pg_temp.status(:b), 'paid', 'B is paid');
SELECT is(pg_temp.apply(pg_temp.gen('g-b1', 'payment.succeeded', :b)), false, 'B: the success again: false');
SELECT is(pg_temp.nevents(:b), 2::bigint, 'B: two order_events rows (declined, paid)');

-- a dead-lettered order that the gateway did charge
WITH x AS (DELETE FROM ft_orders.outbox WHERE order_id = :c RETURNING event_id, order_id)
INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error)
SELECT event_id, order_id, 10, 'timeout' FROM x;
SELECT is(ft_orders._change_status(ARRAY[:c]::bigint[], ARRAY['failed']::ft_orders.order_status[],
								   ARRAY[10], ARRAY[NULL::text], ARRAY['timeout'], ARRAY['failed: timeout']),
		  1, 'setup: C failed, its event a dead letter');
SELECT is(pg_temp.apply(pg_temp.gen('g-c1', 'payment.succeeded', :c)), true, 'C (failed, dead letter): success applied');
SELECT is(pg_temp.status(:c), 'paid', 'C is paid');
SELECT is((SELECT count(*)::int FROM ft_orders.dead_letters WHERE order_id = :c), 0,
		  'C''s dead letter is gone: retry_dead_letters cannot charge it again');

-- cancellation
SELECT is(pg_temp.apply(pg_temp.gen('g-d1', 'payment.canceled', :d)), true, 'D: payment.canceled on a pending order: applied');
SELECT is(pg_temp.status(:d), 'canceled', 'D is canceled');
SELECT is(pg_temp.apply(pg_temp.gen('g-d2', 'payment.failed', :d)), false, 'D: a failure after the cancellation: false');
SELECT is(pg_temp.apply(pg_temp.gen('g-d3', 'payment.succeeded', :d, '{"payment_id":"pay_d"}')), true,
		  'D: a success after the cancellation is applied (the money moved)');
SELECT is(pg_temp.status(:d), 'paid', 'D is paid');
SELECT results_eq(format($$SELECT r.amount_minor, r.status, r.idempotency_key, o.refund_id IS NOT NULL
							 FROM ft_orders.refunds r JOIN ft_orders.outbox o USING (refund_id)
							WHERE r.order_id = %s$$, :d),
				  $$VALUES (1300::bigint, 'pending'::text, 'cancel'::text, true)$$,
				  'D: a full refund is queued (refunds row + outbox event with refund_id)');

-------------------------------------------------------------------------------
-- Stripe: lookups, amount check, action_required
-------------------------------------------------------------------------------
-- S1 and PR stand for orders placed before 1.4 (their first request went out
-- without a payment_key): only such orders are matched by metadata.order_id
-- (14_identity_match.sql tests the others)
UPDATE ft_orders.orders SET match_by_order_id = true WHERE order_id IN (:s1, :pr);
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_s1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_s1","object":"payment_intent","amount":2000,"currency":"usd","status":"succeeded","metadata":{"order_id":"%s"}}}}', :s1)::jsonb),
	true, 'Stripe payment_intent.succeeded found by metadata.order_id');
SELECT results_eq(format('SELECT status::text, payment_id FROM ft_orders.orders WHERE order_id = %s', :s1),
				  $$VALUES ('paid', 'pi_s1')$$, 'S1 paid with the PaymentIntent id');
UPDATE ft_orders.orders SET payment_id = 'pi_s2' WHERE order_id = :s2;
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_s2","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_s2","amount":2100,"currency":"usd","last_payment_error":{"code":"card_declined","decline_code":"stolen_card"}}}}'),
	true, 'Stripe payment_intent.payment_failed found by the stored PaymentIntent id (no metadata)');
SELECT results_eq(format('SELECT status::text, last_error FROM ft_orders.orders WHERE order_id = %s', :s2),
				  $$VALUES ('declined', 'declined: stolen_card')$$, 'S2 declined with the decline code');
UPDATE ft_orders.orders SET payment_id = 'pi_s3' WHERE order_id = :s3;
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_s3","type":"payment_intent.succeeded","data":{"object":{"id":"pi_other","amount":2200,"currency":"usd","metadata":{"order_id":"%s"}}}}', :s3)::jsonb),
	false, 'a PaymentIntent other than the order''s own: not applied');
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_s3b","type":"payment_intent.succeeded","data":{"object":{"id":"pi_s3","amount":9999,"currency":"usd","metadata":{"order_id":"%s"}}}}', :s3)::jsonb),
	false, 'an amount other than the order''s: not applied');
SELECT is(pg_temp.status(:s3), 'pending', 'S3 still pending');
SELECT is((SELECT detail FROM ft_orders.gateway_events WHERE event_id = 'evt_s3b'),
		  'not applied: the event is for 9999 USD, the order is 2200 USD', 'the mismatch is recorded');
-- metadata.payment_key names the order (order ids are per database); an
-- object carrying another one is not matched by its metadata.order_id
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_pk1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_pk_other","amount":2500,"currency":"usd","metadata":{"order_id":"%s","payment_key":"0b0e4c1a-5d0f-4c4e-9d2a-1f3e5a7b9c0d"}}}}', :pk)::jsonb),
	false, 'another payment_key with the order''s order_id and amount: not applied');
SELECT results_eq($$SELECT order_id, detail FROM ft_orders.gateway_events WHERE event_id = 'evt_pk1'$$,
				  $$VALUES (NULL::bigint, 'no order for this event'::text)$$,
				  '... recorded as about no order of this database');
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_pk2","type":"payment_intent.succeeded","data":{"object":{"id":"pi_pk","amount":2500,"currency":"usd","metadata":{"order_id":"999999","payment_key":"%s"}}}}',
	(SELECT payment_key FROM ft_orders.orders WHERE order_id = :pk))::jsonb),
	true, 'Stripe payment_intent.succeeded found by metadata.payment_key');
SELECT results_eq(format('SELECT status::text, payment_id FROM ft_orders.orders WHERE order_id = %s', :pk),
				  $$VALUES ('paid', 'pi_pk')$$, 'PK paid with its PaymentIntent id');
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_pk3","type":"charge.refunded","data":{"object":{"id":"ch_pk_other","amount":9999,"amount_refunded":100,"currency":"usd","metadata":{"order_id":"%s"}}}}', :pr)::jsonb),
	false, 'charge.refunded of a charge of another amount (matched by order_id only): not applied');
SELECT results_eq(format($$SELECT g.detail, o.status::text, o.refunded_minor
							 FROM ft_orders.gateway_events g, ft_orders.orders o
							WHERE g.event_id = 'evt_pk3' AND o.order_id = %s$$, :pr),
				  $$VALUES ('not applied: the charge is for 9999, the order is 2600'::text, 'pending'::text, 0::bigint)$$,
				  '... recorded as such, the order untouched');
UPDATE ft_orders.orders SET status = 'action_required', payment_id = 'pi_ar' WHERE order_id = :ar;
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_ar","type":"payment_intent.succeeded","data":{"object":{"id":"pi_ar","amount":2300,"currency":"usd"}}}'),
	true, 'an action_required order is settled by the webhook');
SELECT is(pg_temp.status(:ar), 'paid', 'AR is paid');
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_unknown","type":"payment_intent.succeeded","data":{"object":{"id":"pi_nobody","amount":1,"currency":"usd"}}}'),
	false, 'an event for no known order: false');
SELECT results_eq($$SELECT order_id, applied, detail FROM ft_orders.gateway_events WHERE event_id = 'evt_unknown'$$,
				  $$VALUES (NULL::bigint, false, 'no order for this event'::text)$$, '... and recorded as such');
SELECT is(ft_orders.apply_gateway_event('stripe', '{"id":"evt_cust","type":"customer.created","data":{"object":{"id":"cus_1"}}}'),
		  false, 'an unhandled event type: false, recorded');

-- charge.refunded before payment_intent.succeeded (any order of arrival)
UPDATE ft_orders.orders SET payment_id = 'pi_cr' WHERE order_id = :cr;
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_cr2","type":"charge.refunded","data":{"object":{"id":"ch_cr","payment_intent":"pi_cr","amount":2400,"amount_refunded":400,"currency":"usd"}}}'),
	true, 'charge.refunded before the success event: applied');
SELECT results_eq(format('SELECT status::text, refunded_minor FROM ft_orders.orders WHERE order_id = %s', :cr),
				  $$VALUES ('partially_refunded', 400::bigint)$$,
				  'CR: charged (it was refunded) and partially_refunded');
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_cr1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_cr","amount":2400,"currency":"usd"}}}'),
	false, 'the success arriving after the refund: false');
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_cr0","type":"charge.refunded","data":{"object":{"id":"ch_cr","payment_intent":"pi_cr","amount":2400,"amount_refunded":300,"currency":"usd"}}}'),
	false, 'an older charge.refunded with a smaller total: false (refunded_minor never goes down)');
SELECT is(pg_temp.status(:cr), 'partially_refunded', 'CR still partially_refunded');

-------------------------------------------------------------------------------
-- refunds (rows inserted as refund_order would)
-------------------------------------------------------------------------------
INSERT INTO ft_orders.refunds (order_id, amount_minor, currency, idempotency_key, refund_key)
VALUES (:a, 300, 'EUR', 'r1', '11111111-1111-4111-8111-111111111111'),
	   (:a, 700, 'EUR', 'r2', '22222222-2222-4222-8222-222222222222'),
	   (:s1, 2000, 'USD', 'r3', '33333333-3333-4333-8333-333333333333');
INSERT INTO ft_orders.outbox (order_id, refund_id)
SELECT order_id, refund_id FROM ft_orders.refunds WHERE idempotency_key = 'r1';
SELECT is(pg_temp.apply(pg_temp.gen('g-r1', 'refund.succeeded', :a,
		  '{"refund_key":"11111111-1111-4111-8111-111111111111","refund_id":"rf_1","amount_minor":300}')),
		  true, 'generic refund.succeeded by refund_key: applied');
SELECT results_eq(format($$SELECT r.status, r.gateway_refund_id, o.status::text, o.refunded_minor
							 FROM ft_orders.refunds r JOIN ft_orders.orders o USING (order_id)
							WHERE r.idempotency_key = 'r1' AND o.order_id = %s$$, :a),
				  $$VALUES ('succeeded', 'rf_1', 'partially_refunded', 300::bigint)$$,
				  'refund succeeded, order partially_refunded, refunded_minor 300');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE refund_id IS NOT NULL AND order_id = :a), 0,
		  'the refund''s queued outbox event was removed');
SELECT is(pg_temp.apply(pg_temp.gen('g-r1', 'refund.succeeded', :a,
		  '{"refund_key":"11111111-1111-4111-8111-111111111111"}')), false, 'the same refund event again: false');
SELECT is(pg_temp.apply(pg_temp.gen('g-r1f', 'refund.failed', :a, '{"refund_id":"rf_1"}')), false,
		  'refund.failed after its success (found by refund_id): false, history');
SELECT is(pg_temp.apply(pg_temp.gen('g-r2f', 'refund.failed', :a,
		  '{"refund_key":"22222222-2222-4222-8222-222222222222","error":"expired_card"}')), true,
		  'refund.failed on a pending refund: applied');
SELECT results_eq($$SELECT status, last_error FROM ft_orders.refunds WHERE idempotency_key = 'r2'$$,
				  $$VALUES ('failed', 'failed: expired_card')$$, 'the refund failed with the reason');
SELECT is(pg_temp.apply(pg_temp.gen('g-r2s', 'refund.succeeded', :a,
		  '{"refund_key":"22222222-2222-4222-8222-222222222222"}')), true,
		  'refund.succeeded after its failure: applied (the money went back)');
SELECT results_eq(format('SELECT status::text, refunded_minor FROM ft_orders.orders WHERE order_id = %s', :a),
				  $$VALUES ('refunded', 1000::bigint)$$, 'A is refunded in full');
SELECT is(pg_temp.apply(pg_temp.gen('g-r3x', 'refund.succeeded', :a,
		  '{"refund_key":"33333333-3333-4333-8333-333333333333"}')), false,
		  'a refund event whose payment_key is another order''s: false');
UPDATE ft_orders.refunds SET gateway_refund_id = 're_s1' WHERE idempotency_key = 'r3';
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_r3p","type":"refund.updated","data":{"object":{"id":"re_s1","amount":2000,"currency":"usd","status":"pending"}}}'),
	false, 'Stripe refund.updated still pending: false');
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_r3","type":"refund.updated","data":{"object":{"id":"re_s1","amount":2000,"currency":"usd","status":"succeeded","payment_intent":"pi_s1"}}}'),
	true, 'Stripe refund.updated succeeded (by gateway_refund_id): applied');
SELECT is(pg_temp.status(:s1), 'refunded', 'S1 refunded');

-- the totals
SELECT is((SELECT count(*)::int FROM ft_orders.gateway_events WHERE applied), 15,
		  '15 events applied in all');
SELECT is((SELECT count(DISTINCT (provider, event_id))::int FROM ft_orders.gateway_events),
		  (SELECT count(*)::int FROM ft_orders.gateway_events), 'every event recorded once');
CREATE FUNCTION pg_temp.sample(m text, series text) RETURNS text LANGUAGE sql AS $$
	SELECT pg_catalog.split_part(l, ' ', 2)
	  FROM pg_catalog.regexp_split_to_table(m, E'\n') AS l
	 WHERE pg_catalog.left(l, pg_catalog.length(series) + 1) OPERATOR(pg_catalog.=) (series || ' ')
$$;
SELECT is(pg_temp.sample(ft_orders.metrics(), 'ft_orders_gateway_events_total{result="applied"}'),
		  (SELECT count(*)::text FROM ft_orders.gateway_events WHERE applied),
		  'metrics(): ft_orders_gateway_events_total{result="applied"} counts the applied events');
SELECT is(pg_temp.sample(ft_orders.metrics(), 'ft_orders_gateway_events_total{result="ignored"}'),
		  (SELECT count(*)::text FROM ft_orders.gateway_events WHERE NOT applied),
		  'metrics(): ft_orders_gateway_events_total{result="ignored"} counts the others');

-- purge_history() drops events older than history_retention (7 days)
UPDATE ft_orders.gateway_events SET received_at = now() - interval '8 days' WHERE event_id IN ('g-a1', 'g-a3');
SELECT is(ft_orders.purge_history(), 2::bigint, 'purge_history() deletes the 2 events older than history_retention');
SELECT is((SELECT count(*)::int FROM ft_orders.gateway_events WHERE event_id IN ('g-a1', 'g-a3')), 0,
		  '... and only those');

-------------------------------------------------------------------------------
-- privileges: not granted to ft_orders_app by default
-------------------------------------------------------------------------------
SELECT format($$SELECT ft_orders.apply_gateway_event('generic', %L)$$,
			  pg_temp.gen('g-app', 'payment.succeeded', :cx)) AS app_call \gset
SET ROLE app_user;
SELECT throws_ok(:'app_call',
				 '42501', NULL, 'app_user: apply_gateway_event -> 42501 (a GRANT enables it)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
