#!/bin/bash
# hostile_replies.sh: nothing a gateway sends can crash a payment worker.
#
# A hostile responder (harness/hostile_gateway.py) answers one order with
# JSON nested 60,000 deep (the server's JSON parser hits max_stack_depth),
# a reply over 64 kB, invalid UTF-8, NUL bytes, a 5 kB payment_id, garbage
# Retry-After headers, JSON with wrong types ("status": 123,
# "payment_id": {}, a top-level array, arrays, null/true), and finally a
# success.  Every bad reply must be a transient retry recorded in
# payment_attempts, the worker must survive (same pid, no ERROR, no crash,
# the postmaster never reinitialises, RssAnon bounded), and the order must
# end paid.  Transfer-level hostility (10 MB, drip, truncation, resets,
# Retry-After of 10 years, a listener that never accepts) is in
# hostile_network.sh.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/harness/hostile.sh"

hostile_start replies 100 || bail_out "hostile responder did not start"

pg_start "ft_orders.gateway_url = '$good_url'" \
	"ft_orders.workers = 1" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '10ms'" "ft_orders.backoff_max = '50ms'" \
	"ft_orders.max_attempts = 50" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "server did not start"
wait_until "SELECT count(*) = 1 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "worker did not start"
pid=$(psql_q "SELECT pid FROM ft_orders.worker_status")
rss_anon() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# a warm-up order gets a good reply: the baseline memory figure after it
psql_q "SELECT order_id FROM ft_orders.place_order('hostile-0', 'cust', 100, 'EUR')" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'hostile-0'" 20 ||
	bail_out "the warm-up order was not paid"
rss_before=$(rss_anon "$pid")

psql_q "SELECT order_id FROM ft_orders.place_order('hostile-1', 'cust', 100, 'EUR')" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'hostile-1'" 30
ok $? "the order is paid after fifteen hostile replies"
is "$(psql_q "SELECT payment_id || ' ' || attempts FROM ft_orders.orders WHERE idempotency_key = 'hostile-1'")" "pay_ok 16" \
	"the good reply's payment_id is stored; 16 requests counted"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'retry'")" "15" \
	"every hostile reply was a retry"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error = 'HTTP 200 malformed reply'")" "4" \
	"deep nesting, NUL bytes, non-JSON and a top-level array are malformed replies"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error LIKE 'HTTP 200 reply too large%'")" "1" \
	"a reply over 64 kB is cut off"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error = 'HTTP 200 unexpected reply'")" "7" \
	"unusable payment_ids (\\u0000 in one: read, not an error) and wrong-typed fields are unexpected replies"
is "$(psql_q "SELECT string_agg(coalesce(error, '-'), ' | ' ORDER BY attempt) FROM ft_orders.payment_attempts WHERE attempt BETWEEN 11 AND 15 AND order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'hostile-1')")" \
	"HTTP 200 unexpected reply | HTTP 200 unexpected reply | HTTP 200 malformed reply | HTTP 200 unexpected reply | HTTP 200 unexpected reply" \
	"wrong JSON types (status 123, payment_id {}, top-level array, arrays, null/true) are retries"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE payment_id IN ('pay_wrong', 'pay_arr')")" "0" \
	"no payment_id is taken from a reply with wrong types"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error IS NOT NULL AND error !~ '^[ -~]*$'")" "0" \
	"recorded errors are printable ASCII"
is "$(psql_q "SELECT pid FROM ft_orders.worker_status")" "$pid" "the same worker process survived it all"
is "$(grep -cE ' (ERROR|FATAL|PANIC): ' "$PG_LOG")" "0" "no ERROR in the log"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -c 'all server processes terminated; reinitializing' "$PG_LOG")" "0" "the postmaster never reinitialised"
rss_after=$(rss_anon "$pid")
echo "# worker RssAnon: ${rss_before:-?} kB before, ${rss_after:-?} kB after"
cmp_ok "$((${rss_after:-999999} - ${rss_before:-0}))" -le 4096 "worker RssAnon grew by at most 4 MB"

done_testing
