#!/bin/bash
# lease_reload.sh: ft_orders.lease_timeout and ft_orders.request_timeout
# can be changed together by one reload, in either line order, and a pair
# that breaks "lease_timeout > request_timeout" (docs/reference.md, "Settings") is not
# refused but made safe.
#
# A reload applies postgresql.conf line by line, so a check hook that
# compared the two settings judged the new lease against the old request
# timeout: lowering both (lease 60s -> 3s, request 10s -> 1s) with the
# lease line first was refused.  Now each setting is checked on its own;
# when lease <= request, the launcher logs one WARNING per reload naming
# both values, and the workers cut the request timeout to lease minus a
# margin (1 s, or half a lease under 2 s), so no lease runs out while its
# request is in flight.
#
#  1. both lowered, lease line first: accepted, no error, and requests
#     time out after 1 s (the new request_timeout is in use);
#  2. both raised, then both lowered with the request line first;
#  3. lease 2s, request 5s: accepted with one WARNING per reload; against
#     a gateway that hangs 4 s (then replays the charge) the requests time
#     out after ~1 s, and no two attempts of one order overlap (no lease
#     expired mid-request);
#  4. a valid pair again: no further WARNING, orders paid once each;
#  5. the server starts with an invalid pair (it used to refuse to) and
#     warns at start.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '10s'" "ft_orders.lease_timeout = '60s'" \
	"ft_orders.connect_timeout = '500ms'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "workers did not start"

