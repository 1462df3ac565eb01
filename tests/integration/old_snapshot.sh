#!/bin/bash
# old_snapshot.sh: the drain while an old snapshot is held, and while
# pg_dump runs (docs/design.md, "The claim floor").
#
# 1. One session holds a REPEATABLE READ snapshot (nothing else) while
#    three batches of orders are placed and drained: all paid once, the
#    outbox keeps the dead row versions (VACUUM cannot remove them), and
#    the claim, started at the claim floor, reads a fraction of the
#    buffers the same claim reads from the head of the index.
# 2. Events the floor rules cannot see are found by the launcher's sweep:
#    an order placed by a transaction that ran read-only for longer than
#    the floor's lag, and an order whose outbox row was locked (not
#    changed) by another session while the claims passed it.
# 3. pg_dump of the database runs throughout a drain (a reader that waits
#    keeps it open): all paid once, the dump completes and restores on a
#    second server, which charges nothing.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

PG2DATA=""
old_snapshot_cleanup()
{
	exec 7>&- 8>&- 2>/dev/null
	if [ -n "$PG2DATA" ] && [ -f "$PG2DATA/postmaster.pid" ]; then
		as_pg pg_ctl -D "$PG2DATA" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
	fi
	ft_cleanup
}
trap old_snapshot_cleanup EXIT

gw_pg_start "ft_orders.batch_size = 100" "ft_orders.max_in_flight = 64" \
	"log_min_messages = debug1" "autovacuum_naptime = 1" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20
ok $? "two payment workers are running"

# paid_count PREFIX -> orders of keys PREFIX* that are paid
paid_count() { psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE '$1%' AND status = 'paid'"; }

# --- 1. a snapshot held during three drains ------------------------------------
open_session 7 snap "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;"
wait_until "SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xmin IS NOT NULL" 10
ok $? "one session holds a REPEATABLE READ snapshot"

for b in 1 2 3; do
	place_orders "held$b" 1500 || bail_out "place_orders failed"
	wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE idempotency_key LIKE 'held$b-%' AND status <> 'paid'" 90
	ok $? "batch $b of 1500 drained while the snapshot is held"
done
drained_at=$(psql_q "SELECT now()")
is "$(paid_count held) $(gw_ledger charges) $(gw_ledger duplicates) $(psql_q "SELECT count(*) FROM ft_orders.outbox")" \
	"4500 4500 0 0" "4500 orders paid, 4500 charges, no duplicate, the outbox empty"
psql_q "VACUUM ft_orders.outbox" >/dev/null
cmp_ok "$(psql_q "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'ft_orders.outbox'::regclass")" -ge 4500 \
	"VACUUM leaves the outbox's dead row versions to the held snapshot"

# an idle worker polls every second and raises the floor to its own now()
# less the floor's lag (no transaction holds an id): within seconds the
# floor passes every event of the three batches, however long they took
wait_until "SELECT ft_orders._claim_floor() > '$drained_at'" 15
ok $? "the idle workers' polls raise the claim floor past the drained batches"
is "$(psql_q "SELECT ft_orders._claim_floor() <= now()")" "t" "... and never past now()"
floor=$(psql_q "SELECT ft_orders._claim_floor()")
from_floor=$(claim_buffers "$floor")
from_head=$(claim_buffers "-infinity")
diag "the claim reads $from_floor buffer(s) from the floor, $from_head from the head of the index"
cmp_ok "$from_head" -ge 40 "from the head of the index the claim walks the dead entries"
# from the floor the claim walks only what the polls since the drain left
# (none of the 9000 dead entries of the batches): a tenth is a loose bound;
# bench/run.sh measures the drain itself
cmp_ok "$((from_floor * 10))" -le "$from_head" "from the claim floor it reads a tenth of that or less"

# --- 2. what only the sweep finds ------------------------------------------------
# a transaction that ran read-only for longer than the floor's lag (1 s)
# before placing its order: the order is stamped with the transaction's start
psql_q "BEGIN; SELECT pg_sleep(2.5); SELECT ft_orders.place_order('late-1', 'c', 501, 'EUR'); SELECT pg_sleep(0.5); COMMIT;" >/dev/null
ok $? "an order placed 2.5 s into its transaction"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'late-1'" 20
ok $? "... is paid"

# an outbox row locked by a session (and left unchanged) while claims pass it
pg_set ft_orders.gateway_url ''
psql_q "SELECT ft_orders.place_order('locked-1', 'c', 502, 'EUR')" >/dev/null
sleep 1.5
open_session 8 lock "BEGIN; SELECT 1 FROM ft_orders.outbox WHERE order_id =
                    (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'locked-1') FOR UPDATE;"
wait_until "SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xid IS NOT NULL" 10
ok $? "another session locks the outbox row of order locked-1"
pg_set ft_orders.gateway_url "$GW_URL"
place_orders "passing" 300 || bail_out "place_orders failed"
wait_until "SELECT count(*) = 300 FROM ft_orders.orders WHERE idempotency_key LIKE 'passing-%' AND status = 'paid'" 60
ok $? "300 orders placed after it are paid"
wait_until "SELECT ft_orders._claim_floor() > next_attempt_at FROM ft_orders.outbox
             WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'locked-1')" 10
