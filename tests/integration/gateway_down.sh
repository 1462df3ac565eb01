#!/bin/bash
# gateway_down.sh: a dead gateway never fails an order or slows intake.
#
# The fake gateway closes every /payments connection without a reply for
# a while: orders stay pending (the circuit opens, nothing is given up),
# place_order stays fast; when the gateway is back every order is paid,
# each once.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=40

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.circuit_open_time = '1s'" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"down":true}' || bail_out "could not set faults"

start=$(date +%s%N)
place_orders down $N
ok $? "placed $N orders while the gateway is down"
ms=$((($(date +%s%N) - start) / 1000000))
cmp_ok "$ms" -lt 2000 "place_order is not slowed down by the gateway ($ms ms for $N)"

wait_until "SELECT circuit = 'open' FROM ft_orders.gateway_status" 10
ok $? "the circuit opens"
sleep 4
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "$N" \
	"after 4 s down every order is still pending"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "nothing was dead-lettered"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "$N" "every event is still in the outbox"
cmp_ok "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'retry' AND http_status IS NULL")" \
	-gt 0 "failed attempts are recorded without an HTTP status"
is "$(gw_ledger charges)" "0" "ledger: nothing charged while down"

gw_faults reset
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "once the gateway is back every order is paid"
is "$(gw_ledger charges)" "$N" "ledger: one charge per order"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
wait_until "SELECT circuit = 'closed' FROM ft_orders.gateway_status" 5
ok $? "the circuit is closed again"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox is empty"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -cE ' (ERROR|FATAL): ' "$PG_LOG")" "0" "gateway trouble is never an ERROR"

done_testing
