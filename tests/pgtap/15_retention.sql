-- 15_retention.sql: purge_history() keeps the payment audit trail
-- (payment_attempts, order_events) for ft_orders.audit_retention (400 days
-- by default: disputes come months later) and webhook events for
-- ft_orders.history_retention (7 days); docs/reference.md, "Settings".
BEGIN;
SELECT plan(6);

SELECT is(current_setting('ft_orders.audit_retention'), '400d', 'audit_retention defaults to 400 days');
SELECT is(current_setting('ft_orders.history_retention'), '7d', 'history_retention defaults to 7 days');

SELECT order_id AS o FROM ft_orders.place_order('key-13-audit', 'c', 1300, 'EUR') \gset
-- three ages of each: a day, past history_retention, past audit_retention
INSERT INTO ft_orders.payment_attempts (order_id, attempt, outcome, error, started_at)
SELECT :o, g, 'retry', 'HTTP 503', now() - age
  FROM unnest(ARRAY[interval '1 day', interval '8 days', interval '401 days']) WITH ORDINALITY AS a(age, g);
INSERT INTO ft_orders.order_events (order_id, status, attempts, detail, created_at)
SELECT :o, 'pending', 0, 'retention test', now() - age
  FROM unnest(ARRAY[interval '1 day', interval '8 days', interval '401 days']) AS age;
INSERT INTO ft_orders.gateway_events (provider, event_id, type, order_id, applied, detail, payload, received_at)
SELECT 'generic', 'evt-13-' || g, 'payment.succeeded', :o, false, 'retention test', '{}', now() - age
  FROM unnest(ARRAY[interval '1 day', interval '8 days', interval '401 days']) WITH ORDINALITY AS a(age, g);

SELECT is(ft_orders.purge_history(), 4::bigint,
		  'purge_history() deletes 4 rows: the attempt and the event past audit_retention, two webhook events past history_retention');
SELECT is((SELECT count(*)::int FROM ft_orders.payment_attempts WHERE order_id = :o AND started_at > now() - interval '400 days'), 2,
		  'payment_attempts: the rows of 1 and 8 days are kept');
SELECT is((SELECT count(*)::int FROM ft_orders.order_events WHERE order_id = :o AND detail = 'retention test'), 2,
		  'order_events: the rows of 1 and 8 days are kept');
SELECT is((SELECT string_agg(event_id, ',') FROM ft_orders.gateway_events WHERE event_id LIKE 'evt-13-%'), 'evt-13-1',
		  'gateway_events: only the row of 1 day is kept');

SELECT * FROM finish();
ROLLBACK;
