#!/bin/bash
# outage_drill.sh: an outage of any length never fails an order
# (docs/reference.md, "Guarantees" 4 and "Wire protocol").
#
# Accelerated: max_attempts 3, backoff 20-400 ms, circuit_open_time 200 ms,
# so one attempt budget (max_attempts x backoff_max + the probes) is about
# 2 s and each outage below lasts many of them.
#
#  1. the gateway stopped (connection refused) with 1, then 10, then 1,000
#     orders pending: they stay pending however often they are tried, the
#     circuit opens; the gateway restarted on the same port: every order
#     is paid, once (its ledger), none failed, no dead letter;
#  2. the gateway refuses the token (401): the same, until a reload gives
#     the right token;
#  3. what still ends an order at once: a decline and a 422, even with
#     max_attempts left; and a gateway that answers other orders but keeps
#     failing this one (5xx while the circuit stays closed) gives it up
#     after max_attempts, with a WARNING naming the order and the reason.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

MAX_ATTEMPTS=3
OUTAGE_S=${FT_OUTAGE_S:-12}

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '20ms'" "ft_orders.backoff_max = '400ms'" \
	"ft_orders.circuit_open_time = '200ms'" "ft_orders.max_attempts = $MAX_ATTEMPTS" ||
	bail_out "the fake gateway or the server did not start"

# the gateway again, on the port the server knows
gw_restart()
{
	local portfile=$FT_TMP/gateway.port
	rm -f "$portfile"
	"$FT_GATEWAY_BIN" --listen 127.0.0.1 --port "$GW_PORT" --port-file "$portfile" "$@" \
		>>"$FT_TMP/gateway.log" 2>&1 &
	GW_PID=$!
	FT_PIDS+=("$GW_PID")
	port_from_file "$portfile" "$FT_TMP/gateway.log" >/dev/null
}

unsettled() { psql_q "SELECT count(*) FROM ft_orders.orders WHERE status NOT IN ('paid', 'pending')"; }

# --- 1. the gateway stopped: connection refused -------------------------------------
# outage PREFIX N: N orders placed while the gateway is stopped, OUTAGE_S later it is back
outage()
{
	local prefix=$1 n=$2 tries first_id
	gw_stop
	first_id=$(psql_q "SELECT coalesce(max(order_id), 0) + 1 FROM ft_orders.orders")
	place_orders "$prefix" "$n"
	ok $? "$prefix: placed $n orders while the gateway is stopped"
	# a gateway never seen answering is down after 40 failures in a row: a
	# single order backed off by up to 400 ms (200 on average) takes 8 to
	# 9 s to fail them even on an idle machine
	wait_until "SELECT circuit <> 'closed' FROM ft_orders.gateway_status" 30
	ok $? "$prefix: the circuit opens"
	sleep "$OUTAGE_S"
	tries=$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE order_id >= $first_id")
	cmp_ok "$tries" -ge $((3 * MAX_ATTEMPTS)) \
		"$prefix: tried $tries times in $OUTAGE_S s, over three times max_attempts"
	is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE order_id >= $first_id AND status = 'pending'")" \
		"$n" "$prefix: after $OUTAGE_S s every order is still pending"
	is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "$prefix: no dead letter"

	gw_restart || bail_out "the fake gateway did not come back"
	wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 60
	ok $? "$prefix: once the gateway is back every order is paid"
	is "$(gw_ledger charges) $(gw_ledger duplicates)" "$n 0" "$prefix: ledger: $n charges, no duplicate"
	is "$(unsettled)" "0" "$prefix: nothing failed"
}

outage one 1
is "$(psql_q "SELECT attempts > $MAX_ATTEMPTS FROM ft_orders.orders WHERE idempotency_key = 'one-1'")" "t" \
	"one: its attempts ($(psql_q "SELECT attempts FROM ft_orders.orders WHERE idempotency_key = 'one-1'")) went past max_attempts while the gateway was stopped"
outage ten 10
outage thousand 1000

# --- 2. the gateway refuses the token ---------------------------------------------
gw_faults '{"require_token":"right-token"}' || bail_out "could not set faults"
pg_set ft_orders.gateway_token "wrong-token"
before=$(gw_ledger charges)
place_orders token 10
wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE http_status = 401" 10
ok $? "token: the gateway answers 401"
sleep "$OUTAGE_S"
cmp_ok "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE http_status = 401")" -ge $((3 * MAX_ATTEMPTS)) \
	"token: refused over three times max_attempts"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "10" \
	"token: after $OUTAGE_S s every order is still pending"
like "$(grep -A2 'refused the credentials' "$PG_LOG" | grep HINT | head -1)" 'stay pending' \
	"token: the WARNING's hint says the orders stay pending"
pg_set ft_orders.gateway_token "right-token"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "token: after the reload every order is paid"
is "$(( $(gw_ledger charges) - before )) $(gw_ledger duplicates)" "10 0" "token: ledger: 10 charges, no duplicate"
is "$(unsettled) $(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0 0" "token: nothing failed, no dead letter"

# --- 3. what still ends an order -----------------------------------------------------
gw_faults reset && gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422]}' ||
	bail_out "could not set faults"
psql_q "SELECT ft_orders.place_order('decline', 'cust', 402, 'EUR'), ft_orders.place_order('reject', 'cust', 422, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 2 FROM ft_orders.orders WHERE idempotency_key IN ('decline', 'reject') AND status <> 'pending'" 10
ok $? "own reasons: the decline and the 422 are settled"
is "$(psql_q "SELECT string_agg(idempotency_key || ':' || status || ':' || attempts, ' ' ORDER BY idempotency_key)
              FROM ft_orders.orders WHERE idempotency_key IN ('decline', 'reject')")" \
	"decline:declined:1 reject:failed:1" "own reasons: each at its first attempt"
like "$(grep -A1 'WARNING: .*order [0-9]* failed' "$PG_LOG" | head -2)" 'HTTP 422' \
	"own reasons: the 422 is a WARNING naming the order and the reason"

# a gateway that answers the others (one order in two is paid) and fails
# this order: the circuit stays closed, and its attempts count
gw_faults reset && gw_faults '{"fail_rate":0.5,"fail_status":500}' || bail_out "could not set faults"
# retired in 1.5 (the circuit judges successes and keeps a gateway that pays
# half of the orders in use anyway): still accepted, no effect
pg_set ft_orders.circuit_failure_rate 1
wait_until "SELECT setting = '1' FROM pg_settings WHERE name = 'ft_orders.circuit_failure_rate'" 10
sleep 0.5
place_orders flaky 200
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 60
ok $? "flaky: every order settled"
gave_up=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'flaky-%' AND status = 'failed'")
cmp_ok "$gave_up" -gt 0 "flaky: orders that got $MAX_ATTEMPTS HTTP 500s while others were paid are given up ($gave_up)"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters WHERE attempts = $MAX_ATTEMPTS
                 AND last_error LIKE 'gave up after $MAX_ATTEMPTS attempts: HTTP 500%'")" "$gave_up" \
	"flaky: each is a dead letter saying why"
like "$(grep 'WARNING: .*gave up after' "$PG_LOG" | head -1)" "order [0-9]+ failed: gave up after $MAX_ATTEMPTS attempts" \
	"flaky: the give-up is a WARNING naming the order"
is "$(grep -A2 'gave up after' "$PG_LOG" | grep -c 'will be retried')" "0" "flaky: no give-up says it will be retried"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -cE ' (ERROR|FATAL): ' "$PG_LOG")" "0" "gateway trouble is never an ERROR"

done_testing
