#!/bin/bash
# upgrade.sh: ALTER EXTENSION ft_orders UPDATE from 1.0 to 1.1 to 1.2 to 1.3 to 1.4 to 1.5
# under live payment workers.
#
# Installs 1.0, places orders (paid, declined, failed with a dead letter,
# and pending ones while the gateway is down), updates to 1.1 and asserts:
# every table's rows and the sequences are unchanged, the same worker
# processes keep running, metrics() appears (granted to ft_orders_app) and
# reports the data, the pending orders are paid afterwards, each once.
# Then 1.1 -> 1.2 the same way: rows unchanged, same workers, old orders
# keep their random payment keys, new orders get derived ones and are paid,
# a purge counts generations.  Then 1.2 -> 1.3: gateway_status answers
# before and after the update and gains its gateway-limit columns; rows
# unchanged (on the columns of 1.2), same workers, gateway_events empty,
# events tried under 1.2 count as sent, the orders left pending are paid
# once each, a webhook settles an order of 1.2 once, and a 1.0 order can be
# refunded.  Then 1.3 -> 1.4: an order of 1.3 keeps its key, a new one
# derives it within the key space, both are paid; 1.4 -> 1.5 keeps both,
# adds the role ft_orders_operator and marks the orders placed before 1.4
# match_by_order_id.  The upgraded catalogue
# (objects, definitions, grants, comments, extconfig) is identical to a
# fresh CREATE EXTENSION of 1.5.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/snapshot.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.circuit_failure_threshold = 3" "ft_orders.circuit_open_time = '1s'" ||
	bail_out "the fake gateway or the server did not start"

is "$(psql_q "SELECT default_version FROM pg_available_extensions WHERE name = 'ft_orders'")" "1.5" \
	"the default version is 1.5"
is "$(psql_q "SELECT string_agg(source || '->' || target || ':' || path, ' ' ORDER BY source, target)
              FROM pg_extension_update_paths('ft_orders') WHERE path IS NOT NULL")" \
	"1.0->1.1:1.0--1.1 1.0->1.2:1.0--1.1--1.2 1.0->1.3:1.0--1.1--1.2--1.3 1.0->1.4:1.0--1.1--1.2--1.3--1.4 1.0->1.5:1.0--1.1--1.2--1.3--1.4--1.5 1.1->1.2:1.1--1.2 1.1->1.3:1.1--1.2--1.3 1.1->1.4:1.1--1.2--1.3--1.4 1.1->1.5:1.1--1.2--1.3--1.4--1.5 1.2->1.3:1.2--1.3 1.2->1.4:1.2--1.3--1.4 1.2->1.5:1.2--1.3--1.4--1.5 1.3->1.4:1.3--1.4 1.3->1.5:1.3--1.4--1.5 1.4->1.5:1.4--1.5" \
	"the update paths 1.0 -> 1.1 -> 1.2 -> 1.3 -> 1.4 -> 1.5 exist"

# pg_start installed the default (1.5); start over from 1.0 before any order
psql_q "DROP EXTENSION ft_orders; CREATE EXTENSION ft_orders VERSION '1.0'" >/dev/null
ok $? "CREATE EXTENSION ft_orders VERSION '1.0'"
is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.0" "version 1.0 is installed"
is "$(psql_q "SELECT count(*) FROM pg_proc WHERE proname = 'metrics' AND pronamespace = 'ft_orders'::regnamespace")" \
	"0" "1.0 has no metrics()"

wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 30
ok $? "two payment workers serve the 1.0 schema"

# --- orders under 1.0 ----------------------------------------------------------
gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422]}' || bail_out "could not set faults"
psql_q "SELECT count(*) FROM (SELECT 'v10-' || g AS k, 100 + g AS amount FROM generate_series(1, 20) g
                              UNION ALL SELECT 'v10-dec', 402 UNION ALL SELECT 'v10-rej', 422) v,
        LATERAL ft_orders.place_order(v.k, 'cust', v.amount, 'EUR', '[{\"sku\":\"A\"}]', 'pm_card_visa')" >/dev/null
