#!/bin/bash
# upgrade.sh: pg_upgrade of a working ft_orders cluster from PostgreSQL 15
# to 17, with the fake gateway as the witness (TAP).  Run by run.sh in a
# Debian 13 system that holds both majors (setup.sh); needs root, as the
# other integration tests.
#
#  1. PostgreSQL 15, ft_orders preloaded, two payment workers: orders paid,
#     declined, failed with a dead letter; refunds done; then the gateway
#     slows to 12 s a reply and more orders and a refund are placed, so
#     that requests are in flight and their outbox events leased when the
#     server stops (immediately: a fast shutdown would release the leases).
#     A start without ft_orders recovers it and stops it cleanly, as
#     pg_upgrade requires, and takes the digests of every table and of the
#     catalogue.
#  2. pg_upgrade --check, with a new cluster that does not preload
#     ft_orders (pg_upgrade LOADs the library there), then pg_upgrade with
#     one that does, as in production.  Old and new servers run in binary
#     upgrade mode, where ft_orders starts no launcher: the gateway sees no
#     request while pg_upgrade runs, and its server log names no launcher.
#  3. PostgreSQL 17, first without ft_orders: every table and the catalogue
#     equal the old cluster's; then with it: the launcher releases the
#     leases, every order is settled, each charged once (ledger: 0
#     duplicates), dead letters and refunds as they were, the extension
#     of the same version, new orders paid, old keys replayed.
# Every wait is bounded (pg_ctl -t, wait_until, timeout around pg_upgrade).
#
#   FT_PG_OLD_BIN  PostgreSQL 15's bin folder (default /opt/pg15/usr/lib/postgresql/15/bin)
#   FT_PG_NEW_BIN  PostgreSQL 17's (default /usr/lib/postgresql/17/bin)
#   FT_PG_OLD_LIBS what the old binaries need beyond the system's libraries
#                  (default /opt/pg15/usr/lib/x86_64-linux-gnu: setup.sh)
# Both with ft_orders installed (run.sh builds it for each).

OLD_BIN=${FT_PG_OLD_BIN:-/opt/pg15/usr/lib/postgresql/15/bin}
export LD_LIBRARY_PATH=${FT_PG_OLD_LIBS-/opt/pg15/usr/lib/x86_64-linux-gnu}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
NEW_BIN=${FT_PG_NEW_BIN:-/usr/lib/postgresql/17/bin}
export FT_PG_BIN=$OLD_BIN
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/snapshot.sh"

OLDDATA=""
NEWDATA=""
# at exit, stop whichever cluster still runs, also one that pg_upgrade
# started and left behind (killed by its timeout), each with its own pg_ctl
upgrade_cleanup()
{
	local bin data
	for bin in "$OLD_BIN" "$NEW_BIN"; do
		[ "$bin" = "$OLD_BIN" ] && data=$OLDDATA || data=$NEWDATA
		[ -n "$data" ] && [ -f "$data/postmaster.pid" ] &&
			as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 20 stop >/dev/null 2>&1
	done
	PGDATA=""
	ft_cleanup
}
trap upgrade_cleanup EXIT

