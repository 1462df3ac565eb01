#!/bin/bash
# standby.sh: workers wait on a standby and drain right after promotion.
#
# A streaming standby of the primary runs the same workers: they show state
# 'standby' and write nothing.  The primary dies with requests in flight
# (their leases would last 30 s); the standby is promoted, its launcher
# releases those leases, and the workers pay every order, none twice, the
# first within a couple of seconds of the promotion.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=20
SB=$FT_TMP/standby
SB_LOG=$FT_TMP/standby.log

standby_cleanup()
{
	if [ -f "$SB/postmaster.pid" ]; then
		as_pg pg_ctl -D "$SB" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
	fi
	ft_cleanup
}
trap standby_cleanup EXIT

sb() { PGPORT=$SB_PORT "$@"; }

gw_pg_start \
	"ft_orders.request_timeout = '5s'" "ft_orders.lease_timeout = '30s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.max_in_flight = 8" "wal_level = replica" "hot_standby = on" ||
	bail_out "the fake gateway or the server did not start"

SB_PORT=$(free_port)
as_pg pg_basebackup -h 127.0.0.1 -p "$PGPORT" -U postgres -D "$SB" -R -X stream -c fast >"$FT_TMP/basebackup.log" 2>&1 ||
	{ cat "$FT_TMP/basebackup.log"; bail_out "pg_basebackup failed"; }
echo "port = $SB_PORT" >>"$SB/postgresql.conf"
as_pg pg_ctl -D "$SB" -l "$SB_LOG" -w -t 60 start >/dev/null || { tail "$SB_LOG"; bail_out "standby did not start"; }

sb wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'standby' AND pid IS NOT NULL" 20
ok $? "on the standby both workers show state 'standby'"

# slow replies: the primary's workers hold leases when it dies
gw_faults '{"latency_ms":3000}' || bail_out "could not set faults"
place_orders sb $N
ok $? "placed $N orders on the primary"
wait_until "SELECT count(*) > 0 FROM ft_orders.outbox WHERE lease_until > now()" 5
ok $? "the primary's workers hold leases"
# insert position: the workers commit asynchronously, their leases may not
# be written yet; the WAL writer flushes (and the walsender ships) them soon
lsn=$(psql_q "SELECT pg_current_wal_insert_lsn()")
sb wait_until "SELECT pg_last_wal_replay_lsn() >= '$lsn'" 10
ok $? "the standby replayed everything"
is "$(sb psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "$N" \
	"the standby sees the orders pending"
is "$(sb psql_q "SELECT string_agg(DISTINCT state, ',') FROM ft_orders.worker_status")" "standby" \
	"the standby's workers still wait"
# metrics() reads the tables read-only: it works on the standby too
sb psql_q "SELECT ft_orders.metrics()" | /usr/bin/python3 "$FT_ROOT/tests/lib/prom_check.py" >"$FT_TMP/standby.prom"
ok $? "metrics() on the standby parses"
is "$(awk '$1 ~ /^ft_orders_worker_state[{].*state="standby"/ { t += $2 } END { print t + 0 }' "$FT_TMP/standby.prom") $(awk '$1 == "ft_orders_orders{status=\"pending\"}" { print $2 }' "$FT_TMP/standby.prom")" \
	"2 $N" "metrics() on the standby: both workers in state standby, $N orders pending"

as_pg pg_ctl -D "$PGDATA" -m immediate -w -t 20 stop >/dev/null
ok $? "the primary dies with requests in flight"
leased=$(sb psql_q "SELECT count(*) FROM ft_orders.outbox WHERE lease_until > now()")
cmp_ok "$leased" -gt 0 "the standby inherited $leased live leases"
gw_faults reset

t0=$(date +%s%N)
as_pg pg_ctl -D "$SB" -w -t 30 promote >/dev/null
ok $? "standby promoted"
sb wait_until "SELECT count(*) > 0 FROM ft_orders.orders WHERE status = 'paid'" 10
first_ms=$((($(date +%s%N) - t0) / 1000000))
cmp_ok "$first_ms" -lt 3000 "the first order is paid ${first_ms} ms after the promotion"
sb wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 20
ok $? "all $N orders are paid on the new primary"
like "$(grep -c 'released [0-9]* outbox lease' "$SB_LOG")" '^1$' "the launcher released the dead primary's leases"
sleep 3.5	# let the dead primary's slow requests settle at the gateway
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"
is "$(gw_ledger charges)" "$N" "ledger: one charge per order"
is "$(grep -c 'terminated by signal' "$SB_LOG")" "0" "no process crashed on the standby"

done_testing