ok $? "placed 22 orders under 1.0"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "1.0: every order settled"
is "$(psql_q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
              FROM (SELECT status, count(*) n FROM ft_orders.orders GROUP BY status) s")" \
	"paid:20 declined:1 failed:1" "1.0: 20 paid, 1 declined, 1 failed"

gw_faults '{"down":true}' || bail_out "could not take the gateway down"
psql_q "SELECT count(*) FROM generate_series(1, 10) g, LATERAL ft_orders.place_order('v10-down-' || g, 'cust', 700 + g, 'EUR')" >/dev/null
ok $? "placed 10 orders while the gateway is down"
wait_until "SELECT count(*) = 10 FROM ft_orders.orders WHERE idempotency_key LIKE 'v10-down-%' AND attempts > 0" 30
ok $? "the workers tried them and rescheduled them"

# idle the workers (no gateway URL) so that the tables hold still for the digest
pg_set ft_orders.gateway_url ''
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle' AND in_flight = 0" 20
ok $? "workers idle without a gateway URL"
wait_until "SELECT count(*) = 0 FROM ft_orders.outbox WHERE lease_until > now()" 20
ok $? "no outbox lease is held"
sleep 0.5

ft_data_digest >"$FT_TMP/before.digest" || bail_out "digest failed"
ft_catalog_snapshot >"$FT_TMP/v10.catalog" || bail_out "catalogue snapshot failed"
pids_before=$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")
launcher_before=$(psql_q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ft_orders launcher'")

# --- the update ----------------------------------------------------------------
psql_q "ALTER EXTENSION ft_orders UPDATE TO '1.1'" >/dev/null
ok $? "ALTER EXTENSION ft_orders UPDATE TO '1.1'"
is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.1" "version 1.1 is installed"

ft_data_digest >"$FT_TMP/after.digest" || bail_out "digest failed"
is "$(diff "$FT_TMP/before.digest" "$FT_TMP/after.digest")" "" "every table's rows and the sequences are unchanged"
is "$(grep -c ' [0-9]* [0-9a-f]\{32\}$' "$FT_TMP/after.digest")" "6" "(the digest covers the six tables)"
is "$(awk '$1 == "orders" { print $2 }' "$FT_TMP/after.digest")" "32" "(32 orders were digested)"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"the same payment worker processes run after the update"
is "$(psql_q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ft_orders launcher'")" "$launcher_before" \
	"the same launcher runs after the update"

psql_q "SELECT ft_orders.metrics()" | /usr/bin/python3 "$FT_ROOT/tests/lib/prom_check.py" >"$FT_TMP/m1.prom"
ok $? "metrics() works after the update and parses"
is "$(awk '$1 ~ /^ft_orders_orders[{]/ { printf "%s ", $0 }' "$FT_TMP/m1.prom")" \
	'ft_orders_orders{status="pending"} 10 ft_orders_orders{status="paid"} 20 ft_orders_orders{status="declined"} 1 ft_orders_orders{status="failed"} 1 ' \
	"metrics() counts the orders placed under 1.0"
is "$(awk '$1 == "ft_orders_dead_letters" { print $2 }' "$FT_TMP/m1.prom")" "1" "metrics() counts the dead letter"
is "$(psql_q "SELECT has_function_privilege('ft_orders_app', 'ft_orders.metrics()', 'EXECUTE')::text
                     || ' ' || has_function_privilege('public', 'ft_orders.metrics()', 'EXECUTE')::text")" \
	"true false" "after the update ft_orders_app may call metrics(), PUBLIC may not"

# --- workers keep paying ---------------------------------------------------------
gw_faults reset || bail_out "could not reset the faults"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = 30 FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "the 10 orders left pending under 1.0 are paid after the update"
psql_q "SELECT count(*) FROM generate_series(1, 5) g, LATERAL ft_orders.place_order('v11-' || g, 'cust', 900 + g, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 35 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "new orders placed under 1.1 are paid"
is "$(gw_ledger charges)" "35" "ledger: 35 charges"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox drained"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"still the same worker processes"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE order_id IN
                (SELECT order_id FROM ft_orders.orders WHERE idempotency_key LIKE 'v10-down-%') AND status = 'paid'")" \
	"10" "each formerly pending order has one 'paid' event"
