#!/bin/bash
# soak.sh (`make soak`, not in `make test`): an hour of steady load under
# MVCC pressure, every table bounded, the claim flat.
#
# FT_SOAK_SECS (3600) at FT_SOAK_RATE orders/s (1000): pgbench -R runs
# bench/latency_place_order.sql (one place_order per transaction) against
# the fake gateway with faults (3 % HTTP 503, 1 % lost replies held 1.5 s
# against a 1 s request_timeout), retention of minutes (idempotency_ttl
# and audit_retention 2 min, history_retention 1 min: the launcher's
# purges run every minute).  Throughout:
#   - one REPEATABLE READ snapshot held from the start (a psql on a fifo)
#     until the last FT_SOAK_TAIL_SECS (max(60, SECS/10)), then released
#     and the ft_orders tables VACUUMed;
#   - one LISTEN ft_orders_events session idle in a transaction;
#   - one pg_dump -Fc of the database in the middle (it must complete).
# Every 10 s a JSON line goes to FT_SOAK_OUT (bench/results/soak_DATE.jsonl):
# pg_relation_size of every ft_orders table and index, n_live_tup and
# n_dead_tup per table, each payment worker's private RSS (RssAnon +
# RssFile), the drain lag (pending events, age of the oldest), the shared
# buffers one claim reads from ft_orders._claim_floor() (the head of the
# index when it is NULL; claim_buffers, tests/lib/common.sh), and, added at the
# end by bench/soak_series.py, commit -> gateway p50/p99 of the orders
# placed in those 10 s.  bench/plots.py soak draws them into
# FT_SOAK_PLOTS (bench/results/plots).
#
# Pass (TAP): every order paid exactly once at the gateway; worker RSS
# flat (growth <= FT_SOAK_MAX_GROWTH_KB from the sample at 10 % to the
# end) and no worker restarted; p99 and claim buffers flat while the
# snapshot is held (median of the last tenth of the held period <= 2 x
# the median of its first tenth after a 30 s warm-up + 50 ms / + RATE
# buffers); the retention-bounded tables bounded (see the end); pg_dump
# completed.  FT_SOAK_RETENTION_SECS (120) sets idempotency_ttl and
# audit_retention.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

SECS=${FT_SOAK_SECS:-3600}
RATE=${FT_SOAK_RATE:-1000}
TAIL=${FT_SOAK_TAIL_SECS:-$((SECS / 10 > 60 ? SECS / 10 : 60))}
MAX_KB=${FT_SOAK_MAX_GROWTH_KB:-2048}
TTL_S=${FT_SOAK_RETENTION_SECS:-120}
[ "$TTL_S" -ge 60 ] || bail_out "FT_SOAK_RETENTION_SECS must be 60 or more (audit_retention's minimum)"
AUDIT_S=$TTL_S
OUT=${FT_SOAK_OUT:-$FT_ROOT/bench/results/soak_$(date -u +%F).jsonl}
PLOTS=${FT_SOAK_PLOTS:-$FT_ROOT/bench/results/plots}
[ "$TAIL" -lt "$SECS" ] || bail_out "FT_SOAK_SECS ($SECS) must exceed the tail after the release ($TAIL)"
WARMUP=30
PY=/usr/bin/python3	# Debian's, with python3-matplotlib (tests/setup/deps.sh --bench)
RELEASE=$((SECS - TAIL))
RUN=soak$RANDOM

soak_cleanup()
{
	[ -n "${SAMPLER_PID:-}" ] && kill "$SAMPLER_PID" 2>/dev/null
	exec 7>&- 8>&- 2>/dev/null
	ft_cleanup
}
trap soak_cleanup EXIT

gw_pg_start "track_commit_timestamp = on" "autovacuum_naptime = 10" \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '10ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 100000" \
	"ft_orders.idempotency_ttl = '${TTL_S}s'" "ft_orders.audit_retention = '${AUDIT_S}s'" \
	"ft_orders.history_retention = '1min'" "log_min_messages = warning" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"fail_rate":0.03,"fail_status":503,"timeout_rate":0.01,"hang_ms":1500}' ||
	bail_out "could not set faults"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20 ||
	bail_out "workers did not start"
PIDS=$(psql_q "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status")

open_session 8 listen "LISTEN ft_orders_events; BEGIN; SELECT 1;"
open_session 7 snap "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ft_orders.orders;"
wait_until "SELECT count(*) = 2 FROM pg_stat_activity WHERE state = 'idle in transaction'" 10 ||
	bail_out "the snapshot and LISTEN sessions are not idle in their transactions"
SNAP_PID=$(psql_q "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xmin IS NOT NULL")
[ -n "$SNAP_PID" ] || bail_out "no session holds a snapshot"

# --- the sampler -------------------------------------------------------------------
# rss_json: {"pid": private kB, ...} of the payment workers
rss_json()
{
	local p out=""
	for p in $(psql_q "SELECT pid FROM ft_orders.worker_status WHERE pid > 0"); do
		out="$out,\"$p\":$(awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {print a+f}' "/proc/$p/status" 2>/dev/null || echo null)"
	done
	echo "{${out#,}}"
}

