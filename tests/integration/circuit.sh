#!/bin/bash
# circuit.sh: the circuit breaker stops all traffic to a failing gateway.
#
# A gateway that answers every request 503 from the start opens it after
# 40 failed requests in a row (docs/reference.md, "Gateway limits"):
# gateway_status.circuit = 'open', the workers show 'circuit_open', and no
# request reaches the gateway while it is open.  After circuit_open_time
# the half-open probes (4) go out; while the gateway still fails the
# circuit opens again, once it answers the circuit closes and every order
# is paid.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=20

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.circuit_failure_threshold = 5" "ft_orders.circuit_open_time = '3s'" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"fail_rate":1.0,"fail_status":503}' || bail_out "could not set faults"

place_orders cb $N
ok $? "placed $N orders against a failing gateway"

wait_until "SELECT circuit = 'open' FROM ft_orders.gateway_status" 10
ok $? "gateway_status.circuit becomes 'open'"
o1_us=$(psql_q "SELECT (extract(epoch FROM opened_at) * 1000000)::bigint FROM ft_orders.gateway_status")
cmp_ok "$(psql_q "SELECT consecutive_failures FROM ft_orders.gateway_status")" -ge 5 \
	"consecutive_failures reached the threshold"
is "$(psql_q "SELECT opened_at IS NOT NULL FROM ft_orders.gateway_status")" "t" "opened_at is set"
wait_until "SELECT count(*) > 0 FROM ft_orders.worker_status WHERE state = 'circuit_open'" 3
ok $? "workers show state 'circuit_open'"
# by arrival time at the gateway (a loaded machine may take seconds for
# the checks above): none from 0.3 s after it opened (requests sent just
# before have landed) to just before circuit_open_time
LOG=$(dirname "$0")/harness/gateway_log.py
wait_until "SELECT now() > opened_at + interval '3 s' FROM ft_orders.gateway_status" 10 >/dev/null
is "$("$LOG" "$GW_URL" between $((o1_us + 300000)) $((o1_us + 2900000)))" "0" \
	"no request reached the gateway while the circuit was open"
like "$(grep 'circuit opened after' "$PG_LOG")" 'WARNING:  payment gateway circuit opened after 40 failed requests in a row: the gateway is down' \
	"the opening is logged"

# the probes after 3 s fail: the circuit opens again; the next round
# comes 3 s after that, so the first round is what arrived from just
# before circuit_open_time to 2.9 s after it
wait_until "SELECT now() > '$(psql_q "SELECT to_timestamp($o1_us / 1000000.0)")'::timestamptz + interval '6 s'" 15 >/dev/null
probes=$("$LOG" "$GW_URL" between $((o1_us + 2900000)) $((o1_us + 5900000)))
is "$probes" "4" "half-open lets the 4 probes through, no more"
like "$(grep -c 'circuit opened again' "$PG_LOG")" '^[1-9]' "a failed probe opens the circuit again"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status <> 'pending'")" "0" \
	"orders stay pending while the circuit is open"

gw_faults reset
wait_until "SELECT circuit = 'closed' FROM ft_orders.gateway_status" 10
ok $? "a successful probe closes the circuit"
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 20
ok $? "all orders are paid"
is "$(gw_ledger charges)" "$N" "ledger: one charge per order"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
like "$(grep 'circuit closed' "$PG_LOG")" 'LOG:  payment gateway circuit closed' "the closing is logged"
wait_until "SELECT count(*) = 0 FROM ft_orders.worker_status WHERE state = 'circuit_open'" 5
ok $? "no worker is left in state 'circuit_open'"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