ok $? "the claim floor passed the locked order's event"
echo "COMMIT;" >&8
exec 8>&-
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'locked-1'" 20
ok $? "... which is paid once the lock is gone"
like "$(cat "$PG_LOG")" "lay below the claim floor" "the launcher's sweep lowered the floor"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "4802 0" "4802 charges in all, no duplicate"

echo "COMMIT;" >&7
exec 7>&-

# --- 3. pg_dump throughout a drain ------------------------------------------------
pg_set ft_orders.gateway_url ''
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle' AND in_flight = 0" 20
place_orders "dump" 2000 || bail_out "place_orders failed"
: >"$FT_TMP/dump.go"
( pg_dump -Fp ftdb | { while [ -e "$FT_TMP/dump.go" ]; do sleep 0.1; done; cat >"$FT_TMP/ftdb.sql"; }
  echo "${PIPESTATUS[0]}" >"$FT_TMP/dump.rc" ) &
dump_pid=$!
FT_PIDS+=("$dump_pid")
wait_until "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pg_dump' AND backend_xmin IS NOT NULL" 20
ok $? "pg_dump is running, holding its snapshot"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = 2000 FROM ft_orders.orders WHERE idempotency_key LIKE 'dump-%' AND status = 'paid'" 90
ok $? "2000 orders drained while pg_dump runs"
is "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'")" "1" \
	"... pg_dump ran throughout"
rm -f "$FT_TMP/dump.go"
wait "$dump_pid"
is "$(cat "$FT_TMP/dump.rc")" "0" "pg_dump completed"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "6802 0" "6802 charges in all, no duplicate"

PG2DATA=$FT_TMP/pgdata2
pg_init "$PG2DATA" "shared_preload_libraries = 'ft_orders'" "ft_orders.database = 'shop_restored'" \
	"ft_orders.workers = 0" "ft_orders.gateway_url = ''" || bail_out "initdb of the second server failed"
as_pg pg_ctl -D "$PG2DATA" -l "$FT_TMP/postgres2.log" -w -t 60 start >/dev/null ||
	bail_out "second server did not start"
P2=(-h 127.0.0.1 -p "$PG_INIT_PORT" -U postgres)
psql -XAtq "${P2[@]}" -d postgres -c "CREATE DATABASE shop_restored" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 "${P2[@]}" -d shop_restored -f "$FT_TMP/ftdb.sql" >/dev/null 2>"$FT_TMP/restore.err"
ok $? "the dump restores on a second server"
[ -s "$FT_TMP/restore.err" ] && diag "restore: $(head -5 "$FT_TMP/restore.err")"
is "$(psql -XAtq "${P2[@]}" -d shop_restored -c "SELECT count(*) FILTER (WHERE idempotency_key LIKE 'dump-%' AND status = 'pending')
                                                     || ' ' || count(*) FILTER (WHERE status = 'paid')
                                                     || ' ' || count(DISTINCT order_id) || ' ' || count(*)
                                                FROM ft_orders.orders")" \
	"2000 4802 6802 6802" "the copy holds the orders as pg_dump's snapshot saw them, each once"
is "$(psql -XAtq "${P2[@]}" -d shop_restored -c "SELECT count(*) FROM ft_orders.outbox")" "2000" \
	"... and their outbox events"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "6802 0" "the copy charged nothing"

done_testing