# a key of 1.0 is still known: a replay returns the old order
is "$(psql_q "SELECT replayed || ' ' || status FROM ft_orders.place_order('v10-1', 'cust', 101, 'EUR', '[{\"sku\":\"A\"}]', 'pm_card_visa')")" \
	"true paid" "an idempotency key from 1.0 replays under 1.1"

# --- 1.1 -> 1.2 -------------------------------------------------------------------
pg_set ft_orders.gateway_url ''
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle' AND in_flight = 0" 20
ok $? "workers idle again before the update to 1.2"
sleep 0.5
ft_data_digest >"$FT_TMP/before12.digest" || bail_out "digest failed"
psql_q "ALTER EXTENSION ft_orders UPDATE TO '1.2'" >/dev/null
ok $? "ALTER EXTENSION ft_orders UPDATE TO '1.2'"
is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.2" "version 1.2 is installed"
ft_data_digest >"$FT_TMP/after12.digest" || bail_out "digest failed"
is "$(diff "$FT_TMP/before12.digest" <(grep -v '^idempotency_key_generations ' "$FT_TMP/after12.digest"))" "" \
	"1.2: every table's rows and the sequences are unchanged"
is "$(grep '^idempotency_key_generations ' "$FT_TMP/after12.digest" | cut -d' ' -f2)" "0" "1.2: the purge generations start empty"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"1.2: the same worker processes run after the update"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE substr(payment_key::text, 15, 1) = '4'")" "37" \
	"1.2: the 37 orders of 1.0 and 1.1 keep their random (version 4) payment keys"
pg_set ft_orders.gateway_url "$GW_URL"
psql_q "SELECT count(*) FROM generate_series(1, 5) g, LATERAL ft_orders.place_order('v12-' || g, 'cust', 950 + g, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 40 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "new orders placed under 1.2 are paid"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders o JOIN ft_orders.idempotency_keys k USING (order_id)
              WHERE o.idempotency_key LIKE 'v12-%' AND o.payment_key = ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0)")" \
	"5" "1.2: their payment keys are derived (key, fingerprint, generation 0)"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "40 0" "ledger: 40 charges, no duplicates"
psql_q "UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '2 days' WHERE idempotency_key IN ('v10-2', 'v12-2')" >/dev/null
is "$(psql_q "SELECT ft_orders.purge_expired_keys()") $(psql_q "SELECT string_agg(idempotency_key || ':' || generation, ' ' ORDER BY 1) FROM ft_orders.idempotency_key_generations")" \
	"2 v10-2:1 v12-2:1" "1.2: a purge counts the generations of a 1.0 key and a 1.2 key"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"1.2: still the same worker processes"

# --- 1.2 -> 1.3 -------------------------------------------------------------------
is "$(psql_q "SELECT circuit || ' ' || (requests > 0) FROM ft_orders.gateway_status")" "closed true" \
	"1.2: gateway_status (8 columns) answers on the new library"
