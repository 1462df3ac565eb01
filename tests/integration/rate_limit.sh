#!/bin/bash
# rate_limit.sh: the payment workers keep to the gateway's rate
# (docs/reference.md, "Gateway limits"; issue 15).
#
# The fake gateway allows 50 requests/s (token bucket, burst 50) and
# answers 429 with Retry-After beyond that.  Two payment workers:
#  1. ft_orders.rate_limit = 40 (burst 40): no 1-second interval of the
#     gateway's request log holds more than rate + burst requests (+ 50 ms
#     of send jitter), and
#     the gateway never answers 429; gateway_status and metrics() show
#     the limit and the waits;
#  2. no rate_limit, adaptive_concurrency on: after the first 3 seconds
#     fewer than 10 % of the requests get 429 and the orders are paid at
#     80 % or more of the gateway's 50/s (counted in the gateway's logs);
#     the concurrency limit went down from max_in_flight.
# Every order is paid once.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/limits.sh"

LOG=$(dirname "$0")/harness/gateway_log.py
GW_RATE=50
RATE=40
N1=200
N2=400

gw_pg_start "ft_orders.workers = 2" \
	"ft_orders.max_in_flight = 32" "ft_orders.max_attempts = 100" \
	"ft_orders.backoff_base = '100ms'" "ft_orders.backoff_max = '2s'" \
	"ft_orders.rate_limit = $RATE" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "workers did not start"
gw_faults "{\"rate_limit_per_s\":$GW_RATE}" || bail_out "could not set faults"


# --- settings: bad values are refused with 22023, nothing changes ---------------------
for bad in "rate_limit = -1" "rate_limit_burst = -5" "circuit_failure_rate = 1.5" "circuit_failure_rate = 0"; do
	err=$(psql -XAtq -v VERBOSITY=verbose -c "ALTER SYSTEM SET ft_orders.$bad" 2>&1)
	like "$err" 'ERROR:  22023: .* is outside the valid range' "ALTER SYSTEM SET ft_orders.$bad: 22023"
done
is "$(psql_q "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'")" "0" \
	"... and postgresql.auto.conf stays empty"

# --- 1. rate_limit 40/s -------------------------------------------------------------
is "$(psql_q "SELECT rate_limit || ' ' || throttled FROM ft_orders.gateway_status")" "$RATE 0" \
	"gateway_status shows rate_limit $RATE, nothing throttled yet"
place_orders rl "$N1"
wait_until "SELECT count(*) = $N1 FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "rate_limit: all $N1 orders paid"
# the token bucket lets at most burst + rate requests leave in any second;
# they arrive at the gateway after their claim's commit, so a second of
# arrivals may hold what was granted in a little more: 50 ms of that
# jitter allowed (rate / 20)
maxw=$("$LOG" "$GW_URL" max_window 1)
cmp_ok "$maxw" -le $((RATE + RATE + RATE / 20)) "rate_limit: at most rate + burst requests in any 1 s ($maxw)"
cmp_ok "$maxw" -ge $((RATE / 2)) "rate_limit: the limit was reached (a busy second had $maxw)"
is "$(gw_ledger rate_limited)" "0" "rate_limit: the gateway never answered 429"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$N1 0" "rate_limit: one charge per order, no duplicates"
cmp_ok "$(psql_q "SELECT throttled FROM ft_orders.gateway_status")" -gt 0 \
	"rate_limit: gateway_status.throttled counts the waits"
m=$(psql_q "SELECT ft_orders.metrics()")
like "$(grep '^ft_orders_gateway_rate_limit ' <<<"$m")" "^ft_orders_gateway_rate_limit $RATE\$" "metrics: ft_orders_gateway_rate_limit"
like "$(grep '^ft_orders_gateway_throttled_total ' <<<"$m")" '^ft_orders_gateway_throttled_total [1-9][0-9]*$' \
	"metrics: ft_orders_gateway_throttled_total"
like "$(grep '^ft_orders_gateway_concurrency_limit ' <<<"$m")" '^ft_orders_gateway_concurrency_limit 32$' \
	"metrics: ft_orders_gateway_concurrency_limit is max_in_flight while the gateway keeps up"
like "$(grep -c '^ft_orders_gateway_\(failure_rate\|paused_until_timestamp_seconds\) ' <<<"$m")" '^2$' \
	"metrics: ft_orders_gateway_failure_rate and ft_orders_gateway_paused_until_timestamp_seconds"

# --- 2. no rate_limit, adaptive concurrency -------------------------------------------
pg_set ft_orders.rate_limit 0
sleep 1
curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
# the gateway's bucket starts full again
gw_faults '{"rate_limit_per_s":0}' && gw_faults "{\"rate_limit_per_s\":$GW_RATE}" || bail_out "could not set faults"
place_orders ad "$N2"
read -r min_limit _ < <(limit_range $((N1 + N2)))
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")" "$((N1 + N2))" "adaptive: all $N2 orders paid"
cmp_ok "$min_limit" -lt 32 "adaptive: the concurrency limit went down (to $min_limit)"
read -r n limited okn secs < <("$LOG" "$GW_URL" steady 3)
diag "after the first 3 s: $n requests, $limited answered 429, $okn accepted in $secs s"
total429=$(gw_ledger rate_limited)
diag "429s in all: $total429 of $(gw_ledger requests) requests"
cmp_ok "$((limited * 100))" -lt "$((n * 10))" "adaptive: under 10 % of the requests got 429 after the first 3 s ($limited of $n)"
goodput_x100=$(python3 -c "print(int(100 * $okn / $secs) if $secs > 0 else 0)")
cmp_ok "$goodput_x100" -ge $((GW_RATE * 80)) \
	"adaptive: accepted requests at >= 80 % of ${GW_RATE}/s ($((goodput_x100 / 100)).$((goodput_x100 % 100))/s)"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$N2 0" "adaptive: one charge per order, no duplicates"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "nothing dead-lettered"
is "$(grep -c 'circuit opened' "$PG_LOG")" "0" "429s never open the circuit"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