N_PAID=20	# paid on 15
N_FLIGHT=24	# placed on 15 while the gateway is slow: in flight or waiting
SETTINGS=(
	"ft_orders.request_timeout = '10s'" "ft_orders.lease_timeout = '60s'"
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'"
	"ft_orders.max_in_flight = 4" "ft_orders.adaptive_concurrency = off"
	"jit = off"	# Debian 12's llvmjit needs LLVM 14, which Debian 13 lacks
)
# q SQL: one value from the server that runs now (PG* variables)
q() { psql -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
status_counts() { q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status) FROM (SELECT status::text, count(*) n FROM ft_orders.orders GROUP BY status) s"; }
# wait_log PATTERN SECONDS: wait until the server log matches PATTERN (grep -E)
wait_log()
{
	local deadline=$(($(date +%s) + $2))
	while [ "$(date +%s)" -le "$deadline" ]; do
		grep -qE "$1" "$PG_LOG" && return 0
		sleep 0.2
	done
	return 1
}
# acl_norm FILE: a catalogue snapshot where an ACL that only spells out the
# owner's default privileges reads as the default (empty): pg_upgrade
# restores those as the default, CREATE EXTENSION writes them out
acl_norm() { sed -E 's/ acl=\{postgres=(arwdDxtm|rwU)\/postgres\} / acl= /' "$1"; }
# ---------------------------------------------------------------------------
# 1. PostgreSQL 15
# ---------------------------------------------------------------------------
is "$("$OLD_BIN/postgres" -V | sed 's/.* \([0-9]*\)\..*/\1/') $("$NEW_BIN/postgres" -V | sed 's/.* \([0-9]*\)\..*/\1/')" \
	"15 17" "old server PostgreSQL 15, new server PostgreSQL 17"
gw_pg_start "${SETTINGS[@]}" || bail_out "the fake gateway or PostgreSQL 15 did not start"
OLDDATA=$PGDATA
OLD_LOG=$PG_LOG
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20
ok $? "15: two payment workers run"

gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422]}' || bail_out "could not set faults"
place_orders paid $N_PAID
q "SELECT count(*) FROM generate_series(1, 2) g, LATERAL ft_orders.place_order('dec-' || g, 'c', 402, 'EUR')" >/dev/null
q "SELECT count(*) FROM generate_series(1, 2) g, LATERAL ft_orders.place_order('rej-' || g, 'c', 422, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "15: $((N_PAID + 4)) orders settled"
paid1=$(q "SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'paid-1'")
paid2=$(q "SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'paid-2'")
paid3=$(q "SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'paid-3'")
q "SELECT ft_orders.refund_order($paid1)" >/dev/null &&
	q "SELECT ft_orders.refund_order($paid2, 50, 'part')" >/dev/null
ok $? "15: a full and a partial refund requested"
wait_until "SELECT count(*) = 2 FROM ft_orders.refunds WHERE status = 'succeeded'" 30
ok $? "15: both refunds succeeded"
is "$(status_counts)" "declined:2 failed:2 paid:$((N_PAID - 2)) partially_refunded:1 refunded:1" \
	"15: orders paid, declined, failed, refunded, partially refunded"
dead_before=$(q "SELECT string_agg(event_id || ':' || order_id, ',' ORDER BY event_id) FROM ft_orders.dead_letters")
is "$(q "SELECT count(*) FROM ft_orders.dead_letters")" "2" "15: two dead letters"

# in flight: each reply takes 12 s (the checks until the stop below took
# seconds on a loaded machine: a reply must not come back before it), each
# worker sends 4 at a time; the gateway charges them once the 12 s are up,
# and 17's workers later get replays
gw_faults '{"latency_ms":12000}' || bail_out "could not slow the gateway"
place_orders fl $N_FLIGHT 1000
q "SELECT ft_orders.refund_order($paid3, 30, 'in-flight')" >/dev/null
ok $? "15: $N_FLIGHT orders and a refund placed while each reply takes 12 s"
wait_until "SELECT sum(in_flight) >= 8 FROM ft_orders.worker_status" 10
ok $? "15: requests are in flight ($(q "SELECT sum(in_flight) FROM ft_orders.worker_status"))"
as_pg pg_ctl -D "$OLDDATA" -m immediate -w -t 30 stop >/dev/null
ok $? "15: stopped with requests in flight"

# a clean shutdown for pg_upgrade, without ft_orders (no launcher to
# release the leases): the state pg_upgrade sees, digested
as_pg pg_ctl -D "$OLDDATA" -l "$OLD_LOG" -o "-c shared_preload_libraries=''" -w -t 60 start >/dev/null ||
	bail_out "15 did not start for recovery"
leased=$(q "SELECT count(*) FROM ft_orders.outbox WHERE lease_until > now()")
cmp_ok "$leased" -gt 0 "15: $leased outbox events are leased (their requests were in flight)"
is "$(q "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "$N_FLIGHT" \
	"15: the $N_FLIGHT orders placed last are pending"
is "$(q "SELECT string_agg(status::text, ',') FROM ft_orders.refunds WHERE idempotency_key = 'in-flight'")" "pending" \
	"15: the last refund is pending"
