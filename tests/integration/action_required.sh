#!/bin/bash
# action_required.sh: a payment that needs the customer (3-D Secure) parks
# its order in action_required (docs/reference.md, "Lifecycle"):
# next_action and client_secret in get_order(), not in the NOTIFY payload,
# no polling of the gateway while the customer acts, a look-up after
# ft_orders.action_timeout (or reconcile()) settles it once the customer
# finished.  The fake gateway answers requires_action for the amounts in
# requires_action_amount_minor; POST /ledger/{key}/complete plays the
# customer.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.action_timeout = '1h'" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"requires_action_amount_minor":[4242,4343]}' || bail_out "could not set faults"

key_of() { psql_q "SELECT payment_key FROM ft_orders.orders WHERE order_id = $1"; }
n_attempts() { psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE order_id = $1"; }

# a listener that stays connected while the order is parked (psql prints a
# notification after each of its commands: 60 short sleeps, stopped once seen)
sleeps=()
for _ in $(seq 1 60); do sleeps+=(-c "SELECT pg_sleep(0.5)"); done
psql -XAtq -c "LISTEN ft_orders_events" "${sleeps[@]}" >"$FT_TMP/notify.out" 2>&1 &
LISTENER=$!
sleep 0.5
a=$(psql_q "SELECT order_id FROM ft_orders.place_order('act-a', 'cust', 4242, 'EUR')")
wait_until "SELECT status = 'action_required' FROM ft_orders.orders WHERE order_id = $a" 20
ok $? "the order is action_required"
is "$(psql_q "SELECT (o.next_action->>'type') || ' ' || o.client_secret || ' ' || o.payment_id FROM ft_orders.get_order($a) o")" \
	"redirect_to_url $(psql_q "SELECT payment_id FROM ft_orders.orders WHERE order_id = $a")_secret_fake $(psql_q "SELECT payment_id FROM ft_orders.orders WHERE order_id = $a")" \
	"get_order() carries next_action, client_secret and the payment reference"
for _ in $(seq 1 150); do
	grep -q '"status" : "action_required"' "$FT_TMP/notify.out" && break
	sleep 0.2
done
kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null
like "$(cat "$FT_TMP/notify.out")" "payload \"\\{\"order_id\" : $a, \"status\" : \"action_required\", \"attempts\" : 1\\}\"" \
	"the NOTIFY payload is order_id, status, attempts"
is "$(grep -c 'client_secret\|next_action\|redirect_to_url' "$FT_TMP/notify.out")" "0" \
	"... without next_action or client_secret (LISTEN needs no privilege: get_order() has them)"
is "$(n_attempts "$a")" "1" "one request so far"
is "$(psql_q "SELECT lookup AND next_attempt_at > now() + interval '50 minutes' FROM ft_orders.outbox WHERE order_id = $a")" \
	"t" "no polling: the next request is a look-up after action_timeout (1h)"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE order_id = $a AND status = 'action_required'")" "1" \
	"one action_required event"

# reconcile() looks it up now: the customer has not acted yet
is "$(psql_q "SELECT ft_orders.reconcile('0')")" "1" "reconcile('0') schedules its look-up"
wait_until "SELECT count(*) = 2 FROM ft_orders.payment_attempts WHERE order_id = $a" 20
ok $? "the look-up ran"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $a")" "action_required" "still action_required"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE order_id = $a AND status = 'action_required'")" "1" \
	"no second action_required event for the same wait"

# the customer finishes; the next look-up settles the order
curl -fsS -X POST "$GW_URL/ledger/$(key_of "$a")/complete" >/dev/null
ok $? "the customer completed 3-D Secure at the gateway"
psql_q "SELECT ft_orders.reconcile('0')" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $a" 20
ok $? "the look-up found it succeeded: paid"
is "$(psql_q "SELECT coalesce(next_action::text, '-') || coalesce(client_secret, '-') FROM ft_orders.orders WHERE order_id = $a")" "--" \
	"next_action and client_secret are cleared once paid"
is "$(psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $a")" \
	"charge:action_required,lookup:action_required,lookup:paid" "POST once, then look-ups only"

# action_timeout itself triggers the look-up
pg_set ft_orders.action_timeout '1s'
wait_until "SELECT setting = '1' FROM pg_settings WHERE name = 'ft_orders.action_timeout'" 10
sleep 1		# the workers reload on their next wake-up
b=$(psql_q "SELECT order_id FROM ft_orders.place_order('act-b', 'cust', 4343, 'EUR')")
wait_until "SELECT status = 'action_required' FROM ft_orders.orders WHERE order_id = $b" 20
ok $? "a second order is action_required"
curl -fsS -X POST "$GW_URL/ledger/$(key_of "$b")/complete" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $b" 20
ok $? "after action_timeout a look-up settled it: paid"

is "$(gw_ledger charges)" "2" "ledger: two charges"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox drained"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -cE 'ERROR|FATAL' "$PG_LOG")" "0" "no ERROR or FATAL in the log"

done_testing
