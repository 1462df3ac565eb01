-- 16_archiving.sql: the recipe of docs/operations.md, "Table growth and
-- archiving", archives settled orders and drops the purge generations of
-- the keys that have no order left, and only those: a generation row kept
-- while an order of its key is kept is what stops the key's next order
-- from deriving that order's payment_key.
BEGIN;
SELECT plan(10);

-- key-16-a: order A (generation 0), purged, order B (generation 1), purged;
-- A is settled long ago, B recently.
SELECT order_id AS a FROM ft_orders.place_order('key-16-a', 'c', 1600, 'EUR') \gset
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '600 days' WHERE idempotency_key = 'key-16-a';
SELECT is(ft_orders.purge_expired_keys(), 1::bigint, 'key-16-a purged once');
SELECT order_id AS b FROM ft_orders.place_order('key-16-a', 'c', 1600, 'EUR') \gset
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '2 days' WHERE idempotency_key = 'key-16-a';
SELECT is(ft_orders.purge_expired_keys(), 1::bigint, 'key-16-a purged twice');
-- key-16-c: order C, settled long ago, purged; key-16-p: order P, pending
-- since long ago (its outbox event is still there)
SELECT order_id AS c FROM ft_orders.place_order('key-16-c', 'c', 1601, 'EUR') \gset
SELECT order_id AS p FROM ft_orders.place_order('key-16-p', 'c', 1602, 'EUR') \gset
UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '600 days' WHERE idempotency_key IN ('key-16-c', 'key-16-p');
SELECT is(ft_orders.purge_expired_keys(), 2::bigint, 'key-16-c and key-16-p purged');
DELETE FROM ft_orders.outbox WHERE order_id IN (:a, :b, :c);
UPDATE ft_orders.orders SET status = 'paid', updated_at = now() - interval '600 days' WHERE order_id IN (:a, :c);
UPDATE ft_orders.orders SET status = 'paid', updated_at = now() - interval '1 day' WHERE order_id = :b;
UPDATE ft_orders.orders SET updated_at = now() - interval '600 days' WHERE order_id = :p;
SELECT payment_key AS c_key FROM ft_orders.orders WHERE order_id = :c \gset

CREATE SCHEMA archive;
CREATE TABLE archive.orders (LIKE ft_orders.orders);
CREATE TABLE archive.refunds (LIKE ft_orders.refunds);

-- the recipe, as in docs/operations.md (cut-off 540 days)
CREATE TEMP TABLE archived ON COMMIT DROP AS
SELECT o.order_id, o.idempotency_key
  FROM ft_orders.orders o
 WHERE o.status IN ('paid', 'declined', 'failed', 'canceled', 'refunded', 'partially_refunded')
   AND o.updated_at < now() - interval '540 days'
   AND NOT EXISTS (SELECT 1 FROM ft_orders.outbox b WHERE b.order_id = o.order_id)
   AND NOT EXISTS (SELECT 1 FROM ft_orders.dead_letters d WHERE d.order_id = o.order_id)
   AND NOT EXISTS (SELECT 1 FROM ft_orders.idempotency_keys k
                    WHERE k.idempotency_key = o.idempotency_key AND k.order_id = o.order_id)
   AND NOT EXISTS (SELECT 1 FROM ft_orders.refunds r
                    WHERE r.order_id = o.order_id
                      AND (r.status = 'pending' OR r.updated_at >= now() - interval '540 days'))
   FOR UPDATE OF o SKIP LOCKED;
INSERT INTO archive.orders SELECT o.* FROM ft_orders.orders o JOIN archived a USING (order_id);
INSERT INTO archive.refunds SELECT r.* FROM ft_orders.refunds r JOIN archived a USING (order_id);
DELETE FROM ft_orders.refunds r USING archived a WHERE r.order_id = a.order_id;
DELETE FROM ft_orders.payment_attempts x USING archived a WHERE x.order_id = a.order_id;
DELETE FROM ft_orders.order_events x USING archived a WHERE x.order_id = a.order_id;
DELETE FROM ft_orders.gateway_events x USING archived a WHERE x.order_id = a.order_id;
DELETE FROM ft_orders.orders o USING archived a WHERE o.order_id = a.order_id;
DELETE FROM ft_orders.idempotency_key_generations g
 WHERE g.idempotency_key IN (SELECT idempotency_key FROM archived)
   AND NOT EXISTS (SELECT 1 FROM ft_orders.orders o WHERE o.idempotency_key = g.idempotency_key);
-- end of the recipe

SELECT is((SELECT array_agg(order_id ORDER BY order_id) FROM archive.orders), ARRAY[:a, :c]::bigint[],
		  'the orders settled before the cut-off (A, C) are archived');
SELECT is((SELECT array_agg(order_id ORDER BY order_id) FROM ft_orders.orders WHERE order_id IN (:a, :b, :c, :p)),
		  ARRAY[:b, :p]::bigint[], 'the recent order (B) and the pending one (P) stay');
SELECT is((SELECT generation FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-16-a'), 2::bigint,
		  'key-16-a keeps its generation row: order B of that key is kept');
SELECT is((SELECT count(*)::int FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-16-c'), 0,
		  'key-16-c loses its generation row: no order of that key is left');
SELECT is((SELECT count(*)::int FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'key-16-p'), 1,
		  'key-16-p keeps its generation row: its pending order is kept');

-- reused after the archive: key-16-a derives generation 2, never B's key;
-- key-16-c derives generation 0 again, i.e. C's key, which the gateway
-- forgot long before the cut-off
SELECT order_id AS a2 FROM ft_orders.place_order('key-16-a', 'c', 1600, 'EUR') \gset
SELECT is((SELECT o.payment_key FROM ft_orders.orders o WHERE o.order_id = :a2),
		  (SELECT ft_orders._payment_key(k.idempotency_key, k.fingerprint, 2, ft_orders._key_space())
			 FROM ft_orders.idempotency_keys k WHERE k.idempotency_key = 'key-16-a'),
		  'key-16-a placed again derives generation 2 (not A''s generation 0)');
SELECT order_id AS c2 FROM ft_orders.place_order('key-16-c', 'c', 1601, 'EUR') \gset
SELECT is((SELECT payment_key FROM ft_orders.orders WHERE order_id = :c2), :'c_key'::uuid,
		  'key-16-c placed again derives generation 0, the archived order''s payment_key');

SELECT * FROM finish();
ROLLBACK;
