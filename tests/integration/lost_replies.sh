#!/bin/bash
# lost_replies.sh: replies that never arrive or make no sense are retried
# under the same Idempotency-Key, and nobody is charged twice.
#
# The fake gateway charges and then hangs (timeout_rate) or charges and
# answers 200 with a non-JSON body (garbage_rate).  The workers time out or
# classify the reply as malformed, retry, and get the stored reply replayed.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=300

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.max_attempts = 50" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"timeout_rate":0.3,"garbage_rate":0.2,"hang_ms":5000}' || bail_out "could not set faults"

place_orders lost $N 1000
ok $? "placed $N orders"

wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "all $N orders are paid"

lost=$(gw_ledger lost_replies)
garbage=$(gw_ledger garbage_replies)
cmp_ok "$lost" -gt 0 "the gateway lost replies ($lost)"
cmp_ok "$garbage" -gt 0 "the gateway sent garbage ($garbage)"
is "$(gw_ledger duplicates)" "0" "ledger: no key charged twice"
is "$(gw_ledger charges)" "$N" "ledger: charges = paid orders"
cmp_ok "$(gw_ledger replays)" -gt 0 "retries were answered by replays"
is "$(psql_q "SELECT count(DISTINCT payment_id) FROM ft_orders.orders")" "$N" "every order has its own payment_id"
cmp_ok "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'retry' AND error LIKE '%timed out%'")" \
	-gt 0 "timeouts are recorded as retries"
cmp_ok "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'retry' AND error = 'HTTP 200 malformed reply'")" \
	-gt 0 "garbage bodies are recorded as retries"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders o
              WHERE o.attempts <> (SELECT count(*) FROM ft_orders.payment_attempts a WHERE a.order_id = o.order_id)")" \
	"0" "orders.attempts = payment_attempts rows for every order"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "no dead letters"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
like "$(grep -c 'payment gateway request failed' "$PG_LOG")" '^[1-9]' "gateway trouble is logged at LOG"
is "$(grep -cE 'ERROR|FATAL' "$PG_LOG")" "0" "no ERROR or FATAL in the log"

done_testing
