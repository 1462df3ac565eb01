#!/bin/bash
# metrics.sh: ft_orders.metrics() under real workers and the fake gateway.
#
# Every scrape is validated by the Prometheus client's own parser
# (tests/lib/prom_check.py: HELP/TYPE per family, _total counters,
# cumulative histogram).  Asserts that the figures move with the orders:
# outcome counters by worker and outcome, requests and the latency
# histogram grow by the number of requests, orders by status and dead
# letters match the tables, the outbox gauge shows the backlog while the
# gateway is down and the circuit gauge shows it open, both drop back when
# it returns; counters never go down between scrapes; reset_stats() zeroes
# the shared-memory figures but not the table ones; no secret leaks.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

PROM_CHECK="$FT_ROOT/tests/lib/prom_check.py"
TOKEN=tok_metrics_secret_4711

[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null ||
	bail_out "python3-prometheus-client is missing (tests/setup/deps.sh installs it)"

gw_pg_start "ft_orders.gateway_token = '$TOKEN'" \
	"ft_orders.request_timeout = '5s'" "ft_orders.lease_timeout = '10s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.circuit_failure_threshold = 3" "ft_orders.circuit_open_time = '1s'" ||
	bail_out "the fake gateway or the server did not start"

# scrape NAME: metrics() -> $FT_TMP/NAME.raw, validated samples -> NAME.prom
scrape()
{
	psql_q "SELECT ft_orders.metrics()" >"$FT_TMP/$1.raw" || return 1
	/usr/bin/python3 "$PROM_CHECK" <"$FT_TMP/$1.raw" >"$FT_TMP/$1.prom" 2>"$FT_TMP/$1.err"
	local rc=$?
	[ $rc -eq 0 ] || cat "$FT_TMP/$1.err" >&2
	return $rc
}
# val NAME SERIES: the value of one series (exact name{labels}) in a scrape
val()
{
	awk -v s="$2" '$1 == s { print $2 }' "$FT_TMP/$1.prom"
}
# total NAME REGEX: sum of the series whose name{labels} matches REGEX
total()
{
	awk -v re="$2" '$1 ~ re { t += $2 } END { printf "%d\n", t }' "$FT_TMP/$1.prom"
}
# metric_is SERIES VALUE: SQL that is true when the scrape shows it
metric_is()
{
	echo "SELECT position(E'\n$1 $2\n' IN E'\n' || ft_orders.metrics()) > 0"
}

wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20
ok $? "two payment workers are running"

scrape s0
ok $? "first scrape parses (Prometheus client parser and format rules)"
for fam in "ft_orders_worker_processed_total counter" "ft_orders_worker_outcomes_total counter" \
	"ft_orders_worker_state gauge" "ft_orders_worker_in_flight gauge" \
	"ft_orders_gateway_requests_total counter" "ft_orders_gateway_errors_total counter" \
	"ft_orders_gateway_circuit_state gauge" "ft_orders_gateway_consecutive_failures gauge" \
	"ft_orders_gateway_request_duration_seconds histogram" "ft_orders_outbox_events gauge" \
	"ft_orders_outbox_oldest_event_age_seconds gauge" "ft_orders_dead_letters gauge" \
	"ft_orders_orders gauge"; do
	grep -qx "# TYPE $fam" "$FT_TMP/s0.raw"
	ok $? "TYPE line: $fam"
done
is "$(total s0 '^ft_orders_worker_state[{].*worker="1"')" "1" "worker 1 is in exactly one state"
is "$(total s0 '^ft_orders_worker_state[{].*worker="2"')" "1" "worker 2 is in exactly one state"
is "$(grep -c '^ft_orders_gateway_request_duration_seconds_bucket{le=' "$FT_TMP/s0.prom")" "12" \
	"histogram has 11 bounds and +Inf"

# --- orders flow: 20 paid, 3 declined (402), 2 failed (422) ------------------
gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422]}' || bail_out "could not set faults"
psql_q "SELECT count(*) FROM (SELECT 'ok-' || g AS k, 100 + g AS amount FROM generate_series(1, 20) g
                              UNION ALL SELECT 'dec-' || g, 402 FROM generate_series(1, 3) g
                              UNION ALL SELECT 'rej-' || g, 422 FROM generate_series(1, 2) g) v,
        LATERAL ft_orders.place_order(v.k, 'cust', v.amount, 'EUR')" >/dev/null
ok $? "placed 25 orders"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "every order is settled"
# the shared-memory counters are bumped right after the commit: poll
wait_until "$(metric_is ft_orders_gateway_request_duration_seconds_count 25)" 10
ok $? "histogram _count reaches 25"
wait_until "SELECT sum(processed) = 25 FROM ft_orders.worker_status" 10

scrape s1
ok $? "scrape after the flow parses"
is "$(total s1 '^ft_orders_worker_outcomes_total[{]outcome="paid",')" "20" "outcomes: paid 20 (summed over workers)"
is "$(total s1 '^ft_orders_worker_outcomes_total[{]outcome="declined",')" "3" "outcomes: declined 3"
is "$(total s1 '^ft_orders_worker_outcomes_total[{]outcome="failed",')" "2" "outcomes: failed 2"
is "$(total s1 '^ft_orders_worker_outcomes_total[{]outcome="retried",')" "0" "outcomes: retried 0"
is "$(total s1 '^ft_orders_worker_processed_total')" "25" "processed 25"
is "$(val s1 ft_orders_gateway_requests_total)" "25" "gateway requests 25"
is "$(val s1 ft_orders_gateway_errors_total)" "0" "gateway errors 0"
is "$(val s1 ft_orders_gateway_request_duration_seconds_count)" "25" "histogram _count 25"
is "$(val s1 'ft_orders_gateway_request_duration_seconds_bucket{le="+Inf"}')" "25" "histogram +Inf bucket 25"
sum_s1=$(val s1 ft_orders_gateway_request_duration_seconds_sum)
attempts_sum=$(psql_q "SELECT round((sum(latency_ms) / 1000.0)::numeric, 3) FROM ft_orders.payment_attempts")
cmp_ok "$(echo "$sum_s1 > 0 && ($sum_s1 - $attempts_sum) < 0.01 && ($attempts_sum - $sum_s1) < 0.01" | bc)" -eq 1 \
	"histogram _sum ($sum_s1 s) equals the latencies in payment_attempts ($attempts_sum s)"
