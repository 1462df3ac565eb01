#!/bin/bash
# shutdown.sh: a stopping worker hands its unfinished work back.
#
#  - pg_terminate_backend() of one payment worker: it stops cleanly (no
#    crash restart) and the launcher starts a new one about a second later;
#  - a fast shutdown with requests in flight: the workers wait up to a
#    second, record what completed, release the leases of the rest (so the
#    launcher finds none at the next start), giving their attempts back
#    (they do not count towards max_attempts), and every order is paid
#    once after the restart.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=30

gw_pg_start \
	"ft_orders.request_timeout = '5s'" "ft_orders.lease_timeout = '30s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "workers did not start"

# --- terminate one worker ------------------------------------------------------
old=$(psql_q "SELECT pid FROM ft_orders.worker_status WHERE worker_id = 1")
is "$(psql_q "SELECT pg_terminate_backend($old)")" "t" "pg_terminate_backend of payment worker 1"
wait_until "SELECT pid IS NOT NULL AND pid <> $old AND state = 'idle' FROM ft_orders.worker_status WHERE worker_id = 1" 10
ok $? "the launcher started a new payment worker 1"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no crash restart"

# --- fast shutdown mid-flight --------------------------------------------------
gw_faults '{"latency_ms":3000}' || bail_out "could not set faults"
place_orders sd $N
wait_until "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status" 5
ok $? "requests are in flight"
# at the next start the workers stay idle: the released events can be looked at
psql_q "ALTER SYSTEM SET ft_orders.gateway_url = ''" >/dev/null
start=$(date +%s%N)
pg_stop
ok $? "fast shutdown"
ms=$((($(date +%s%N) - start) / 1000000))
cmp_ok "$ms" -lt 5000 "the workers did not hold the shutdown up ($ms ms)"
like "$(grep -c 'released [0-9]* unfinished payment' "$PG_LOG")" '^[1-9]' "stopping workers released their leases"
gw_faults reset
pg_start_again || bail_out "server did not start again"
is "$(psql_q "SELECT count(*) > 0 AND bool_and(attempts = 0) FROM ft_orders.outbox")" "t" \
	"the released events' attempts were given back (a stop is not the order's failure)"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "after the restart all $N orders are paid"
is "$(grep -c 'outbox lease(s) of stopped payment workers' "$PG_LOG")" "0" \
	"the launcher found no lease left behind"
sleep 3	# let the requests cut off at shutdown reach their end at the gateway
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"
is "$(gw_ledger charges)" "$N" "ledger: one charge per order"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