# rows compared on the columns of 1.2 (the tables gain columns in 1.3)
digest12()
{
	psql -XAtq -v ON_ERROR_STOP=1 <<'SQL'
SELECT t || ' ' || n || ' ' || d FROM (
	SELECT 'orders' t, count(*) n, md5(string_agg((to_jsonb(o) - ARRAY['next_action', 'client_secret', 'cancel_requested_at', 'cancel_reason', 'refunded_minor'])::text, E'\n' ORDER BY o.order_id)) d FROM ft_orders.orders o
	UNION ALL SELECT 'outbox', count(*), md5(string_agg((to_jsonb(o) - ARRAY['refund_id', 'first_sent_at', 'lookup'])::text, E'\n' ORDER BY o.event_id)) FROM ft_orders.outbox o
	UNION ALL SELECT 'dead_letters', count(*), md5(string_agg((to_jsonb(o) - ARRAY['refund_id', 'first_sent_at'])::text, E'\n' ORDER BY o.event_id)) FROM ft_orders.dead_letters o
	UNION ALL SELECT 'payment_attempts', count(*), md5(string_agg((to_jsonb(o) - ARRAY['request', 'refund_id'])::text, E'\n' ORDER BY o.order_id, o.attempt, o.started_at)) FROM ft_orders.payment_attempts o
	UNION ALL SELECT 'order_events', count(*), md5(string_agg(to_jsonb(o)::text, E'\n' ORDER BY o.id)) FROM ft_orders.order_events o
	UNION ALL SELECT 'idempotency_keys', count(*), md5(string_agg(to_jsonb(o)::text, E'\n' ORDER BY o.idempotency_key)) FROM ft_orders.idempotency_keys o
) s ORDER BY t;
SQL
}
gw_faults '{"down":true}' || bail_out "could not take the gateway down"
psql_q "SELECT count(*) FROM generate_series(1, 4) g, LATERAL ft_orders.place_order('v12-down-' || g, 'cust', 970 + g, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 4 FROM ft_orders.orders WHERE idempotency_key LIKE 'v12-down-%' AND attempts > 0" 30
ok $? "1.2: 4 orders tried while the gateway is down, rescheduled"
pg_set ft_orders.gateway_url ''
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle' AND in_flight = 0" 20
ok $? "workers idle before the update to 1.3"
wait_until "SELECT count(*) = 0 FROM ft_orders.outbox WHERE lease_until > now()" 20
# one more order, never tried: a webhook settles it under 1.3
psql_q "SELECT count(*) FROM ft_orders.place_order('v12-pending', 'cust', 969, 'EUR')" >/dev/null
sleep 0.5
digest12 >"$FT_TMP/before13.digest" || bail_out "digest failed"
psql_q "ALTER EXTENSION ft_orders UPDATE TO '1.3'" >/dev/null
ok $? "ALTER EXTENSION ft_orders UPDATE TO '1.3'"
is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.3" "version 1.3 is installed"
digest12 >"$FT_TMP/after13.digest" || bail_out "digest failed"
is "$(diff "$FT_TMP/before13.digest" "$FT_TMP/after13.digest")" "" "1.3: every row unchanged on the columns of 1.2"
is "$(awk '$1 == "orders" { print $2 }' "$FT_TMP/after13.digest")" "47" "(47 orders were digested)"
is "$(psql_q "SELECT count(*) FROM ft_orders.gateway_events")" "0" "1.3: gateway_events starts empty"
is "$(psql_q "SELECT count(*) FILTER (WHERE first_sent_at IS NOT NULL) || '/' || count(*) FROM ft_orders.outbox")" "4/5" \
	"1.3: the events tried under 1.2 count as sent, the untried one does not"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"1.3: the same worker processes run after the update"
is "$(psql_q "SELECT (requests > 0) || ' ' || rate_limit || ' ' || (concurrency_limit > 0) || ' ' || (throttled >= 0)
              FROM ft_orders.gateway_status")" "true 0 true true" \
	"1.3: gateway_status shows the gateway limits (and the figures kept in shared memory)"
is "$(psql_q "SELECT has_table_privilege('ft_orders_app', 'ft_orders.gateway_status', 'SELECT')")" "t" \
	"1.3: ft_orders_app may still read gateway_status"
pk=$(psql_q "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'v12-pending'")
ev="{\"event_id\":\"up13\",\"type\":\"payment.succeeded\",\"payment_key\":\"$pk\"}"
is "$(psql_q "SELECT ft_orders.apply_gateway_event('generic', '$ev')")/$(psql_q "SELECT ft_orders.apply_gateway_event('generic', '$ev')")" \
	"t/f" "1.3: a webhook settles the order placed under 1.2, once"
