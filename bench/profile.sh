#!/usr/bin/env bash
# bench/profile.sh intake|drain [SECONDS]: profiling evidence for the
# benchmark figures (not run by `make bench`; run after bash tests/setup/build.sh).
#
#   intake: pgbench place_order (as bench/run.sh) with pg_stat_statements
#           (track = all, so the statements inside place_order show), wait
#           events of the backends sampled every 10 ms, and perf -g on them.
#   drain:  100,000 (FT_PROFILE_N) pre-loaded orders drained against the
#           fake gateway with the same sampling on the payment workers.
# Output under FT_PROFILE_DIR (default bench/results/profile-<what>/):
# statements.txt, waits.txt, perf.txt (perf report --no-children, top entries).
set -uo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
source "$BENCH/../tests/lib/common.sh"
what=${1:?intake or drain}
secs=${2:-20}
N=${FT_PROFILE_N:-100000}
OUTDIR=${FT_PROFILE_DIR:-$BENCH/results/profile-$what}
mkdir -p "$OUTDIR"

gw_start || exit 1
pg_start "fsync = on" "synchronous_commit = on" "shared_buffers = '2GB'" "wal_buffers = '64MB'" \
	"max_wal_size = '16GB'" "checkpoint_timeout = '30min'" \
	"shared_preload_libraries = 'ft_orders,pg_stat_statements'" \
	"pg_stat_statements.track = all" "track_io_timing = on" \
	"ft_orders.gateway_url = ''" || exit 1
psql_q "CREATE EXTENSION pg_stat_statements" >/dev/null

# sample_waits SECONDS PIDFILTER_SQL -> waits.txt (share of samples per wait event)
sample_waits()
{
	local until=$(($(date +%s) + $1))
	: >"$OUTDIR/waits.raw"
	while [ "$(date +%s)" -lt "$until" ]; do
		psql -XAtq -c "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity WHERE $2" >>"$OUTDIR/waits.raw" 2>/dev/null
		sleep 0.01
	done
	sort "$OUTDIR/waits.raw" | uniq -c | sort -rn | awk '{s[NR]=$0; t+=$1} END {for (i=1;i<=NR;i++) {split(s[i],a," "); printf "%6.1f%%  %s\n", 100*a[1]/t, a[2]}}' >"$OUTDIR/waits.txt"
}

statements()
{
	psql -X -c "SELECT calls, round(total_exec_time::numeric, 0) AS total_ms,
	        round(mean_exec_time::numeric, 3) AS mean_ms, rows,
	        round((100 * total_exec_time / sum(total_exec_time) OVER ())::numeric, 1) AS pct,
	        wal_records, pg_size_pretty(wal_bytes) AS wal,
	        left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query
	   FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_stat_activity%'
	  ORDER BY total_exec_time DESC LIMIT 15" >"$OUTDIR/statements.txt"
}

perf_on()	# PIDS(comma) SECONDS
{
	perf record -F 499 -g -o "$OUTDIR/perf.data" -p "$1" -- sleep "$2" >/dev/null 2>&1
	perf report -i "$OUTDIR/perf.data" --no-children --stdio --percent-limit 1.5 -g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -40 >"$OUTDIR/perf.txt"
	perf report -i "$OUTDIR/perf.data" --children --stdio --percent-limit 4 -g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -40 >"$OUTDIR/perf_children.txt"
}

case "$what" in
intake)
	psql_q "CREATE TABLE bench_bare (LIKE ft_orders.orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)" >/dev/null
	for script in intake_bare intake_place_order; do
		psql_q "SELECT pg_stat_statements_reset()" >/dev/null
		pgbench -n -M prepared -c 8 -j 2 -T "$secs" -D run="p$RANDOM" -f "$BENCH/$script.sql" >"$OUTDIR/pgbench-$script.txt" 2>&1 &
		pb=$!
		sleep 2
		pids=$(psql_q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench'")
		sample_waits $((secs / 2 - 1)) "application_name = 'pgbench'"
		mv "$OUTDIR/waits.txt" "$OUTDIR/waits-$script.txt"
		[ "$script" = intake_place_order ] && perf_on "$pids" $((secs / 2 - 3))
		wait "$pb"
		statements; mv "$OUTDIR/statements.txt" "$OUTDIR/statements-$script.txt"
		psql_q "SELECT * FROM pg_stat_wal" >"$OUTDIR/wal-$script.txt"
		psql_q "SELECT pg_stat_reset_shared('wal')" >/dev/null
	done
	;;
drain)
	a=1
	while [ "$a" -le "$N" ]; do
		psql_q "SELECT count(*) FROM generate_series($a, $((a + 9999))) g,
		        LATERAL ft_orders.place_order('p-' || g, 'c', 1000, 'EUR') p" >/dev/null
		a=$((a + 10000))
	done
	psql_q "VACUUM ANALYZE ft_orders.outbox" >/dev/null; psql_q "CHECKPOINT" >/dev/null
	psql_q "SELECT pg_stat_statements_reset()" >/dev/null
	t0=$(date +%s.%N)
	pg_set ft_orders.gateway_url "$GW_URL"
	sleep 1
	pids=$(psql_q "SELECT string_agg(pid::text, ',') FROM ft_orders.worker_status")
	( perf_on "$pids" "$secs" ) &
	pf=$!
	sample_waits "$secs" "backend_type LIKE 'ft_orders%' OR pid IN ($pids)"
	wait "$pf"
	while [ "$(psql_q 'SELECT count(*) FROM ft_orders.outbox')" != 0 ]; do sleep 0.2; done
	echo "drained $N in $(echo "$(date +%s.%N) - $t0" | bc -l) s" >"$OUTDIR/drain.txt"
	psql_q "SELECT * FROM ft_orders.worker_status" >>"$OUTDIR/drain.txt"
	psql_q "SELECT * FROM ft_orders.gateway_status" >>"$OUTDIR/drain.txt"
	statements
	;;
esac
echo "# profile in $OUTDIR"; ls "$OUTDIR"
