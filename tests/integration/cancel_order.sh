#!/bin/bash
# cancel_order.sh: ft_orders.cancel_order() in every state (see
# docs/reference.md, "Lifecycle").
#
#  never sent          -> canceled at once, outbox event removed, never charged
#  canceled again      -> canceled, nothing written
#  in flight, succeeds -> the cancellation is recorded; the charge succeeds,
#                         the order is refunded automatically (ledger balanced)
#  reply lost          -> recorded; the next request is a look-up (never a
#                         POST), which finds the charge: refunded
#  never reached       -> recorded; the look-up finds nothing: canceled
#  failed (dead letter)-> looked up once more; nothing there: canceled
#  paid / declined     -> 55000

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_start || bail_out "fake gateway did not start"
pg_start "ft_orders.gateway_url = ''" \
	"ft_orders.request_timeout = '4s'" "ft_orders.lease_timeout = '8s'" \
	"ft_orders.backoff_base = '300ms'" "ft_orders.backoff_max = '600ms'" \
	"ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "server did not start"

place() { psql_q "SELECT order_id FROM ft_orders.place_order('$1', 'cust', $2, 'EUR')"; }
key_of() { psql_q "SELECT payment_key FROM ft_orders.orders WHERE order_id = $1"; }
status_of() { psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $1"; }
events_of() { psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $1"; }
requests_of()
{
	psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at, attempt)
	          FROM ft_orders.payment_attempts WHERE order_id = $1"
}
sqlstate_of() { psql -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$1" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | head -1; }
# charges under a key at the gateway (0 when it never saw the key)
gw_charges() { curl -s "$GW_URL/ledger/$1" | jq -r '.charges // 0'; }

# --- never sent (the workers have no gateway URL yet) ----------------------------
n=$(place cancel-never 1000)
is "$(psql_q "SELECT ft_orders.cancel_order($n, 'customer changed their mind')")" "canceled" \
	"never sent: canceled at once"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox WHERE order_id = $n")" "0" "never sent: its outbox event is gone"
is "$(psql_q "SELECT cancel_reason FROM ft_orders.orders WHERE order_id = $n")" "customer changed their mind" \
	"never sent: the reason is kept"
is "$(events_of "$n")" "canceled" "never sent: one order_events row, canceled"
before=$(psql_q "SELECT count(*) || '/' || max(updated_at) FROM ft_orders.order_events, ft_orders.orders WHERE orders.order_id = $n AND order_events.order_id = $n")
is "$(psql_q "SELECT ft_orders.cancel_order($n)")" "canceled" "canceled again: the same status back"
is "$(psql_q "SELECT count(*) || '/' || max(updated_at) FROM ft_orders.order_events, ft_orders.orders WHERE orders.order_id = $n AND order_events.order_id = $n")" \
	"$before" "canceled again: nothing written"

pg_set ft_orders.gateway_url "$GW_URL"
p=$(place cancel-paid 1100)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $p" 30
ok $? "an order placed once the gateway is set is paid"
is "$(curl -s -o /dev/null -w '%{http_code}' "$GW_URL/ledger/$(key_of "$n")")" "404" "never sent: the gateway never saw the canceled order"
is "$(sqlstate_of "SELECT ft_orders.cancel_order($p)")" "55000" "paid: 55000"
like "$(psql -XAtq -c "SELECT ft_orders.cancel_order($p)" 2>&1)" "HINT:  Refund it with ft_orders.refund_order" \
	"paid: the hint says to refund"

# --- in flight, then the charge succeeds -------------------------------------------
gw_faults '{"latency_ms":2500}' || bail_out "could not set faults"
f=$(place cancel-inflight 1200)
wait_until "SELECT lease_until > now() FROM ft_orders.outbox WHERE order_id = $f" 10
ok $? "in flight: a worker sent the charge"
is "$(psql_q "SELECT ft_orders.cancel_order($f, 'too slow')")" "pending" "in flight: the cancellation is recorded, the order still pending"
is "$(psql_q "SELECT cancel_requested_at IS NOT NULL FROM ft_orders.orders WHERE order_id = $f")" "t" \
	"in flight: cancel_requested_at is set"
wait_until "SELECT status = 'refunded' FROM ft_orders.orders WHERE order_id = $f" 30
ok $? "in flight: the charge succeeded and the order was refunded automatically"
gw_faults reset
kf=$(key_of "$f")
is "$(gw_charges "$kf")" "1" "in flight: one charge at the gateway"
is "$(gw_ledger refunds) $(gw_ledger refunded_minor)" "1 1200" "in flight: one refund of the whole amount at the gateway (ledger balanced)"
is "$(psql_q "SELECT status || ':' || amount_minor || ':' || reason FROM ft_orders.refunds WHERE order_id = $f")" \
	"succeeded:1200:canceled: too slow" "in flight: the refund row says why"
is "$(events_of "$f")" "pending,paid,paid,refunded" \
	"in flight: events cancel requested (pending), paid, refund requested (paid), refunded"
is "$(psql_q "SELECT refunded_minor FROM ft_orders.orders WHERE order_id = $f")" "1200" "in flight: refunded_minor = amount"

# --- reply lost: the outcome is unknown ------------------------------------------------
# the gateway charges and holds the reply past request_timeout; it goes
# down meanwhile, so that nothing settles the order before the cancel
gw_faults '{"timeout_rate":1,"hang_ms":6000}' || bail_out "could not set faults"
l=$(place cancel-lost 1300)
wait_until "SELECT lease_until > now() FROM ft_orders.outbox WHERE order_id = $l" 10
ok $? "reply lost: a worker sent the charge"
gw_faults '{"down":true}'
is "$(psql_q "SELECT ft_orders.cancel_order($l)")" "pending" "reply lost: the cancellation is recorded"
wait_until "SELECT count(*) >= 2 FROM ft_orders.payment_attempts WHERE order_id = $l" 15
ok $? "reply lost: the charge timed out, the look-up failed while the gateway was down"
gw_faults reset
wait_until "SELECT status = 'refunded' FROM ft_orders.orders WHERE order_id = $l" 30
ok $? "reply lost: the look-up found the charge and it was refunded"
kl=$(key_of "$l")
is "$(gw_charges "$kl")" "1" "reply lost: one charge"
like "$(requests_of "$l")" '^charge:retry(,lookup:retry)+,lookup:paid,refund:refunded$' "reply lost: after the cancel, look-ups only (no POST), then the refund"

# --- never reached: the look-up finds nothing -------------------------------------------
gw_faults '{"down":true}' || bail_out "could not set faults"
u=$(place cancel-unknown 1400)
wait_until "SELECT count(*) >= 1 FROM ft_orders.payment_attempts WHERE order_id = $u" 15
ok $? "never reached: the gateway is down, the order retrying"
is "$(psql_q "SELECT ft_orders.cancel_order($u)")" "pending" "never reached: the cancellation is recorded"
gw_faults reset
wait_until "SELECT status = 'canceled' FROM ft_orders.orders WHERE order_id = $u" 30
ok $? "never reached: the look-up found nothing, the order is canceled"
is "$(gw_charges "$(key_of "$u")")" "0" "never reached: never charged"
like "$(requests_of "$u")" '^charge:retry(,charge:retry)*(,lookup:retry)*,lookup:canceled$' "never reached: look-ups only after the cancel, no POST"
is "$(psql_q "SELECT count(*) FROM ft_orders.refunds WHERE order_id = $u")" "0" "never reached: nothing to refund"

# --- failed with a dead letter -----------------------------------------------------------
pg_set ft_orders.max_attempts 1
wait_until "SELECT setting = '1' FROM pg_settings WHERE name = 'ft_orders.max_attempts'" 10
sleep 1		# the workers reload on their next wake-up
gw_faults '{"fail_rate":1,"fail_status":503}' || bail_out "could not set faults"	# a 503 counts, no reply would not
d=$(place cancel-dead 1500)
wait_until "SELECT status = 'failed' FROM ft_orders.orders WHERE order_id = $d" 15
ok $? "failed: the order was given up on"
gw_faults reset
is "$(psql_q "SELECT ft_orders.cancel_order($d)")" "pending" "failed: it is looked up once more"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters WHERE order_id = $d")" "0" "failed: its dead letter left the queue"
wait_until "SELECT status = 'canceled' FROM ft_orders.orders WHERE order_id = $d" 30
ok $? "failed: nothing at the gateway, canceled"
is "$(gw_charges "$(key_of "$d")")" "0" "failed: never charged"

# --- declined ------------------------------------------------------------------------------
gw_faults '{"decline_amount_minor":[1600]}' || bail_out "could not set faults"
x=$(place cancel-declined 1600)
wait_until "SELECT status = 'declined' FROM ft_orders.orders WHERE order_id = $x" 15
ok $? "declined: the gateway declined the order"
is "$(sqlstate_of "SELECT ft_orders.cancel_order($x)")" "55000" "declined: 55000"
is "$(sqlstate_of "SELECT ft_orders.cancel_order(NULL)")" "22004" "NULL order_id: 22004"
is "$(sqlstate_of "SELECT ft_orders.cancel_order(-1)")" "22023" "no such order: 22023"

is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"
is "$(gw_ledger charges)" "3" "ledger: 3 charges (the paid order, in flight, lost reply)"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox drained"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -E 'ERROR|FATAL' "$PG_LOG" | grep -vcE 'client backend ERROR:  (order [0-9]+ (is already paid|was declined)|argument "order_id" must not be null|invalid value for argument "order_id")')" \
	"0" "the only ERRORs in the log are the refused calls of this test"

done_testing