ft_data_digest >"$FT_TMP/old.digest" || bail_out "digest of the old cluster failed"
ft_catalog_snapshot >"$FT_TMP/old.catalog" || bail_out "catalogue snapshot of the old cluster failed"
ext_before=$(q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")
is "$ext_before" "$(q "SELECT default_version FROM pg_available_extensions WHERE name = 'ft_orders'")" \
	"15: ft_orders $ext_before, the current version"
counts_before=$(status_counts)
max_order=$(q "SELECT max(order_id) FROM ft_orders.orders")
as_pg pg_ctl -D "$OLDDATA" -m fast -w -t 60 stop >/dev/null
ok $? "15: stopped cleanly"
PGDATA=""

# ---------------------------------------------------------------------------
# 2. pg_upgrade
# ---------------------------------------------------------------------------
gw_faults reset || bail_out "could not reset the gateway"
requests_before=$(gw_ledger requests)
NEWDATA=$FT_TMP/pgdata17
PATH="$NEW_BIN:$PATH" pg_init "$NEWDATA" || bail_out "initdb 17 failed"
NEWPORT=$PG_INIT_PORT
UPG=(timeout 300 "$NEW_BIN/pg_upgrade" -b "$OLD_BIN" -B "$NEW_BIN" -d "$OLDDATA" -D "$NEWDATA"
	-p "$(free_port)" -P "$(free_port)" -U postgres -s "$FT_TMP/run")
# (pg_upgrade writes into its working directory)
(cd "$FT_TMP" && as_pg "${UPG[@]}" --check) >"$FT_TMP/check.log" 2>&1
rc=$?
ok $rc "pg_upgrade --check passes with a new cluster that does not preload ft_orders"
[ $rc -eq 0 ] || diag "$(tail -20 "$FT_TMP/check.log")"

{
	echo "shared_preload_libraries = 'ft_orders'"
	echo "ft_orders.database = 'ftdb, fresh'"	# fresh: the catalogue check below
	echo "max_connections = 120"
	echo "ft_orders.gateway_url = '$GW_URL'"
	for s in "${SETTINGS[@]}"; do echo "$s"; done
} >>"$NEWDATA/postgresql.conf"
t0=$(date +%s)
(cd "$FT_TMP" && as_pg "${UPG[@]}" --retain) >"$FT_TMP/upgrade.log" 2>&1
rc=$?
t1=$(date +%s)
ok $rc "pg_upgrade 15 -> 17 with ft_orders preloaded in both clusters ($((t1 - t0)) s)"
[ $rc -eq 0 ] || diag "$(tail -20 "$FT_TMP/upgrade.log")"
[ $rc -eq 124 ] && diag "pg_upgrade did not finish within 300 s"
server_log=$(ls "$NEWDATA"/pg_upgrade_output.d/*/log/pg_upgrade_server.log 2>/dev/null | head -1)
like "$(cat "$server_log" 2>/dev/null)" 'database system is ready to accept connections' \
	"pg_upgrade kept its servers' log"
is "$(grep -cE 'ft_orders (launcher|payment worker|can only be loaded)' "$server_log" 2>/dev/null)" "0" \
	"no ft_orders launcher, worker or message in the servers pg_upgrade ran"
is "$(gw_ledger requests)" "$requests_before" "the gateway saw no request during pg_upgrade"

# ---------------------------------------------------------------------------
# 3. PostgreSQL 17
# ---------------------------------------------------------------------------
PGDATA=$NEWDATA
PG_LOG=$FT_TMP/postgres17.log
export PGPORT=$NEWPORT
PATH="$NEW_BIN:$PATH"
as_pg pg_ctl -D "$NEWDATA" -l "$PG_LOG" -o "-c shared_preload_libraries=''" -w -t 60 start >/dev/null ||
	bail_out "17 did not start"
is "$(q "SELECT current_setting('server_version_num')::int / 10000")" "17" "17: the upgraded cluster runs"
ft_data_digest >"$FT_TMP/new.digest" || bail_out "digest of the new cluster failed"
is "$(diff "$FT_TMP/old.digest" "$FT_TMP/new.digest")" "" \
	"17: every table equal row for row, sequences at the same position (leases included)"
is "$(awk '$1 == "orders" { print $2 }' "$FT_TMP/new.digest")" "$((N_PAID + 4 + N_FLIGHT))" \
	"(all $((N_PAID + 4 + N_FLIGHT)) orders compared)"
ft_catalog_snapshot >"$FT_TMP/new.catalog" || bail_out "catalogue snapshot of the new cluster failed"
as_pg pg_ctl -D "$NEWDATA" -m fast -w -t 60 stop >/dev/null

t2=$(date +%s)
as_pg pg_ctl -D "$NEWDATA" -l "$PG_LOG" -w -t 60 start >/dev/null || bail_out "17 with ft_orders did not start"
is "$(q "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "$ext_before" \
	"17: ft_orders still $ext_before"
wait_until "SELECT NOT EXISTS (SELECT FROM ft_orders.orders WHERE status = 'pending')
            AND NOT EXISTS (SELECT FROM ft_orders.refunds WHERE status = 'pending')" 60
ok $? "17: every order and refund settled"
t3=$(date +%s)
wait_log "ft_orders launcher released $leased outbox lease\(s\)" 10
ok $? \
	"17: the launcher released the $leased leases at start"
cmp_ok "$((t3 - t2))" -lt 50 "17: no order waited out its 60 s lease (all settled in $((t3 - t2)) s)"
is "$(status_counts)" "declined:2 failed:2 paid:$((N_PAID - 3 + N_FLIGHT)) partially_refunded:2 refunded:1" \
	"17: the $N_FLIGHT pending orders are paid, the others as they were (before: $counts_before)"
is "$(q "SELECT string_agg(event_id || ':' || order_id, ',' ORDER BY event_id) FROM ft_orders.dead_letters")" \
	"$dead_before" "17: the dead letters are the same"
is "$(q "SELECT string_agg(status || ':' || amount_minor, ',' ORDER BY refund_id) FROM ft_orders.refunds")" \
	"succeeded:101,succeeded:50,succeeded:30" \
	"17: the refunds succeeded, the one in flight too"
charged=$(q "SELECT count(*) FROM ft_orders.orders WHERE status IN ('paid', 'refunded', 'partially_refunded')")
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charge"
is "$(gw_ledger charges)" "$charged" "ledger: one charge per paid order ($charged)"
is "$(gw_ledger refunds)" "3" "ledger: three refunds, none twice"
is "$(q "SELECT count(*) FROM (SELECT order_id FROM ft_orders.order_events e WHERE status = 'paid'
         AND NOT EXISTS (SELECT FROM ft_orders.refunds r WHERE r.order_id = e.order_id)
         GROUP BY order_id HAVING count(*) <> 1) x")" "0" \
	"each order was recorded paid once"
is "$(q "SELECT count(*) FROM ft_orders.outbox")" "0" "the outbox is empty"

# the upgraded catalogue against a fresh install on 17 (views read back by
# 17's deparser, and the owner's privileges of 17, on both sides)
psql -XAtq -d postgres -c "CREATE DATABASE fresh" >/dev/null &&
	psql -XAtq -d fresh -c "CREATE EXTENSION ft_orders" >/dev/null
ok $? "17: a fresh CREATE EXTENSION ft_orders in another database"
ft_catalog_snapshot -d fresh >"$FT_TMP/fresh.catalog" || bail_out "catalogue snapshot of the fresh install failed"
is "$(diff <(acl_norm "$FT_TMP/fresh.catalog") <(acl_norm "$FT_TMP/new.catalog"))" "" \
	"17: the upgraded extension's catalogue equals a fresh install's ($(grep -c '^member ' "$FT_TMP/new.catalog") members)"

# the upgraded cluster goes on taking orders
new=$(q "SELECT order_id || ' ' || replayed FROM ft_orders.place_order('after-upgrade', 'c', 777, 'EUR')")
cmp_ok "${new% *}" -gt "$max_order" "17: a new order's id ($new) follows the old cluster's last ($max_order)"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'after-upgrade'" 20
ok $? "17: the new order is paid"
is "$(q "SELECT status || ' ' || replayed FROM ft_orders.place_order('paid-4', 'cust', 104, 'EUR')")" "paid true" \
	"17: a key placed on 15 replays its order"
is "$(grep -c 'terminated by signal' "$PG_LOG" "$OLD_LOG" | awk -F: '{ t += $2 } END { print t }')" "0" \
	"no process crashed"

done_testing
