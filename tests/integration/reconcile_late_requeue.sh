#!/bin/bash
# reconcile_late_requeue.sh: a dead letter requeued after the gateway forgot
# its Idempotency-Key is looked up, not charged again (see
# docs/reference.md, "Reconciliation").
#
# A, B. The fake gateway charges and spoils the reply (garbage_rate 1: a
#  200 whose body is not JSON, so the outcome is unknown; max_attempts 1):
#  the order is never dead-lettered for it but looked up at once (GET
#  /payments/{key}) and settled from it: one charge, paid, whether the key
#  is trusted for 1 s (A) or 30 days (B) (docs/reference.md, "Guarantees");
#  C. a look-up that finds nothing (the first request was answered 503 and
#     charged nothing) leads to exactly one POST;
#  D. reconcile() schedules a look-up of an order retrying after a lost
#     reply, and the look-up settles it.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = 1" "ft_orders.circuit_failure_threshold = 1000" \
	"ft_orders.gateway_key_ttl = '1s'" ||
	bail_out "the fake gateway or the server did not start"

is "$(psql_q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.5" "version 1.5 is installed"

place() { psql_q "SELECT order_id FROM ft_orders.place_order('$1', 'cust', $2, 'EUR')"; }
key_of() { psql_q "SELECT payment_key FROM ft_orders.orders WHERE order_id = $1"; }
status_of() { psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $1"; }
gw_key() { curl -fsS "$GW_URL/ledger/$1" | jq -r ".$2"; }
requests_of()
{
	psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at, attempt)
	          FROM ft_orders.payment_attempts WHERE order_id = $1"
}
requeue() { psql_q "SELECT ft_orders.retry_dead_letter(event_id) FROM ft_orders.dead_letters WHERE order_id = $1"; }

# --- A, B: a spoiled 2xx is never given up: looked up, whatever the key's age --
for part in A B; do
	if [ "$part" = B ]; then
		pg_set ft_orders.gateway_key_ttl '30d'
		wait_until "SELECT setting = '2592000' FROM pg_settings WHERE name = 'ft_orders.gateway_key_ttl'" 10
		sleep 1		# the workers reload on their next wake-up
	fi
	gw_faults '{"garbage_rate":1,"key_ttl_s":1}' || bail_out "could not set faults"
	o=$(place "rec-$part" "$([ "$part" = A ] && echo 5000 || echo 6000)")
	wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o" 30
	ok $? "$part: the charge's reply was spoiled; the order is looked up and paid, not dead-lettered"
	gw_faults reset
	k=$(key_of "$o")
	is "$(gw_key "$k" charges) $(gw_key "$k" requests)" "1 1" "$part: one charge, no second POST"
	is "$(gw_ledger duplicate_keys)" "0" "$part: no key charged twice"
	is "$(psql_q "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o")" "$(gw_key "$k" payment_id)" \
		"$part: the order carries the gateway's payment id"
	is "$(requests_of "$o")" "charge:retry,lookup:paid" "$part: the spoiled reply, then a look-up that found it paid"
	is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters WHERE order_id = $o")" "0" "$part: no dead letter"
done
cmp_ok "$(gw_ledger lookups)" -ge 2 "the gateway saw the look-ups"

# --- C: a look-up that finds nothing sends the charge once ------------------------
pg_set ft_orders.gateway_key_ttl '1s'
wait_until "SELECT setting = '1' FROM pg_settings WHERE name = 'ft_orders.gateway_key_ttl'" 10
sleep 1
gw_faults '{"fail_rate":1,"fail_status":503}' || bail_out "could not set faults"
c=$(place rec-c 7000)
wait_until "SELECT status = 'failed' FROM ft_orders.orders WHERE order_id = $c" 30
ok $? "C: the gateway answered 503, the order dead-lettered"
sleep 1.2
gw_faults reset
kc=$(key_of "$c")
is "$(curl -s -o /dev/null -w '%{http_code}' "$GW_URL/payments/$kc")" "404" "C: the gateway has no payment under the key"
requeue "$c" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $c" 30
ok $? "C: the order is paid"
is "$(requests_of "$c")" "charge:failed,lookup:unknown,charge:paid" "C: look-up said unknown, then one POST"
is "$(gw_key "$kc" charges)" "1" "C: one charge"

# --- D: reconcile() on demand ----------------------------------------------------
pg_set ft_orders.gateway_key_ttl '30d'
pg_set ft_orders.max_attempts 10
pg_set ft_orders.backoff_base '10min'
pg_set ft_orders.backoff_max '10min'
wait_until "SELECT setting = '600000' FROM pg_settings WHERE name = 'ft_orders.backoff_base'" 10
sleep 1
gw_faults '{"timeout_rate":1,"hang_ms":3000}' || bail_out "could not set faults"
d=$(place rec-d 8000)
wait_until "SELECT count(*) = 1 FROM ft_orders.payment_attempts WHERE order_id = $d" 30
ok $? "D: the charge's reply was lost; the order waits for its retry"
gw_faults reset
is "$(status_of "$d")" "pending" "D: the order is pending"
is "$(psql_q "SELECT ft_orders.reconcile('0')")" "1" "D: reconcile('0') schedules one look-up"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $d" 30
ok $? "D: the look-up settled the order"
is "$(requests_of "$d")" "charge:retry,lookup:paid" "D: a lost reply, then a look-up"
is "$(gw_key "$(key_of "$d")" charges)" "1" "D: one charge"
is "$(psql_q "SELECT ft_orders.reconcile()")" "0" "D: nothing left to reconcile"

is "$(gw_ledger charges)" "4" "ledger: 4 charges for 4 orders"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox drained"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -cE 'ERROR|FATAL' "$PG_LOG")" "0" "no ERROR or FATAL in the log"

done_testing