is "$(psql_q "SELECT o.status || ' ' || count(e.*) || ' ' || (SELECT count(*) FROM ft_orders.outbox b WHERE b.order_id = o.order_id)
              FROM ft_orders.orders o LEFT JOIN ft_orders.order_events e USING (order_id)
             WHERE o.idempotency_key = 'v12-pending' GROUP BY o.order_id, o.status")" "paid 1 0" \
	"1.3: it is paid, with one order_events row and no outbox event left to charge"
gw_faults reset || bail_out "could not reset the faults"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = 45 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "1.3: the orders left pending under 1.2 are paid"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "44 0" \
	"1.3: ledger 44 charges, no duplicates (the webhook's order was not charged by a worker)"
r=$(psql_q "SELECT ft_orders.refund_order((SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'v10-3'), 50)")
ok $? "1.3: a refund of an order placed under 1.0"
wait_until "SELECT status = 'succeeded' FROM ft_orders.refunds WHERE refund_id = $r" 30
ok $? "1.3: the workers sent it"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'v10-3'")" "partially_refunded" \
	"1.3: the 1.0 order is partially_refunded"
is "$(gw_ledger refunds)" "1" "1.3: one refund at the gateway"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"1.3: still the same worker processes"

# --- 1.3 -> 1.4 -------------------------------------------------------------------
# an order placed under 1.3 keeps its (rule v1) key, one placed under 1.4
# derives rule v2, within the database's key space
psql_q "SELECT count(*) FROM ft_orders.place_order('v13-last', 'cust', 131, 'EUR')" >/dev/null
key13=$(psql_q "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'v13-last'")
psql_q "ALTER EXTENSION ft_orders UPDATE TO '1.4'" >/dev/null
ok $? "ALTER EXTENSION ft_orders UPDATE TO '1.4'"
is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.4" "version 1.4 is installed"
is "$(psql_q "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'v13-last'")" "$key13" \
	"1.4: the order placed under 1.3 keeps its payment_key"
psql_q "SELECT count(*) FROM ft_orders.place_order('v14-first', 'cust', 141, 'EUR')" >/dev/null
is "$(psql_q "SELECT string_agg(o.idempotency_key || ':' ||
                                (o.payment_key = ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0)) || ':' ||
                                (o.payment_key = ft_orders._payment_key(k.idempotency_key, k.fingerprint, 0, ft_orders._key_space())),
                                ' ' ORDER BY o.order_id)
              FROM ft_orders.orders o JOIN ft_orders.idempotency_keys k USING (order_id)
             WHERE o.idempotency_key IN ('v13-last', 'v14-first')")" "v13-last:true:false v14-first:false:true" \
	"1.4: rule v1 made the 1.3 order's key, rule v2 (key space) the 1.4 order's"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE idempotency_key IN ('v13-last', 'v14-first') AND status <> 'paid'" 30
ok $? "1.4: both are paid"
is "$(gw_ledger duplicates)" "0" "1.4: no duplicates"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"1.4: still the same worker processes"

# --- 1.4 -> 1.5 -------------------------------------------------------------------
psql_q "SELECT count(*) FROM ft_orders.place_order('v14-last', 'cust', 142, 'EUR')" >/dev/null
key14=$(psql_q "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'v14-last'")
# a requeue grant made under 1.4 survives retry_dead_letter() becoming SECURITY DEFINER
psql_q "CREATE ROLE upg_requeuer NOLOGIN; GRANT USAGE ON SCHEMA ft_orders TO upg_requeuer;
        GRANT EXECUTE ON FUNCTION ft_orders.retry_dead_letter(bigint) TO upg_requeuer" >/dev/null
psql_q "ALTER EXTENSION ft_orders UPDATE TO '1.5'" >/dev/null
ok $? "ALTER EXTENSION ft_orders UPDATE TO '1.5'"
is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.5" "version 1.5 is installed"
is "$(psql_q "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'v14-last'")" "$key14" \
	"1.5: the order placed under 1.4 keeps its payment_key"