is "$(val s1 'ft_orders_orders{status="paid"}') $(val s1 'ft_orders_orders{status="declined"}') $(val s1 'ft_orders_orders{status="failed"}') $(val s1 'ft_orders_orders{status="pending"}')" \
	"20 3 2 0" "orders by status: paid 20, declined 3, failed 2, pending 0"
is "$(val s1 ft_orders_dead_letters)" "2" "dead letters 2"
is "$(total s1 '^ft_orders_outbox_events')" "0" "outbox empty"
is "$(val s1 ft_orders_gateway_circuit_state)" "0" "circuit closed (0)"

# --- gateway down: backlog and open circuit ----------------------------------
gw_faults '{"down":true}' || bail_out "could not take the gateway down"
psql_q "SELECT count(*) FROM generate_series(1, 10) g, LATERAL ft_orders.place_order('down-' || g, 'cust', 500 + g, 'EUR')" >/dev/null
ok $? "placed 10 orders while the gateway is down"
wait_until "$(metric_is ft_orders_gateway_circuit_state 1)" 30
ok $? "the circuit gauge shows open (1)"
scrape s2
ok $? "scrape with the gateway down parses"
is "$(total s2 '^ft_orders_outbox_events')" "10" "outbox gauge: 10 events waiting (due + leased + delayed)"
is "$(val s2 'ft_orders_orders{status="pending"}')" "10" "orders pending 10"
cmp_ok "$(val s2 ft_orders_gateway_errors_total)" -ge 3 "gateway errors counted (>= threshold 3)"
cmp_ok "$(val s2 ft_orders_gateway_consecutive_failures)" -ge 3 "consecutive failures >= 3"
cmp_ok "$(total s2 '^ft_orders_worker_outcomes_total[{]outcome="retried",')" -ge 3 "outcomes: retried >= 3"
age=$(val s2 ft_orders_outbox_oldest_event_age_seconds)
cmp_ok "$(echo "$age > 0" | bc)" -eq 1 "oldest outbox event age > 0 ($age s)"

# --- gateway back: backlog drains --------------------------------------------
gw_faults reset || bail_out "could not reset the faults"
wait_until "SELECT count(*) = 30 FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "the 10 orders are paid once the gateway is back"
wait_until "$(metric_is ft_orders_gateway_circuit_state 0)" 10
ok $? "the circuit gauge is back to closed (0)"
wait_until "SELECT sum(succeeded) = 30 FROM ft_orders.worker_status" 10
scrape s3
ok $? "scrape after the recovery parses"
is "$(total s3 '^ft_orders_outbox_events')" "0" "outbox gauge dropped to 0"
is "$(total s3 '^ft_orders_worker_outcomes_total[{]outcome="paid",')" "30" "outcomes: paid 30"
cmp_ok "$(val s3 ft_orders_gateway_request_duration_seconds_count)" -ge 38 \
	"histogram _count grew by the failed and the successful requests (>= 25 + 3 + 10)"
is "$(val s3 ft_orders_gateway_request_duration_seconds_count)" "$(val s3 ft_orders_gateway_requests_total)" \
	"histogram _count equals gateway requests"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"

# counters never go backwards between scrapes
went_down=$(awk 'FNR == NR { if ($1 ~ /_total([{]|$)|_bucket[{]|_count$|_sum$/) before[$1] = $2; next }
                 ($1 in before) && $2 < before[$1] { print $1 " " before[$1] " -> " $2 }' \
	"$FT_TMP/s1.prom" "$FT_TMP/s3.prom")
is "$went_down" "" "no counter, bucket, _sum or _count went down between scrapes"

# --- secrets ----------------------------------------------------------------
leaks=$(cat "$FT_TMP"/s*.raw | grep -c -e "$TOKEN" -e '127\.0\.0\.1' -e 'http://')
is "$leaks" "0" "no scrape shows the gateway token or URL"

# --- reset_stats -------------------------------------------------------------
psql_q "SELECT ft_orders.reset_stats()" >/dev/null
scrape s4
ok $? "scrape after reset_stats parses"
is "$(val s4 ft_orders_gateway_requests_total) $(val s4 ft_orders_gateway_request_duration_seconds_count) $(val s4 ft_orders_gateway_request_duration_seconds_sum) $(total s4 '^ft_orders_gateway_request_duration_seconds_bucket') $(total s4 '^ft_orders_worker_outcomes_total')" \
	"0 0 0 0 0" "reset_stats zeroes requests, histogram (count, sum, buckets) and outcomes"
is "$(val s4 'ft_orders_orders{status="paid"}') $(val s4 ft_orders_dead_letters)" "30 2" \
	"reset_stats leaves the table figures alone"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

# a sample for docs/monitoring.md
diag "sample: $(grep -c . "$FT_TMP/s3.raw") lines, e.g."
grep -E '^ft_orders_(worker_outcomes_total[{]worker="1"|gateway_request_duration_seconds_(bucket[{]le="0.0(1|5)"|count)|outbox_events|orders[{]status="paid")' \
	"$FT_TMP/s3.raw" | sed 's/^/#   /'

done_testing