# conf LINE...: append lines to postgresql.conf and reload.  The last
# occurrence of a setting wins and settings are applied in the order of
# those last occurrences, i.e. in the order given here.
conf()
{
	local l
	for l in "$@"; do echo "$l"; done >>"$PGDATA/postgresql.conf"
	pg_reload
}
# settings: "lease request" as a fresh session sees them
settings() { psql_q "SELECT current_setting('ft_orders.lease_timeout') || ' ' || current_setting('ft_orders.request_timeout')"; }
# wait_settings EXPECTED: until a new session sees them (the reload is asynchronous)
wait_settings()
{
	for _ in $(seq 1 50); do
		[ "$(settings)" = "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
nwarn() { grep -c 'must be greater than "ft_orders.request_timeout"' "$PG_LOG"; }
# lastwarn: the last such WARNING and its DETAIL line
lastwarn() { grep -A1 'must be greater than "ft_orders.request_timeout"' "$PG_LOG" | tail -n 2; }
# wait_warn N: until the log holds N such warnings (10 s at most)
wait_warn()
{
	for _ in $(seq 1 100); do
		[ "$(nwarn)" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
nconf_errors() { grep -Ec 'configuration file .* contains errors|invalid value for parameter "ft_orders' "$PG_LOG"; }
# overlaps: attempts of one order that started before the previous one ended
overlaps()
{
	psql_q "SELECT count(*) FROM (
	          SELECT started_at, latency_ms,
	                 lead(started_at) OVER (PARTITION BY order_id ORDER BY started_at) AS next
	            FROM ft_orders.payment_attempts) a
	         WHERE next IS NOT NULL AND started_at + latency_ms * interval '1 ms' > next"
}

is "$(settings)" "1min 10s" "start: lease_timeout 1min, request_timeout 10s"

# --- 1. both lowered, the lease line first ---------------------------------------
errors0=$(nconf_errors)
conf "ft_orders.lease_timeout = '3s'" "ft_orders.request_timeout = '1s'"
wait_settings "3s 1s"
ok $? "lowering both with the lease line first is accepted (lease 3s, request 1s)"
sleep 0.5
is "$(nconf_errors)" "$errors0" "the reload logged no configuration error"
is "$(nwarn)" "0" "and no warning"

# the workers use the new request timeout: a gateway that hangs 4 s is cut off after 1 s
gw_faults '{"timeout_rate":1.0,"hang_ms":4000}' || bail_out "could not set faults"
o1=$(psql_q "SELECT order_id FROM ft_orders.place_order('lr-1', 'cust', 100, 'EUR')")
wait_until "SELECT count(*) >= 2 FROM ft_orders.payment_attempts WHERE order_id = $o1" 20
ok $? "requests to a hanging gateway time out and are retried"
lat=$(psql_q "SELECT round(max(latency_ms)) FROM ft_orders.payment_attempts WHERE order_id = $o1 AND error ~* 'timed? ?out'")
cmp_ok "${lat:-0}" -ge 900 "a request runs up to request_timeout (slowest: ${lat:-?} ms)"
cmp_ok "${lat:-99999}" -lt 2500 "... and no longer: the new request_timeout (1 s) is in use, not 10 s"
gw_faults reset
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o1" 20
ok $? "the order is paid once the gateway answers"

# --- 2. both raised, then both lowered with the request line first -----------------
conf "ft_orders.request_timeout = '10s'" "ft_orders.lease_timeout = '60s'"
wait_settings "1min 10s"
ok $? "raising both is accepted (lease 1min, request 10s)"
conf "ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'"
wait_settings "3s 1s"
ok $? "lowering both with the request line first is accepted (lease 3s, request 1s)"
sleep 0.5
is "$(nconf_errors)" "$errors0" "no configuration error in either order"
is "$(nwarn)" "0" "no warning for valid pairs"

# --- 3. an invalid pair: lease 2s, request 5s --------------------------------------
conf "ft_orders.lease_timeout = '2s'" "ft_orders.request_timeout = '5s'"
wait_settings "2s 5s"
ok $? "lease 2s with request 5s is not refused"
wait_warn 1
like "$(lastwarn)" \
	'WARNING:  "ft_orders.lease_timeout" \(2000 ms\) must be greater than "ft_orders.request_timeout" \(5000 ms\)' \
	"a WARNING names both values"
like "$(lastwarn)" 'DETAIL:  The payment workers use a request timeout of 1000 ms' \
	"its DETAIL gives the request timeout in use"
sleep 1
is "$(nwarn)" "1" "one WARNING for the reload (from the launcher, not from every process)"

gw_faults '{"timeout_rate":1.0,"hang_ms":4000}' || bail_out "could not set faults"
place_orders lr-bad 4
wait_until "SELECT count(*) = 4 FROM (SELECT order_id FROM ft_orders.payment_attempts a
              JOIN ft_orders.orders o USING (order_id) WHERE o.idempotency_key LIKE 'lr-bad-%'
               AND a.error ~* 'timed? ?out' GROUP BY order_id) x" 30
ok $? "against a gateway hanging 4 s, a request of every order timed out"
lat=$(psql_q "SELECT round(max(latency_ms)) FROM ft_orders.payment_attempts a JOIN ft_orders.orders o USING (order_id)
              WHERE o.idempotency_key LIKE 'lr-bad-%'")
cmp_ok "${lat:-99999}" -lt 2000 "every request ended before the 2 s lease (slowest: ${lat:-?} ms, request_timeout 5s cut to 1s)"
is "$(overlaps)" "0" "no two attempts of one order overlap: no lease ran out while its request was in flight"
pg_reload
sleep 1.5
is "$(nwarn)" "2" "the next reload with the pair still invalid warns again, once"

# --- 4. a valid pair again -----------------------------------------------------------
conf "ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'"
wait_settings "3s 1s"
ok $? "back to a valid pair"
gw_faults reset
wait_until "SELECT count(*) = 5 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "all orders are paid"
sleep 0.5
is "$(nwarn)" "2" "no warning for the valid pair"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
is "$(gw_ledger charges)" "5" "ledger: one charge per order"
cmp_ok "$(gw_ledger replays)" -gt 0 "lost replies were replayed, not charged again"
is "$(overlaps)" "0" "still no overlapping attempts"

# --- 5. start-up with an invalid pair ----------------------------------------------
for l in "ft_orders.lease_timeout = '1s'" "ft_orders.request_timeout = '10s'"; do
	echo "$l"
done >>"$PGDATA/postgresql.conf"
pg_stop || bail_out "server did not stop"
pg_start_again
ok $? "the server starts with lease_timeout 1s and request_timeout 10s"
wait_warn 3
like "$(lastwarn)" '\(1000 ms\) must be greater than "ft_orders.request_timeout" \(10000 ms\)' \
	"the launcher warns at start"
like "$(lastwarn)" 'request timeout of 500 ms' "the request timeout is cut to half the 1 s lease"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
