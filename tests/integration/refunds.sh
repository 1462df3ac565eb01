#!/bin/bash
# refunds.sh: ft_orders.refund_order() end to end against the fake gateway
# (docs/reference.md, "Lifecycle"): full and partial refunds, a
# repeated key, the over-refund refused (also when 8 sessions refund at
# once), an order that is not paid, a gateway down then back, lost
# replies (one refund at the gateway), and a refund first sent longer ago
# than gateway_key_ttl, looked up (GET /refunds/{key}) instead of re-sent;
# a refund dead-lettered and requeued (the order stays paid meanwhile).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.max_attempts = 100" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "the fake gateway or the server did not start"

place() { psql_q "SELECT order_id FROM ft_orders.place_order('$1', 'cust', $2, 'EUR')"; }
status_of() { psql_q "SELECT status || ':' || refunded_minor FROM ft_orders.orders WHERE order_id = $1"; }
sqlstate_of() { psql -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$1" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | head -1; }
settled() { wait_until "SELECT count(*) = 0 FROM ft_orders.refunds WHERE status = 'pending'" "${1:-30}"; }
# refund_reply_lost LABEL ARGS: ft_orders.refund_order(ARGS) while the
# gateway's replies are lost, until it was tried; then the gateway answers
# again and the refund settles (two checks).  Sets rid (the refund) and
# before (the gateway's count of refunds before).
refund_reply_lost()
{
	before=$(gw_ledger refunds)
	gw_faults '{"timeout_rate":1,"hang_ms":3000}'
	rid=$(psql_q "SELECT ft_orders.refund_order($2)")
	wait_until "SELECT count(*) >= 1 FROM ft_orders.payment_attempts WHERE refund_id = $rid" 20
	ok $? "$1: the refund's reply was lost"
	gw_faults reset
	settled ; ok $? "$1: settled once the gateway answers"
}

gw_faults '{"decline_amount_minor":[777]}' || bail_out "could not set faults"
o1=$(place ref-1 1000); o2=$(place ref-2 1000); o3=$(place ref-3 500)
o4=$(place ref-4 1000); o5=$(place ref-5 900); od=$(place ref-declined 777)
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "orders settled"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY order_id) FROM ft_orders.orders")" \
	"paid,paid,paid,paid,paid,declined" "five paid, one declined"

# --- full ----------------------------------------------------------------------
r1=$(psql_q "SELECT ft_orders.refund_order($o1)")
ok $? "full refund requested (refund $r1)"
is "$(psql_q "SELECT ft_orders.refund_order($o1)")" "$r1" "the same call again returns the same refund"
settled ; ok $? "the refund settled"
is "$(status_of "$o1")" "refunded:1000" "full: the order is refunded"
is "$(psql_q "SELECT status || ':' || amount_minor || ':' || (gateway_refund_id LIKE 're_%') FROM ft_orders.refunds WHERE refund_id = $r1")" \
	"succeeded:1000:true" "full: the refund row succeeded with the gateway's id"

# --- partial -----------------------------------------------------------------------
a=$(psql_q "SELECT ft_orders.refund_order($o2, 300, 'p1')")
is "$(psql_q "SELECT ft_orders.refund_order($o2, 300, 'p1')")" "$a" "partial: a repeated key returns the same refund"
is "$(sqlstate_of "SELECT ft_orders.refund_order($o2, 400, 'p1')")" "FT409" "partial: the key with another amount: FT409"
settled ; ok $? "partial: settled"
is "$(status_of "$o2")" "partially_refunded:300" "partial: the order is partially_refunded"
is "$(sqlstate_of "SELECT ft_orders.refund_order($o2, 800, 'p2')")" "22023" "partial: 800 of the 700 left: 22023"
is "$(psql_q "SELECT count(*) FROM ft_orders.refunds WHERE order_id = $o2")" "1" "partial: the refused call wrote nothing"
psql_q "SELECT ft_orders.refund_order($o2)" >/dev/null
settled ; ok $? "partial: the rest settled"
is "$(status_of "$o2")" "refunded:1000" "partial: 300 + 700, the order is refunded"
is "$(sqlstate_of "SELECT ft_orders.refund_order($o2, 1, 'p3')")" "22023" "refunded: nothing left, 22023"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $o2")" \
	"paid,paid,partially_refunded,partially_refunded,refunded" "partial: every change has its order_events row"

# --- not paid ------------------------------------------------------------------------
is "$(sqlstate_of "SELECT ft_orders.refund_order($od)")" "55000" "declined order: 55000"
is "$(sqlstate_of "SELECT ft_orders.refund_order(NULL)")" "22004" "NULL order_id: 22004"
is "$(sqlstate_of "SELECT ft_orders.refund_order($o4, 0)")" "22023" "amount 0: 22023"

# --- concurrent ----------------------------------------------------------------------
pg_set ft_orders.gateway_url ''
pids=()
for i in $(seq 1 8); do
	psql -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
		-c "SELECT ft_orders.refund_order($o4, 300, 'c$i')" >"$FT_TMP/c$i.out" 2>"$FT_TMP/c$i.err" &
	pids+=($!)
