#!/bin/bash
# hostile_network.sh: a gateway that misbehaves at the transfer level
# cannot crash, hang or bloat a payment worker (issue 6, hostile gateway).
#
# harness/hostile_gateway.py in "network" mode answers one order with a
# 10 MB reply (with and without a length), an endless drip (a byte every
# 100 ms, never finishing), a truncated body (Content-Length 1000, 40 bytes
# sent, close), a Content-Length shorter than the body, a reset mid-reply
# (SO_LINGER 0), a reset and a clean close before any reply; then a
# Retry-After of 10 years (capped at backoff_max) and of -5 (ignored).  A
# second port has a listener that never accepts (its backlog is full, so
# connects hang): requests there time out and are retried until the URL is
# switched back.  Each: transient retry in payment_attempts with a clear
# error, the order ends paid, same worker pid, no crash, RSS bounded.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/harness/hostile.sh"

hostile_start network 100 blackhole || bail_out "hostile responder did not start"

pg_start "ft_orders.gateway_url = '$good_url'" \
	"ft_orders.workers = 1" \
	"ft_orders.request_timeout = '2s'" "ft_orders.connect_timeout = '1s'" \
	"ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '10ms'" "ft_orders.backoff_max = '3s'" \
	"ft_orders.max_attempts = 50" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "server did not start"
wait_until "SELECT count(*) = 1 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "worker did not start"
pid=$(psql_q "SELECT pid FROM ft_orders.worker_status")
rss_anon() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# place KEY: place an order, print its id
place() { psql_q "SELECT order_id FROM ft_orders.place_order('$1', 'cust', 100, 'EUR')"; }
# errors ORDER: the recorded errors of an order, one per line, in order
errors() { psql_q "SELECT coalesce(error, '-') FROM ft_orders.payment_attempts WHERE order_id = $1 ORDER BY attempt"; }
nerr() { psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE order_id = $1 AND outcome = 'retry' AND error ~* '$2'"; }

# 1. warm-up: a good reply, then the baseline memory figure
o1=$(place net-1)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o1" 20
ok $? "warm-up order paid"
rss_before=$(rss_anon "$pid")

# 2. eight bad transfers, then a success
t0=$(date +%s)
o2=$(place net-2)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o2" 40
ok $? "the order is paid after eight hostile transfers"
is "$(psql_q "SELECT payment_id || ' ' || attempts FROM ft_orders.orders WHERE order_id = $o2")" "pay_ok 9" \
	"the good reply's payment_id is stored; 9 requests counted"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE order_id = $o2 AND outcome = 'retry' AND coalesce(error, '') <> ''")" "8" \
	"every bad transfer was a retry with an error recorded"
errors "$o2" | sed 's/^/# order 2: /'
is "$(nerr "$o2" 'reply too large')" "2" "10 MB replies (with and without a length) are cut off at 64 kB"
is "$(nerr "$o2" 'timed? ?out')" "1" "an endless drip ends by request_timeout"
cmp_ok "$(psql_q "SELECT round(latency_ms) FROM ft_orders.payment_attempts WHERE order_id = $o2 AND error ~* 'timed? ?out'")" -le 3000 \
	"... within request_timeout (2 s) plus slack"
is "$(nerr "$o2" 'transfer closed|partial|remaining|bytes missing')" "1" "a truncated body (Content-Length larger than sent) is a retry"
is "$(nerr "$o2" 'malformed')" "1" "a Content-Length shorter than the body leaves a malformed reply"
is "$(nerr "$o2" 'reset|recv failure')" "2" "connection resets (mid-reply and before any reply) are retries"
is "$(nerr "$o2" 'empty reply')" "1" "a close before any reply is a retry"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE error IS NOT NULL AND error !~ '^[ -~]*$'")" "0" \
	"recorded errors are printable ASCII"
echo "# bad transfers took $(($(date +%s) - t0)) s"

# 3. Retry-After: 10 years is capped at backoff_max (3 s)
o3=$(place net-3)
wait_until "SELECT count(*) >= 1 FROM ft_orders.payment_attempts WHERE order_id = $o3" 20
wait_left=$(psql_q "SELECT extract(epoch FROM next_attempt_at - now()) FROM ft_orders.outbox WHERE order_id = $o3")
echo "# after Retry-After 315360000 the next attempt is due in ${wait_left:-?} s"
is "$(psql_q "SELECT bool_and(next_attempt_at - now() <= current_setting('ft_orders.backoff_max')::interval) FROM ft_orders.outbox WHERE order_id = $o3")" "t" \
	"Retry-After of 10 years: outbox.next_attempt_at - now() <= backoff_max"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o3" 15
ok $? "... and the order is paid once backoff_max has passed"
gap=$(psql_q "SELECT round(extract(epoch FROM max(started_at) - min(started_at)) * 1000) FROM ft_orders.payment_attempts WHERE order_id = $o3")
cmp_ok "$gap" -ge 2500 "... Retry-After was honoured up to the cap (gap ${gap} ms >= 2.5 s)"
cmp_ok "$gap" -le 4500 "... and no longer than the cap (gap ${gap} ms <= 4.5 s)"

# 4. Retry-After: -5 is ignored (plain backoff: base 10 ms)
o4=$(place net-4)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o4" 15
ok $? "Retry-After -5: the order is paid"
is "$(psql_q "SELECT attempts FROM ft_orders.orders WHERE order_id = $o4")" "2" "... after one retry"
gap=$(psql_q "SELECT round(extract(epoch FROM max(started_at) - min(started_at)) * 1000) FROM ft_orders.payment_attempts WHERE order_id = $o4")
cmp_ok "$gap" -lt 1000 "... which used the normal backoff (gap ${gap} ms)"

# 5. a listener that never accepts
pg_set ft_orders.gateway_url "$hole_url"
sleep 0.5
o5=$(place net-5)
wait_until "SELECT count(*) >= 2 FROM ft_orders.payment_attempts WHERE order_id = $o5" 20
ok $? "a listener that never accepts: requests end and are retried"
errors "$o5" | sed 's/^/# order 5: /'
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE order_id = $o5 AND (outcome <> 'retry' OR error !~* 'time')")" "0" \
	"... each a retry with a timeout error"
cmp_ok "$(psql_q "SELECT round(max(latency_ms)) FROM ft_orders.payment_attempts WHERE order_id = $o5")" -le 3000 \
	"... bounded by the connect/request timeout"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $o5")" "pending" "... the order waits"
pg_set ft_orders.gateway_url "$good_url"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o5" 20
ok $? "... and is paid once the URL points at a gateway that answers"

# the worker, the server and memory
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "no outbox row left behind"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")" "5" "all five orders paid"
is "$(psql_q "SELECT pid FROM ft_orders.worker_status")" "$pid" "the same worker process survived it all"
rss_after=$(rss_anon "$pid")
echo "# worker RssAnon: ${rss_before:-?} kB before, ${rss_after:-?} kB after"
cmp_ok "$((${rss_after:-999999} - ${rss_before:-0}))" -le 4096 "worker RssAnon grew by at most 4 MB (10 MB replies not buffered)"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -c 'all server processes terminated; reinitializing' "$PG_LOG")" "0" "the postmaster never reinitialised"
is "$(grep -cE ' (ERROR|FATAL|PANIC): ' "$PG_LOG")" "0" "no ERROR in the log"

done_testing
