-- 14_identity_match.sql: a Stripe object settles an order only by identity
-- (docs/reference.md, "Webhooks"): its metadata.payment_key, or the
-- PaymentIntent or Charge id stored for the order.  metadata.order_id is
-- numbered per database and any system on the same Stripe account may set
-- it: it matches only orders marked match_by_order_id (first request sent
-- before 1.4, without a payment_key).  No payment workers run.
BEGIN;
SELECT plan(15);

SELECT has_column('ft_orders', 'orders', 'match_by_order_id', 'orders.match_by_order_id exists');
SELECT col_not_null('ft_orders', 'orders', 'match_by_order_id', 'orders.match_by_order_id is NOT NULL');
SELECT col_default_is('ft_orders', 'orders', 'match_by_order_id', 'false',
					  'orders.match_by_order_id defaults to false');

SELECT o.order_id AS victim FROM ft_orders.place_order('im-victim', 'c', 4200, 'EUR') o \gset
SELECT o.order_id AS legacy FROM ft_orders.place_order('im-legacy', 'c', 4300, 'EUR') o \gset
SELECT o.order_id AS own FROM ft_orders.place_order('im-own', 'c', 4400, 'EUR') o \gset
SELECT is((SELECT match_by_order_id FROM ft_orders.orders WHERE order_id = :victim), false,
		  'an order placed now is not matched by order_id');

-- the attack: another system's PaymentIntent on the same account, carrying
-- our order's id, amount and currency, and no payment_key
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_im_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_foreign","object":"payment_intent","amount":4200,"currency":"eur","status":"succeeded","metadata":{"order_id":"%s"}}}}',
	:victim)::jsonb),
	false, 'a foreign payment_intent.succeeded with our order_id, amount and currency: not applied');
SELECT results_eq(format('SELECT status::text, payment_id FROM ft_orders.orders WHERE order_id = %s', :victim),
				  $$VALUES ('pending'::text, NULL::text)$$, '... the order stays pending, no payment id');
SELECT is((SELECT count(*)::int FROM ft_orders.outbox WHERE order_id = :victim AND refund_id IS NULL), 1,
		  '... its charge stays queued');
SELECT results_eq($$SELECT order_id, applied, detail FROM ft_orders.gateway_events WHERE event_id = 'evt_im_1'$$,
				  $$VALUES (NULL::bigint, false, 'no order for this event'::text)$$,
				  '... recorded as about no order');
-- nor a failure or cancellation of the foreign object
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_im_2","type":"payment_intent.canceled","data":{"object":{"id":"pi_foreign2","amount":4200,"currency":"eur","metadata":{"order_id":"%s"}}}}',
	:victim)::jsonb),
	false, 'a foreign payment_intent.canceled with our order_id: not applied');
SELECT is((SELECT status::text FROM ft_orders.orders WHERE order_id = :victim), 'pending',
		  '... the order stays pending');

-- the order's own object: by metadata.payment_key
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_im_3","type":"payment_intent.succeeded","data":{"object":{"id":"pi_own","amount":4400,"currency":"eur","metadata":{"order_id":"%s","payment_key":"%s"}}}}',
	:own, (SELECT payment_key FROM ft_orders.orders WHERE order_id = :own))::jsonb),
	true, 'the order''s own PaymentIntent (metadata.payment_key) settles it');
SELECT is((SELECT status::text FROM ft_orders.orders WHERE order_id = :own), 'paid', '... paid');

-- by the stored PaymentIntent id, without metadata
UPDATE ft_orders.orders SET payment_id = 'pi_victim' WHERE order_id = :victim;
SELECT is(ft_orders.apply_gateway_event('stripe',
	'{"id":"evt_im_4","type":"payment_intent.succeeded","data":{"object":{"id":"pi_victim","amount":4200,"currency":"eur"}}}'),
	true, 'the PaymentIntent id stored for the order settles it');

-- an order whose first request went out without a payment_key (pre-1.4)
UPDATE ft_orders.orders SET match_by_order_id = true WHERE order_id = :legacy;
SELECT is(ft_orders.apply_gateway_event('stripe', format(
	'{"id":"evt_im_5","type":"payment_intent.succeeded","data":{"object":{"id":"pi_legacy","amount":4300,"currency":"eur","metadata":{"order_id":"%s"}}}}',
	:legacy)::jsonb),
	true, 'an order marked match_by_order_id is still found by metadata.order_id');
SELECT results_eq(format('SELECT status::text, payment_id FROM ft_orders.orders WHERE order_id = %s', :legacy),
				  $$VALUES ('paid'::text, 'pi_legacy'::text)$$, '... paid with that PaymentIntent');

SELECT * FROM finish();
ROLLBACK;
