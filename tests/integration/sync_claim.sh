#!/bin/bash
# sync_claim.sh: a worker's claim is durable on the synchronous standby
# before its requests leave.
#
# The primary names a synchronous standby that never connects.  The
# clients place their orders with synchronous_commit = local (they would
# wait too); the workers' claims commit with the server's own
# synchronous_commit (on) and wait for the standby: the orders stay
# pending and the gateway gets no request.  A cancel of the waiting worker
# (which PostgreSQL turns into a WARNING and a "successful" commit) sends
# nothing either; a fast shutdown returns within a bound and sends
# nothing.  Once synchronous_standby_names is cleared (reload) the orders
# are paid, once each.  A server with synchronous_commit = local opts out:
# its claims do not wait.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=10
STOP_BOUND_S=10

gw_pg_start \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" ||
	bail_out "the fake gateway or the server did not start"
# named after CREATE DATABASE / EXTENSION, whose commits would wait too
psql_q "ALTER SYSTEM SET synchronous_standby_names = 'ft_never_connects'" >/dev/null && pg_reload
wait_until "SELECT current_setting('synchronous_standby_names') = 'ft_never_connects'" 10 ||
	bail_out "synchronous_standby_names not set"

# the clients' own commits must not wait for the missing standby
place()	# PREFIX N
{
	PGOPTIONS="-c synchronous_commit=local" psql_q "SELECT count(*) FROM generate_series(1, $2) g,
	    LATERAL ft_orders.place_order('$1-' || g, 'cust', 100 + g, 'EUR')"
}
sync_waiters() { psql_q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker' AND wait_event = 'SyncRep'"; }

is "$(psql_q "SHOW synchronous_commit") $(psql_q "SHOW synchronous_standby_names")" "on ft_never_connects" \
	"the server: synchronous_commit on, a synchronous standby named that never connects"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 30
ok $? "two payment workers run"

is "$(place sc $N)" "$N" "placed $N orders (the clients with synchronous_commit = local)"
wait_until "SELECT count(*) >= 1 FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker' AND wait_event = 'SyncRep'" 15
ok $? "a payment worker waits for the synchronous standby (wait_event SyncRep) in its claim's commit"
sleep 2	# what was claimed would have been sent long ago
is "$(gw_ledger requests)" "0" "the gateway got no request while the claim waits"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "$N" "all $N orders stay pending"

# a cancel ends the wait with a WARNING and a local commit: nothing is sent
waiter=$(psql_q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker' AND wait_event = 'SyncRep' LIMIT 1")
psql_q "SELECT pg_cancel_backend($waiter)" >/dev/null
for _ in $(seq 1 50); do
	grep -q 'claim of [0-9]* payment(s) was interrupted' "$PG_LOG" && break
	sleep 0.1
done
like "$(grep 'claim of [0-9]* payment(s) was interrupted' "$PG_LOG" | head -1)" 'none of them is sent' \
	"a cancelled wait: the worker logs the interrupted claim and sends none of it"
like "$(grep -c 'canceling wait for synchronous replication due to user request' "$PG_LOG")" '^[1-9]' \
	"(PostgreSQL's WARNING for the cancelled wait is in the log)"
wait_until "SELECT count(*) >= 1 FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker' AND wait_event = 'SyncRep'" 15
ok $? "the worker claims again and waits again"
sleep 1
is "$(gw_ledger requests)" "0" "still no request at the gateway"
is "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker' AND pid = $waiter")" "1" \
	"the cancelled worker is the same process (it did not exit)"

# a fast shutdown stops the waiting workers within the bound, sending nothing
t0=$(date +%s%N)
timeout $((STOP_BOUND_S + 20)) setpriv --reuid="$FT_PG_USER" --regid="$(id -g "$FT_PG_USER")" --init-groups -- \
	pg_ctl -D "$PGDATA" -m fast -w -t $((STOP_BOUND_S + 10)) stop >/dev/null 2>&1
rc=$?
stop_ms=$((($(date +%s%N) - t0) / 1000000))
is "$rc" "0" "pg_ctl stop -m fast succeeds while the claims wait for the standby"
cmp_ok "$stop_ms" -lt $((STOP_BOUND_S * 1000)) "... within ${STOP_BOUND_S} s (took ${stop_ms} ms)"
like "$(grep -c 'canceling the wait for synchronous replication and terminating connection due to administrator command' "$PG_LOG")" '^[1-9]' \
	"(the shutdown ended the workers' sync waits)"
is "$(gw_ledger requests)" "0" "nothing was sent at the shutdown"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

pg_start_again || bail_out "server did not start again"
wait_until "SELECT count(*) >= 1 FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker' AND wait_event = 'SyncRep'" 30
ok $? "after the restart the workers claim again and wait for the standby"
sleep 1
is "$(gw_ledger requests)" "0" "still no request at the gateway"

# clearing the synchronous standby releases the claims: every order paid once
psql_q "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null && pg_reload
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "after synchronous_standby_names is cleared (reload) all $N orders are paid"
is "$(gw_ledger charges)" "$N" "ledger: $N charges"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"

# opting out: synchronous_commit = local on the server; claims do not wait
psql_q "ALTER SYSTEM SET synchronous_standby_names = 'ft_never_connects'" >/dev/null
psql_q "ALTER SYSTEM SET synchronous_commit = 'local'" >/dev/null
pg_reload
wait_until "SELECT current_setting('synchronous_standby_names') = 'ft_never_connects'" 10
is "$(place sl 5)" "5" "placed 5 orders with the standby named again, server synchronous_commit = local"
wait_until "SELECT count(*) = $((N + 5)) FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "with synchronous_commit = local (the opt-out) the claims do not wait: all paid"
is "$(sync_waiters)" "0" "no worker waits for the standby"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$((N + 5)) 0" "ledger: $((N + 5)) charges, no duplicates"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