SAMPLE_SQL="SELECT json_build_object(
  't', extract(epoch FROM clock_timestamp()),
  'held', EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $SNAP_PID AND state = 'idle in transaction'),
  'size', (SELECT json_object_agg(c.relname, pg_relation_size(c.oid) ORDER BY c.relname)
             FROM pg_class c WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('r', 'i', 'p')),
  'tup', (SELECT json_object_agg(relname, json_build_array(n_live_tup, n_dead_tup) ORDER BY relname)
            FROM pg_stat_user_tables WHERE schemaname = 'ft_orders'),
  'pending', (SELECT count(*) FROM ft_orders.outbox),
  'oldest_pending_s', (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM ft_orders.outbox),
  'floor_lag_s', extract(epoch FROM now() - ft_orders._claim_floor()),
  'notify_queue', pg_notification_queue_usage())"

# commits K FROM TO: '<K> <order_id> <commit_us>' of the orders placed
# between FROM and TO (server times; their transactions have committed)
commits()
{
	psql_q "SELECT $1, k.order_id, (extract(epoch FROM pg_xact_commit_timestamp(k.xmin)) * 1000000)::bigint
	          FROM ft_orders.idempotency_keys k
	         WHERE k.created_at >= to_timestamp($2) AND k.created_at < to_timestamp($3)
	           AND k.idempotency_key LIKE 'lat-$RUN-%'" | tr '|' ' '
}

sampler()
{
	local k=0 line prev="" prevprev="" t cb
	exec 7>&- 8>&-	# the sessions' fifos end when the main shell closes them
	while :; do
		cb=$(claim_buffers "$(psql_q "SELECT coalesce(ft_orders._claim_floor(), '-infinity')")") || cb=null
		line=$(psql_q "$SAMPLE_SQL") &&
			line=$(jq -c --argjson k "$k" --argjson rss "$(rss_json)" --argjson cb "$cb" \
				'. + {k: $k, rss_kb: $rss, claim_buffers: $cb}' <<<"$line") &&
			echo "$line" >>"$FT_TMP/samples.jsonl"
		t=$(jq -r .t <<<"$line")
		# the orders placed between samples k-2 and k-1 belong to sample k-1
		[ -n "$prevprev" ] && commits $((k - 1)) "$prevprev" "$prev" >>"$FT_TMP/commits.txt"
		prevprev=$prev prev=$t k=$((k + 1))
		sleep $((10 - $(date +%s) % 10))
	done
}

# event NAME: the time of a step of the run, for the plots
event() { echo "{\"event\":\"$1\",\"t\":$(date +%s.%N)}" >>"$FT_TMP/events.jsonl"; }

# --- the run -------------------------------------------------------------------------
t0=$(date +%s)
sampler &
SAMPLER_PID=$!
FT_PIDS+=("$SAMPLER_PID")
event start
diag "$SECS s at $RATE orders/s, snapshot released at ${RELEASE} s, pg_dump at $((SECS / 2)) s; samples in $OUT"
(exec 7>&- 8>&-; cd "$FT_TMP" && exec pgbench -n -M prepared -c 8 -j 2 -R "$RATE" -T "$SECS" -D run="$RUN" -D n=0 \
	-f "$FT_ROOT/bench/latency_place_order.sql" >"$FT_TMP/pgbench.out" 2>&1) &
BENCH_PID=$!
FT_PIDS+=("$BENCH_PID")

# until_s S: sleep until S seconds into the run
until_s() { local d=$((t0 + $1 - $(date +%s))); [ "$d" -gt 0 ] && sleep "$d"; return 0; }

until_s $((SECS / 2))
event dump_start
dump_t=$(date +%s)
pg_dump -Fc -f "$FT_TMP/soak.dump" ftdb 2>"$FT_TMP/dump.err"
dump_rc=$?
event dump_end
diag "pg_dump: rc $dump_rc in $(( $(date +%s) - dump_t )) s, $(stat -c %s "$FT_TMP/soak.dump" 2>/dev/null) bytes"

until_s "$RELEASE"
is "$(psql_q "SELECT state FROM pg_stat_activity WHERE pid = $SNAP_PID")" "idle in transaction" \
	"the REPEATABLE READ snapshot was held until $RELEASE s"
echo "COMMIT;" >&7
exec 7>&-
event release
wait_until "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $SNAP_PID)" 10
psql_q "VACUUM (ANALYZE) ft_orders.outbox, ft_orders.idempotency_keys, ft_orders.payment_attempts,
        ft_orders.order_events, ft_orders.gateway_events" >/dev/null
ok $? "VACUUM of the ft_orders tables after the release"
event vacuum

