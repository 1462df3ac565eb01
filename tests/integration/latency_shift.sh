#!/bin/bash
# latency_shift.sh: the adaptive in-flight limit follows the gateway's
# latency (docs/design.md, "Adaptive concurrency"; issue 15).
#
# Two workers, max_in_flight 16, request_timeout 3s.  With the gateway
# answering in 20 ms the limit stays at max_in_flight; when its latency
# rises to 500 ms the limit goes down; every order is paid once and no
# request times out or fails.  Then, with max_in_flight_ceiling 64, a
# gateway slow but steady at 200 ms gets more than max_in_flight requests
# per worker.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/limits.sh"

N=200
MAX=16

gw_pg_start "ft_orders.workers = 2" \
	"ft_orders.max_in_flight = $MAX" "ft_orders.request_timeout = '3s'" \
	"ft_orders.lease_timeout = '10s'" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "workers did not start"
is "$(psql_q "SHOW ft_orders.adaptive_concurrency")" "on" "adaptive_concurrency is on by default"


gw_faults '{"latency_ms":20}' || bail_out "could not set faults"
place_orders fast "$N"
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "20 ms: all $N orders paid"
is "$(psql_q "SELECT concurrency_limit FROM ft_orders.gateway_status")" "$MAX" \
	"20 ms: the limit stays at max_in_flight"

gw_faults '{"latency_ms":500}' || bail_out "could not set faults"
place_orders slow "$N"
read -r min_limit _ < <(limit_range $((2 * N)))
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")" "$((2 * N))" "500 ms: all $N orders paid"
cmp_ok "$min_limit" -lt "$MAX" "500 ms: the limit went down (to $min_limit)"
cmp_ok "$(psql_q "SELECT latency_p99_ms::int FROM ft_orders.gateway_status")" -ge 400 "the gateway did slow down (p99 of the last 1024 requests)"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome <> 'paid'")" "0" \
	"no request timed out or failed"
is "$(gw_ledger charges) $(gw_ledger duplicates) $(gw_ledger requests)" "$((2 * N)) 0 $((2 * N))" \
	"one request and one charge per order, no duplicates"

# --- slow but healthy: above max_in_flight, up to the ceiling -------------------------
pg_set ft_orders.max_in_flight_ceiling 64
gw_faults '{"latency_ms":200}' || bail_out "could not set faults"
wait_until "SELECT setting = '64' FROM pg_settings WHERE name = 'ft_orders.max_in_flight_ceiling'" 10
sleep 1		# the idle workers reload on their next wake-up
place_orders steady "$((2 * N))"
read -r _ max_limit < <(limit_range $((4 * N)))
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")" "$((4 * N))" "200 ms: all $((2 * N)) orders paid"
cmp_ok "$max_limit" -gt "$MAX" "200 ms with max_in_flight_ceiling 64: the limit grew above max_in_flight (to $max_limit)"
cmp_ok "$max_limit" -le 64 "... and stayed at or under the ceiling"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome <> 'paid'")" "0" \
	"200 ms: no request timed out or failed"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$((4 * N)) 0" "200 ms: one charge per order, no duplicates"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