done
wait "${pids[@]}"
is "$(cat "$FT_TMP"/c*.out | grep -c '^[0-9]')" "3" "concurrent: 3 of 8 sessions got a refund of 300"
is "$(cat "$FT_TMP"/c*.err | grep -c '^ERROR:  22023')" "5" "concurrent: the other 5 got 22023"
is "$(psql_q "SELECT sum(amount_minor) FROM ft_orders.refunds WHERE order_id = $o4")" "900" \
	"concurrent: 900 of 1000 committed, never more"
pg_set ft_orders.gateway_url "$GW_URL"
settled ; ok $? "concurrent: settled"
is "$(status_of "$o4")" "partially_refunded:900" "concurrent: partially_refunded 900"

# --- gateway down, then back ---------------------------------------------------------------
gw_faults '{"down":true}'
r3=$(psql_q "SELECT ft_orders.refund_order($o3)")
wait_until "SELECT count(*) >= 2 FROM ft_orders.payment_attempts WHERE refund_id = $r3" 20
ok $? "down: the refund is retried"
is "$(psql_q "SELECT status || ':' || (last_error IS NOT NULL) FROM ft_orders.refunds WHERE refund_id = $r3")" \
	"pending:true" "down: still pending, with the last error"
is "$(psql_q "SELECT refunds FROM ft_orders.queue_status")" "1" "down: queue_status counts the refund"
gw_faults reset
settled ; ok $? "down: settled once the gateway is back"
is "$(status_of "$o3")" "refunded:500" "down: the order is refunded"

# --- lost replies ------------------------------------------------------------------------
refund_reply_lost lost "$o5, 400, 'lost'"
r5=$rid
is "$(( $(gw_ledger refunds) - before ))" "1" "lost: one refund at the gateway"
cmp_ok "$(gw_ledger refund_replays)" -ge 1 "lost: the retry was answered by a replay"
like "$(psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE refund_id = $r5")" \
	'^refund:retry(,refund:retry)*,refund:refunded$' "lost: retries under the same key, then refunded"

# --- a refund's reply lost, then looked up (gateway_key_ttl passed) ---------------------
o6=$(place ref-6 800)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o6" 20
pg_set ft_orders.gateway_key_ttl '1s'
pg_set ft_orders.backoff_base '2s'
pg_set ft_orders.backoff_max '2s'
wait_until "SELECT setting = '2000' FROM pg_settings WHERE name = 'ft_orders.backoff_base'" 10
sleep 1		# the workers reload on their next wake-up
refund_reply_lost look-up "$o6"
r6=$rid
like "$(psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE refund_id = $r6")" \
	'^refund:retry(,refund_lookup:retry)*,refund_lookup:refunded$' "look-up: sent more than gateway_key_ttl ago, so looked up, not sent again"
is "$(( $(gw_ledger refunds) - before ))" "1" "look-up: one refund at the gateway"
is "$(status_of "$o6")" "refunded:800" "look-up: the order is refunded"

# --- a refund given up on (dead letter), then requeued ---------------------------------
o7=$(place ref-7 700)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o7" 20
pg_set ft_orders.max_attempts 1
wait_until "SELECT setting = '1' FROM pg_settings WHERE name = 'ft_orders.max_attempts'" 10
sleep 1		# the workers reload on their next wake-up
gw_faults '{"fail_rate":1,"fail_status":503}'	# an answer: it counts, a lost one would not
r7=$(psql_q "SELECT ft_orders.refund_order($o7)")
wait_until "SELECT count(*) = 1 FROM ft_orders.dead_letters WHERE refund_id = $r7" 20
ok $? "dead letter: the refund was given up on"
is "$(psql_q "SELECT r.status || ' ' || o.status FROM ft_orders.refunds r JOIN ft_orders.orders o USING (order_id) WHERE refund_id = $r7")" \
	"pending paid" "dead letter: the refund stays pending (its outcome is unknown), the order paid"
gw_faults reset
pg_set ft_orders.max_attempts 100
is "$(psql_q "SELECT ft_orders.retry_dead_letter(event_id) FROM ft_orders.dead_letters WHERE refund_id = $r7")" "t" \
	"dead letter: requeued"
settled ; ok $? "dead letter: the requeued refund settled"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $o7")" \
	"paid,paid,refunded" "dead letter: the order went paid, refund requested (paid), refunded: never back to pending"
is "$(status_of "$o7")" "refunded:700" "dead letter: the order is refunded"

# --- totals ------------------------------------------------------------------------------
is "$(gw_ledger refunded_minor)" "$(psql_q "SELECT sum(amount_minor) FROM ft_orders.refunds WHERE status = 'succeeded'")" \
	"the gateway refunded exactly what the table says"
is "$(gw_ledger refunds_refused)" "0" "the gateway refused nothing (no over-refund reached it)"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE refunded_minor > amount_minor")" "0" "no order refunded above its amount"
is "$(psql_q "SELECT orders FROM ft_orders.order_summary WHERE status = 'refunded'")" "5" "order_summary: 5 refunded"
is "$(psql_q "SELECT orders FROM ft_orders.order_summary WHERE status = 'partially_refunded'")" "2" "order_summary: 2 partially_refunded"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox drained"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -E 'ERROR|FATAL' "$PG_LOG" | grep -vcE 'client backend ERROR:  (order [0-9]+ is not paid|invalid value for argument "amount_minor"|idempotency key reused|argument "order_id" must not be null)')" \
	"0" "the only ERRORs in the log are the refused calls of this test"

done_testing