# the retention-bounded tables just before the load ends: nothing older
# than its retention + the purge period (60 s) + 30 s left
until_s $((SECS - 5))
ages=$(psql_q "SELECT (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::int FROM ft_orders.idempotency_keys)
                || ' ' || (SELECT coalesce(extract(epoch FROM now() - min(started_at)), 0)::int FROM ft_orders.payment_attempts)
                || ' ' || (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::int FROM ft_orders.order_events)")
read -r age_keys age_attempts age_events <<<"$ages"
cmp_ok "$age_keys" -le $((TTL_S + 90)) "idempotency_keys: the oldest key is ${age_keys} s old (idempotency_ttl ${TTL_S} s)"
cmp_ok "$age_attempts" -le $((AUDIT_S + 90)) "payment_attempts: the oldest row is ${age_attempts} s old (audit_retention ${AUDIT_S} s)"
cmp_ok "$age_events" -le $((AUDIT_S + 90)) "order_events: the oldest row is ${age_events} s old (audit_retention ${AUDIT_S} s)"

wait "$BENCH_PID"
ok $? "pgbench ran for $SECS s"
diag "pgbench: $(grep -E '^(number of transactions actually|tps|latency average|rate limit schedule lag)' "$FT_TMP/pgbench.out" | tr '\n' ' ')"
event load_end
placed=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'lat-$RUN-%'")
wait_until "SELECT count(*) = 0 FROM ft_orders.outbox" 120
ok $? "the outbox drained after the load ($placed orders placed)"
sleep 12	# one more sample of the drained state
kill "$SAMPLER_PID" 2>/dev/null
wait "$SAMPLER_PID" 2>/dev/null

# --- verdicts --------------------------------------------------------------------------
cmp_ok "$placed" -ge $((SECS * RATE * 9 / 10)) "at least 90 % of $((SECS * RATE)) orders placed"
is "$(psql_q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
              FROM (SELECT status, count(*) n FROM ft_orders.orders GROUP BY status) s")" \
	"paid:$placed" "every order is paid"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$placed 0" "ledger: one charge per order, no duplicate"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "no dead letter"
diag "gateway: $(curl -fsS "$GW_URL/ledger" | jq -c '{requests, faults_injected, lost_replies, replays}')"
is "$dump_rc" "0" "pg_dump in the middle completed ($(head -c 200 "$FT_TMP/dump.err"))"
is "$(psql_q "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status")" "$PIDS" \
	"the payment workers never restarted"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
echo "COMMIT;" >&8
exec 8>&-

curl -fsS "$GW_URL/ledger/receipts" >"$FT_TMP/receipts.txt"
mkdir -p "$(dirname "$OUT")"
"$PY" "$FT_ROOT/bench/soak_series.py" "$FT_TMP/samples.jsonl" "$FT_TMP/events.jsonl" \
	"$FT_TMP/commits.txt" "$FT_TMP/receipts.txt" "$OUT" "$WARMUP" >"$FT_TMP/judge.txt" ||
	bail_out "soak_series.py failed"
cat "$FT_TMP/judge.txt" | sed 's/^/# /'
# fig NAME -> the values soak_series.py printed for NAME
fig() { awk -v n="$1" '$1 == n {$1 = ""; print substr($0, 2)}' "$FT_TMP/judge.txt"; }

is "$(fig latency_missing)" "0" "every order of the samples reached the gateway"
p99a=$(fig p99_first_ms) p99b=$(fig p99_last_ms)
ok "$(python3 -c "import sys; sys.exit(not $p99b <= 2 * $p99a + 50)"; echo $?)" \
	"p99 flat while the snapshot is held: last tenth $p99b ms <= 2 x first tenth $p99a ms + 50"
cba=$(fig claim_first) cbb=$(fig claim_last)
# the floor trails now() by about a second, so a claim may walk up to a
# second of index entries (and their heap tuples) whatever the hold: RATE
# buffers of slack; from the head of the index it would walk every dead
# entry the hold kept (the outbox's n_dead_tup, in the plots)
cmp_ok "$cbb" -le $((2 * cba + RATE)) \
	"claim buffers flat while the snapshot is held: last tenth $cbb <= 2 x first tenth $cba + $RATE (max $(fig claim_max))"
for p in $PIDS; do
	g=$(fig "rss_growth_kb_$p")
	cmp_ok "$g" -le "$MAX_KB" "payment worker $p: private RSS growth from 10 % of the run to the end ${g} kB <= $MAX_KB kB"
done
# sizes: while the snapshot is held nothing purged can be vacuumed, so
# these tables grow with the load (the held-snapshot effect); once it is
# released and VACUUMed they reuse the space: table + indexes grow after
# the VACUUM at most a quarter as fast as they grew while it was held
# (256 kB of slack for the shortest runs)
for t in outbox idempotency_keys payment_attempts order_events; do
	read -r held after dur <<<"$(fig "growth_$t")"
	ok "$(python3 -c "import sys; sys.exit(not $after <= max(0.25 * $held * $dur, 262144))"; echo $?)" \
		"$t: plateaus after the release ($after bytes in $dur s; $held bytes/s while held)"
done

"$PY" "$FT_ROOT/bench/plots.py" soak "$OUT" "$PLOTS" | sed 's/^/# /'
ok "${PIPESTATUS[0]}" "plots drawn into $PLOTS"
done_testing
