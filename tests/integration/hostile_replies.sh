#!/bin/bash
# hostile_replies.sh: nothing a gateway sends can crash a payment worker.
#
# A hostile responder (harness/hostile_gateway.py) answers one order with
# JSON nested 60,000 deep (the server's JSON parser hits max_stack_depth),
# a reply over 64 kB, invalid UTF-8, NUL bytes, a 5 kB payment_id, garbage
# Retry-After headers, and finally a success.  Every bad reply must be a
# transient retry recorded in payment_attempts, the worker must survive
# (same pid, no ERROR), and the order must end paid.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

portfile=$FT_TMP/hostile.port
python3 "$(dirname "$0")/harness/hostile_gateway.py" "$portfile" >"$FT_TMP/hostile.log" 2>&1 &
FT_PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$portfile" ] && break; sleep 0.05; done
[ -s "$portfile" ] || bail_out "hostile responder did not start"

pg_start "ft_orders.gateway_url = 'http://127.0.0.1:$(cat "$portfile")'" \
	"ft_orders.workers = 1" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '10ms'" "ft_orders.backoff_max = '50ms'" \
	"ft_orders.max_attempts = 50" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "server did not start"
wait_until "SELECT count(*) = 1 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "worker did not start"
pid=$(psql_q "SELECT pid FROM ft_orders.worker_status")

psql_q "SELECT order_id FROM ft_orders.place_order('hostile-1', 'cust', 100, 'EUR')" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'hostile-1'" 30
ok $? "the order is paid after eleven hostile replies"
is "$(psql_q "SELECT payment_id || ' ' || attempts FROM ft_orders.orders")" "pay_ok 11" \
	"the good reply's payment_id is stored; 11 requests counted"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'retry'")" "10" \
	"every hostile reply was a retry"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error = 'HTTP 200 malformed reply'")" "4" \
	"deep nesting, NUL bytes and non-JSON are malformed replies"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error LIKE 'HTTP 200 reply too large%'")" "1" \
	"a reply over 64 kB is cut off"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error = 'HTTP 200 unexpected reply'")" "2" \
	"unusable payment_ids are unexpected replies"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error IS NOT NULL AND error !~ '^[ -~]*$'")" "0" \
	"recorded errors are printable ASCII"
is "$(psql_q "SELECT pid FROM ft_orders.worker_status")" "$pid" "the same worker process survived it all"
is "$(grep -cE ' (ERROR|FATAL|PANIC): ' "$PG_LOG")" "0" "no ERROR in the log"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