is "$(psql_q "SELECT string_agg(DISTINCT match_by_order_id::text, ',') FROM ft_orders.orders
             WHERE idempotency_key NOT IN ('v14-first', 'v14-last')")" "true" \
	"1.5: every order placed before 1.4 is marked match_by_order_id (its request may lack the payment_key)"
psql_q "SELECT count(*) FROM ft_orders.place_order('v15-first', 'cust', 151, 'EUR')" >/dev/null
is "$(psql_q "SELECT string_agg(idempotency_key || ':' || match_by_order_id, ' ' ORDER BY order_id)
              FROM ft_orders.orders WHERE idempotency_key IN ('v14-first', 'v14-last', 'v15-first')")" \
	"v14-first:false v14-last:false v15-first:false" \
	"1.5: the orders placed under 1.4 (rule v2 key) and 1.5 are matched by identity only"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE idempotency_key IN ('v14-last', 'v15-first') AND status <> 'paid'" 30
ok $? "1.5: both are paid"
is "$(gw_ledger duplicates)" "0" "1.5: no duplicates"
is "$(psql_q "SELECT string_agg(pid::text, ',' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_before" \
	"1.5: still the same worker processes"

is "$(psql_q "SELECT p.prosecdef || ' ' || has_function_privilege('upg_requeuer', p.oid, 'EXECUTE')
                     || ' ' || has_function_privilege('ft_orders_operator', p.oid, 'EXECUTE')
                     || ' ' || has_function_privilege('ft_orders_app', p.oid, 'EXECUTE')
                FROM pg_proc p WHERE p.oid = 'ft_orders.retry_dead_letter(bigint)'::regprocedure")" \
	"true true true false" \
	"1.5: retry_dead_letter is SECURITY DEFINER; the 1.4 grant is kept, ft_orders_operator may call it, ft_orders_app may not"
psql_q "REVOKE ALL ON FUNCTION ft_orders.retry_dead_letter(bigint) FROM upg_requeuer;
        REVOKE ALL ON SCHEMA ft_orders FROM upg_requeuer; DROP OWNED BY upg_requeuer; DROP ROLE upg_requeuer" >/dev/null
ok $? "(the test's own grant removed before the catalogue comparison)"

# --- upgraded catalogue == fresh 1.5 install --------------------------------------
ft_catalog_snapshot >"$FT_TMP/upgraded.catalog" || bail_out "catalogue snapshot failed"
psql_q "DROP EXTENSION ft_orders; CREATE EXTENSION ft_orders" >/dev/null
ok $? "fresh CREATE EXTENSION ft_orders (1.5) in the same database"
ft_catalog_snapshot >"$FT_TMP/fresh.catalog" || bail_out "catalogue snapshot failed"
catalog_diff=$(diff "$FT_TMP/upgraded.catalog" "$FT_TMP/fresh.catalog")
is "$catalog_diff" "" "the upgraded catalogue equals a fresh 1.5 install"
is "$(grep -c '^member ' "$FT_TMP/fresh.catalog")" "55" "(the comparison covers the 55 members)"
cmp_ok "$(grep -c '^column ' "$FT_TMP/fresh.catalog")" -ge 60 "(... and every column)"
like "$(grep '^function ft_orders.metrics()' "$FT_TMP/fresh.catalog")" 'ft_orders_app=X' \
	"(... and the grants, e.g. metrics() for ft_orders_app)"
like "$(grep '^function ft_orders.retry_dead_letter(bigint)' "$FT_TMP/fresh.catalog")" 'ft_orders_operator=X' \
	"(... and retry_dead_letter() for ft_orders_operator)"
like "$(grep '^role ft_orders_operator' "$FT_TMP/fresh.catalog")" 'Grant to operators' \
	"(... and the operator role's description)"
v10_diff=$(diff "$FT_TMP/v10.catalog" "$FT_TMP/fresh.catalog")
like "$v10_diff" '> function ft_orders.metrics\(\)' "(the 1.0 catalogue does differ: no metrics() ...)"
like "$v10_diff" "< column orders.customer_id #3 text notnull=true default= comment="$'\n' \
	"(... and columns without comments)"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
