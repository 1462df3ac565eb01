#!/bin/bash
# flaky_gateway.sh: a gateway that fails part of its requests keeps being
# used; one that is down opens the circuit (docs/reference.md, "Gateway
# limits"; issue 15).
#
# One payment worker with the settings of the issue's report (circuit
# defaults: failure_threshold 5, failure_rate 0.5; request_timeout 1s,
# backoff 100-500 ms, max_attempts 40), 200 orders per phase:
#  1. 25 % of the requests answered 500, 10 % of the replies lost;
#  2. 50 % of the replies garbage, 10 % lost (the issue's failing case);
#     in both: every order paid, once, and the circuit never opens;
#  3. the gateway down (every connection closed without a reply): the
#     circuit opens, no request reaches the gateway while it is open but
#     the half-open probe, and once the gateway is back every order is
#     paid, once.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=200
OPEN_MS=2000

gw_pg_start "ft_orders.workers = 1" \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '100ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.max_attempts = 40" "ft_orders.circuit_open_time = '${OPEN_MS}ms'" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 1 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "the worker did not start"
is "$(psql_q "SHOW ft_orders.circuit_failure_rate")" "0.5" "circuit_failure_rate defaults to 0.5 (50 %)"

paid() { psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE '$1-%' AND status = 'paid'"; }

charges=0
for phase in 'fail500:{"fail_rate":0.25,"fail_status":500,"timeout_rate":0.1,"hang_ms":5000}' \
	'garbage:{"garbage_rate":0.5,"timeout_rate":0.1,"hang_ms":5000}'; do
	name=${phase%%:*}
	gw_faults reset
	gw_faults "${phase#*:}" || bail_out "could not set faults"
	r0=$(gw_ledger requests)
	place_orders "$name" "$N"
	wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE idempotency_key LIKE '$name-%' AND status = 'paid'" 60
	ok $? "$name: all $N orders paid ($(paid "$name") paid)"
	charges=$((charges + N))
	is "$(gw_ledger charges) $(gw_ledger duplicates)" "$charges 0" "$name: one charge per order, no duplicates"
	is "$(grep -c 'circuit opened' "$PG_LOG")" "0" "$name: the circuit never opened"
	is "$(psql_q "SELECT circuit FROM ft_orders.gateway_status")" "closed" "$name: the circuit is closed"
	failed=$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts a JOIN ft_orders.orders o USING (order_id)
	                 WHERE o.idempotency_key LIKE '$name-%' AND a.outcome = 'retry'")
	cmp_ok "$failed" -ge $((N / 5)) "$name: the gateway did fail ($failed failed attempts, $(($(gw_ledger requests) - r0)) requests)"
	is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "$name: nothing dead-lettered"
done
like "$(psql_q "SELECT failure_rate FROM ft_orders.gateway_status")" '^(0(\.[0-9]+)?(e-[0-9]+)?)?$' \
	"gateway_status.failure_rate is a share (or NULL once the window is empty)"

# --- 3. down -------------------------------------------------------------------------
gw_faults reset
gw_faults '{"down":true}' || bail_out "could not set faults"
place_orders down "$N"
wait_until "SELECT circuit = 'open' FROM ft_orders.gateway_status" 20
ok $? "down: the circuit opens"
like "$(grep 'circuit opened' "$PG_LOG")" 'cannot be reached' "down: logged as unreachable"
o1=$(psql_q "SELECT opened_at FROM ft_orders.gateway_status")
sleep 0.3					# replies to requests sent before it opened
r1=$(gw_ledger requests)
wait_until "SELECT opened_at > '$o1'::timestamptz FROM ft_orders.gateway_status" 15
ok $? "down: the failed probe opens the circuit again"
r2=$(gw_ledger requests)
is "$((r2 - r1))" "1" "down: while open only the probe reached the gateway"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'down-%' AND status <> 'pending'")" "0" \
	"down: the orders stay pending"
gw_faults reset
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE idempotency_key LIKE 'down-%' AND status = 'paid'" 60
ok $? "down: once the gateway is back every order is paid"
charges=$((charges + N))
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$charges 0" "down: one charge per order, no duplicates"
is "$(psql_q "SELECT circuit FROM ft_orders.gateway_status")" "closed" "down: the circuit closed again"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
