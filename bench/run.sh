#!/usr/bin/env bash
# bench/run.sh: `make bench` (bench/README.md).  Self-contained like `make test`:
# installs what is missing (+ wrk), builds and installs the extension, starts
# a throwaway fsync'ing server and the fake gateway, runs each benchmark with
# its baseline in the same run, prints a table and writes
# bench/results/latest.json, the raw series behind the plots
# (latest.series.json) and the plots (bench/plots.py; bench/results/latest.plots/).
#
#   FT_BENCH="intake drain mvcc latency memory crash failover" parts to run (default all)
#   FT_BENCH_SCALE=small                               quick smoke run (minutes)
#   FT_BENCH_OUT=file.json                             other output file (series: file.series.json)
#   FT_BENCH_PLOTS=dir                                 other folder for the plots (default: file.plots/)
#   FT_BENCH_INTAKE_RUNS / _INTAKE_SECS / _DRAIN_N / _DRAIN_RUNS / _LAT_RATE /
#   _LAT_SECS / _MEM_N / _CRASH_N / _CRASH_RUNS /
#   _DRILL_RUNS / _WRK_SECS / _MVCC_N                  override one knob
#   FT_BENCH_DRAIN_FAULTS=0                            drain part: the healthy and 20 ms drains only
#                                                      (no 503/500/Retry-After/rate-limited drains)
#   FT_KEEP_TMP=1                                      keep the temp folder (logs)
set -uo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
cd "$ROOT"

bash tests/setup/deps.sh --bench || exit 1
bash tests/setup/build.sh || exit 1

source "$ROOT/tests/lib/common.sh"
PY=/usr/bin/python3

PARTS=${FT_BENCH:-intake drain mvcc latency memory crash failover}
SCALE=${FT_BENCH_SCALE:-full}
export FT_BENCH_SCALE=$SCALE FT_BENCH="$PARTS"
if [ "$SCALE" = small ]; then
	d_intake_runs=3 d_intake_secs=5 d_drain_n=10000 d_drain_runs=1 d_lat_secs=5
	d_mem_n=50000 d_drill_runs=1 d_wrk_secs=3 d_mvcc_n=5000 d_crash_n=5000 d_crash_runs=1
else
	d_intake_runs=3 d_intake_secs=20 d_drain_n=100000 d_drain_runs=3 d_lat_secs=20
	d_mem_n=1000000 d_drill_runs=3 d_wrk_secs=10 d_mvcc_n=100000 d_crash_n=20000 d_crash_runs=3
fi
INTAKE_RUNS=${FT_BENCH_INTAKE_RUNS:-$d_intake_runs}
INTAKE_SECS=${FT_BENCH_INTAKE_SECS:-$d_intake_secs}
DRAIN_N=${FT_BENCH_DRAIN_N:-$d_drain_n}
DRAIN_RUNS=${FT_BENCH_DRAIN_RUNS:-$d_drain_runs}
LAT_RATE=${FT_BENCH_LAT_RATE:-1000}
LAT_SECS=${FT_BENCH_LAT_SECS:-$d_lat_secs}
MEM_N=${FT_BENCH_MEM_N:-$d_mem_n}
DRILL_RUNS=${FT_BENCH_DRILL_RUNS:-$d_drill_runs}
CRASH_N=${FT_BENCH_CRASH_N:-$d_crash_n}
CRASH_RUNS=${FT_BENCH_CRASH_RUNS:-$d_crash_runs}
WRK_SECS=${FT_BENCH_WRK_SECS:-$d_wrk_secs}
MVCC_N=${FT_BENCH_MVCC_N:-$d_mvcc_n}
OUT=${FT_BENCH_OUT:-$BENCH/results/latest.json}
PLOTS=${FT_BENCH_PLOTS:-${OUT%.json}.plots}
FIGS=$FT_TMP/figures.jsonl
: >"$FIGS"
# raw series for the plots: drain_<label>.txt, latency_*_ms.txt, drills.jsonl
SERIES=$FT_TMP/series
mkdir -p "$SERIES"
RUN_ID=$(date +%s)

has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
log() { echo "# $(date +%H:%M:%S) $*" >&2; }
fig() { "$PY" "$BENCH/report.py" add "$FIGS" "$@"; }
median() { "$PY" "$BENCH/report.py" stats "$1"; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }

# --- the server: real fsync, synchronous commit ----------------------------
start_server()
{
	gw_start || { echo "fake gateway did not start" >&2; exit 1; }
	pg_start "fsync = on" "synchronous_commit = on" "full_page_writes = on" \
		"shared_buffers = '2GB'" "wal_buffers = '64MB'" "max_wal_size = '16GB'" \
		"checkpoint_timeout = '30min'" "max_connections = 120" \
		"ft_orders.gateway_url = ''" "track_commit_timestamp = on" \
		"log_min_messages = warning" ||
		{ echo "server did not start" >&2; exit 1; }
	wait_until "SELECT count(*) > 0 AND bool_and(state = 'idle') FROM ft_orders.worker_status" 30 ||
		log "warning: workers not idle after 30 s"
	log "server on port $PGPORT ($PGDATA), gateway $GW_URL"
}

# gateway_off / gateway_on: workers idle / draining (SIGHUP settings)
gateway_off() { pg_set ft_orders.gateway_url ''; sleep 1; }
gateway_on() { pg_set ft_orders.gateway_url "$GW_URL"; }

# preload PREFIX N: N pending orders in chunks of 10,000 (one transaction each)
preload()
{
	local prefix=$1 n=$2 a=1 b
	while [ "$a" -le "$n" ]; do
		b=$((a + 9999)); [ "$b" -gt "$n" ] && b=$n
		psql_q "SELECT count(*) FROM generate_series($a, $b) g,
		        LATERAL ft_orders.place_order('$prefix-' || g, 'cust-' || (g % 97), 1000, 'EUR') p" >/dev/null ||
			return 1
		a=$((b + 1))
	done
}

outbox_count() { psql_q "SELECT count(*) FROM ft_orders.outbox" 2>/dev/null; }

# wait_drained LIMIT_S [CHARGES [PROGRESS]]: until the outbox is empty;
# fails after LIMIT_S.  With CHARGES, first until the fake gateway counts
# that many charges (its /ledger summary is a few counters), so that the
# clock is not read by a count(*) over a large outbox every 100 ms, which
# took CPU from the workers being measured.  Each of those polls appends
# "<unix time> <charges>" to PROGRESS if given (the drain plot)
wait_drained()
{
	local limit=$1 charges=${2:-} progress=${3:-} t0 c
	t0=$(date +%s)
	while [ -n "$charges" ]; do
		c=$(curl -fsS "$GW_URL/ledger" 2>/dev/null | jq -r '.charges // 0')
		[ -n "$progress" ] && echo "$EPOCHREALTIME ${c:-0}" >>"$progress"
		[ "${c:-0}" -ge "$charges" ] && break
		drain_hopeless "$t0" "$limit" && return 1
		sleep 0.05
	done
	while [ "$(outbox_count)" != 0 ]; do
		drain_hopeless "$t0" "$limit" && return 1
		sleep 0.05
	done
}

# drain_hopeless T0 LIMIT_S: the wait is over LIMIT_S, or a server process
# crashed (a crashing worker restarts the whole server: no use waiting)
drain_hopeless()
{
	[ $(($(date +%s) - $1)) -ge "$2" ] && return 0
	if grep -q "terminated by signal" "$PG_LOG"; then
		log "a server process crashed: $(grep -m1 'terminated by signal' "$PG_LOG")"
		return 0
	fi
	return 1
}

# clean_slate: empty the ft_orders tables (workers idle) so that each part
# drains only its own orders
clean_slate()
{
	gateway_off
	psql_q "TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	        ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events" >/dev/null
	psql_q "VACUUM ANALYZE" >/dev/null
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
}

# --- intake ------------------------------------------------------------------
pgbench_tps()	# SCRIPT SECS -> tps
{
	local out
	out=$(pgbench -n -M prepared -c 8 -j 2 -T "$2" -D run="$RUN_ID$RANDOM" -f "$1" 2>&1)
	echo "$out" >>"$FT_TMP/pgbench.log"
	echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p'
}

bench_intake()
{
	log "intake: pgbench -M prepared -c 8 -j 2, $INTAKE_RUNS x $INTAKE_SECS s each (fsync on, synchronous_commit on)"
	gateway_off
	psql_q "CREATE TABLE IF NOT EXISTS bench_bare (LIKE ft_orders.orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)" >/dev/null
	psql_q "SELECT count(*) FROM generate_series(1, 1000) g,
	        LATERAL ft_orders.place_order('replay-' || g, 'cust-replay', 1000, 'EUR', '[]'::jsonb, 'pm_card_visa')" >/dev/null
	local bare="" po="" rp="" t i
	# warm-up of each, then the runs interleaved so drift hits both alike
	pgbench_tps "$BENCH/intake_bare.sql" 2 >/dev/null
	pgbench_tps "$BENCH/intake_place_order.sql" 2 >/dev/null
	for i in $(seq 1 "$INTAKE_RUNS"); do
		psql_q "CHECKPOINT" >/dev/null
		t=$(pgbench_tps "$BENCH/intake_bare.sql" "$INTAKE_SECS"); bare="$bare $t"
		psql_q "CHECKPOINT" >/dev/null
		t=$(pgbench_tps "$BENCH/intake_place_order.sql" "$INTAKE_SECS"); po="$po $t"
		psql_q "CHECKPOINT" >/dev/null
		t=$(pgbench_tps "$BENCH/intake_replay10.sql" "$INTAKE_SECS"); rp="$rp $t"
		log "intake run $i: bare $(echo $bare | awk '{print $NF}') place_order $(echo $po | awk '{print $NF}') replay10 $t tps"
	done
	local mb mp ratios="" j
	mb=$(median "$bare"); mp=$(median "$po")
	# per-run ratios (run i of place_order / run i of bare)
	read -r -a B <<<"$bare"; read -r -a P <<<"$po"
	for j in "${!P[@]}"; do ratios="$ratios $(echo "${P[$j]} / ${B[$j]}" | bc -l)"; done
	fig intake_tps tps "$mb" "$po" "" "place_order, fresh keys; baseline: bare INSERT tps (same width, same clients)"
	fig intake_vs_bare_insert ratio "" "$ratios" "$(echo "$mp / $mb" | bc -l)" "median place_order tps / median bare INSERT tps; runs: per-run ratios"
	fig intake_bare_insert_tps tps "" "$bare"
	fig intake_replay10_tps tps "$mp" "$rp" "" "10 % replays of 1000 keys; baseline: place_order fresh keys"
	psql_q "TRUNCATE bench_bare" >/dev/null
}

# --- drain -------------------------------------------------------------------
wrk_ceiling()	# -> req/s of the fake gateway alone
{
	local out
	out=$(wrk -t2 -c64 -d"${WRK_SECS}s" -s "$ROOT/tests/fake_gateway/bench_post.lua" "$GW_URL" 2>&1)
	echo "$out" >>"$FT_TMP/wrk.log"
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'
}

# cpu_ticks PID... -> user + system CPU of those processes (all their
# threads) so far, in clock ticks
cpu_ticks()
{
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)
# cpu_runs SETTING COLUMN -> the runs' CPU figures (1 workers, 2 gateway)
cpu_runs() { awk -v c="$2" '{print $c}' "$FT_TMP/cpu.$1" 2>/dev/null | xargs; }

# drain_once LABEL N -> payments/s (all N paid), or empty on a timeout.
# Also appends "worker_us gateway_us" (CPU per payment over the whole
# drain: both payment workers, the fake gateway) to $FT_TMP/cpu.SETTING
drain_once()
{
	local label=$1 n=$2 prefix t0 el paid limit wpids w0 g0 wus gus
	prefix="dr-$RUN_ID-$label"
	# every drain starts from empty tables: with the tables of the runs
	# before, later runs drained up to a third slower than earlier ones
	# (the drift then favoured whichever setting ran first in a round)
	clean_slate
	preload "$prefix" "$n" || { log "preload failed"; return 1; }
	# the whole database, not only the outbox, so that autovacuum has
	# nothing to do on this drain's clock
	psql_q "VACUUM ANALYZE" >/dev/null
	psql_q "CHECKPOINT" >/dev/null
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	limit=$((n / 100 + 120))
	wpids=$(psql_q "SELECT string_agg(pid::text, ' ') FROM ft_orders.worker_status WHERE pid > 0")
	w0=$(cpu_ticks $wpids); g0=$(cpu_ticks "$GW_PID")
	t0=$(now)
	echo "$t0 0" >"$SERIES/drain_$label.txt"
	gateway_on
	if ! wait_drained "$limit" "$n" "$SERIES/drain_$label.txt"; then
		log "drain $label: not drained after $limit s ($(outbox_count) left)"
	fi
	el=$(since "$t0")
	wus=$(echo "($(cpu_ticks $wpids) - $w0) * 1000000 / $HZ / $n" | bc -l)
	gus=$(echo "($(cpu_ticks "$GW_PID") - $g0) * 1000000 / $HZ / $n" | bc -l)
	echo "$wus $gus" >>"$FT_TMP/cpu.${label%%[0-9]*}"
	paid=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' AND status = 'paid'")
	log "drain $label: $paid/$n paid in $(printf %.2f "$el") s, CPU per payment: workers $(printf %.0f "$wus") µs, fake gateway $(printf %.0f "$gus") µs; gateway $(curl -fsS "$GW_URL/ledger" | jq -c '{charges,duplicates,requests,faults_injected}')"
	[ "$paid" = "$n" ] || return 1
	echo "$n / $el" | bc -l
}

# the drain settings: ft_orders.max_in_flight / batch_size for the drain
# figures (FT_BENCH_DRAIN_INFLIGHT / _BATCH); the defaults (64 / 100) are
# measured too, as drain_defaults_per_s
DRAIN_INFLIGHT=${FT_BENCH_DRAIN_INFLIGHT:-256}
DRAIN_BATCH=${FT_BENCH_DRAIN_BATCH:-500}
# the rate-limited drains: the fake gateway allows RL_RATE (and
# RL_RATE_LOW) requests/s (429 with Retry-After beyond), 15 s worth of
# orders (RL_N), no ft_orders.rate_limit, the default settings
RL_RATE=${FT_BENCH_RL_RATE:-100}
RL_N=${FT_BENCH_RL_N:-$((RL_RATE * 15))}
RL_RATE_LOW=${FT_BENCH_RL_RATE_LOW:-50}
RL_N_LOW=$((RL_N * RL_RATE_LOW / RL_RATE))

# rl_drain LABEL RATE N -> "goodput_ratio 429_share" of one drain against
# the fake gateway limited to RATE requests/s (the whole drain, first
# second included), or nothing when not all N were paid
rl_drain()
{
	local label=$1 rate=$2 n=$3 r req lim steady
	gw_faults "{\"rate_limit_per_s\":$rate}"
	r=$(drain_once "$label" "$n") || { gw_faults reset; return 0; }
	req=$(curl -fsS "$GW_URL/ledger" | jq -r .requests)
	lim=$(curl -fsS "$GW_URL/ledger" | jq -r .rate_limited)
	# after the first 3 s: "requests limited ok seconds"
	steady=$("$PY" "$ROOT/tests/integration/harness/gateway_log.py" "$GW_URL" steady 3)
	log "drain $label: $lim of $req requests answered 429; after the first 3 s: $steady (requests, 429s, accepted, seconds)"
	echo "$(echo "$r / $rate" | bc -l) $(echo "$lim / $req" | bc -l) $(echo "$steady" | awk '$1 > 0 {print $2 / $1}')"
	gw_faults reset
}

drain_settings()	# INFLIGHT BATCH (empty: defaults)
{
	if [ -n "${1:-}" ]; then
		psql_q "ALTER SYSTEM SET ft_orders.max_in_flight = $1" >/dev/null
		psql_q "ALTER SYSTEM SET ft_orders.batch_size = $2" >/dev/null
	else
		psql_q "ALTER SYSTEM RESET ft_orders.max_in_flight" >/dev/null
		psql_q "ALTER SYSTEM RESET ft_orders.batch_size" >/dev/null
	fi
	pg_reload
}

bench_drain()
{
	log "drain: $DRAIN_N orders x $DRAIN_RUNS per setting (max_in_flight $DRAIN_INFLIGHT, batch_size $DRAIN_BATCH; also the defaults); wrk baseline ${WRK_SECS}s"
	gw_faults reset
	local ceil zero="" aoff="" lat="" flt="" fl25="" ra20="" rlg="" rl429="" rl429s="" rlg50="" rl429_50="" dflt="" r i g s429 s3
	ceil=$(wrk_ceiling)
	log "fake gateway ceiling (wrk -t2 -c64): $ceil req/s"
	for i in $(seq 1 "$DRAIN_RUNS"); do
		gw_faults reset
		drain_settings
		r=$(drain_once "dflt$i" "$DRAIN_N") && dflt="$dflt $r"
		drain_settings "$DRAIN_INFLIGHT" "$DRAIN_BATCH"
		# the same drain without the adaptive in-flight limit, side by
		# side, which one first alternating between rounds
		if [ $((i % 2)) -eq 1 ]; then
			r=$(drain_once "zero$i" "$DRAIN_N") && zero="$zero $r"
		fi
		psql_q "ALTER SYSTEM SET ft_orders.adaptive_concurrency = off" >/dev/null
		r=$(drain_once "aoff$i" "$DRAIN_N") && aoff="$aoff $r"
		psql_q "ALTER SYSTEM RESET ft_orders.adaptive_concurrency" >/dev/null
		if [ $((i % 2)) -eq 0 ]; then
			r=$(drain_once "zero$i" "$DRAIN_N") && zero="$zero $r"
		fi
		gw_faults '{"latency_ms":20}'
		r=$(drain_once "lat$i" "$DRAIN_N") && lat="$lat $r"
		gw_faults reset
		if [ "${FT_BENCH_DRAIN_FAULTS:-1}" = 1 ]; then
			# transient faults with the default circuit settings (before the
			# failure-rate circuit this needed circuit_failure_threshold 1000)
			psql_q "ALTER SYSTEM SET ft_orders.backoff_base = '10ms'" >/dev/null
			psql_q "ALTER SYSTEM SET ft_orders.backoff_max = '200ms'" >/dev/null
			# with 25 % failures and the default 10 attempts, 0.25^10 of the
			# orders (one in a million: one drain of 100,000 in ten) would end
			# as dead letters and the drain would never count N payments
			psql_q "ALTER SYSTEM SET ft_orders.max_attempts = 100" >/dev/null
			gw_faults '{"fail_rate":0.2,"fail_status":503}'
			r=$(drain_once "flt$i" "$DRAIN_N") && flt="$flt $r"
			gw_faults reset
			gw_faults '{"fail_rate":0.25,"fail_status":500}'
			r=$(drain_once "fl25$i" "$DRAIN_N") && fl25="$fl25 $r"
			psql_q "ALTER SYSTEM RESET ft_orders.backoff_base" >/dev/null
			psql_q "ALTER SYSTEM RESET ft_orders.backoff_max" >/dev/null
			pg_reload
			# a flaky backend that says when to come back: its Retry-After
			# (1 s, under the default backoff_max) delays that order only
			gw_faults reset
			gw_faults '{"fail_rate":0.2,"fail_status":503,"retry_after_s":1}'
			r=$(drain_once "ra20$i" "$DRAIN_N") && ra20="$ra20 $r"
			psql_q "ALTER SYSTEM RESET ft_orders.max_attempts" >/dev/null
			gw_faults reset
			# gateways limited to RL_RATE/s and RL_RATE_LOW/s, nothing
			# configured on our side, the default settings
			drain_settings
			g="" s429="" s3=""
			read -r g s429 s3 < <(rl_drain "rl$i" "$RL_RATE" "$RL_N") || true
			[ -n "${g:-}" ] && { rlg="$rlg $g"; rl429="$rl429 $s429"; rl429s="$rl429s $s3"; }
			g="" s429="" s3=""
			read -r g s429 s3 < <(rl_drain "rllow$i" "$RL_RATE_LOW" "$RL_N_LOW") || true
			[ -n "${g:-}" ] && { rlg50="$rlg50 $g"; rl429_50="$rl429_50 $s429"; }
		fi
	done
	local mz
	mz=$(median "$zero")
	fig drain_per_s "payments/s" "$ceil" "$zero" "" "$DRAIN_N pre-loaded orders to paid, max_in_flight $DRAIN_INFLIGHT, batch_size $DRAIN_BATCH; baseline: fake gateway alone under wrk -t2 -c64"
	fig drain_defaults_per_s "payments/s" "$mz" "$dflt" "" "the same with the default max_in_flight 64, batch_size 100; baseline: drain_per_s"
	fig drain_adaptive_off_per_s "payments/s" "$mz" "$aoff" "" "drain_per_s with ft_orders.adaptive_concurrency = off (drain_per_s has it on, the default), interleaved in the same rounds; baseline: drain_per_s"
	fig fake_gateway_ceiling_rps "req/s" "" "$ceil"
	fig drain_latency20_per_s "payments/s" "$mz" "$lat" "" "gateway latency_ms 20; baseline: drain_per_s"
	local rl=""; [ -n "$lat" ] && [ -n "$mz" ] && rl=$(echo "$(median "$lat") / $mz" | bc -l)
	fig drain_latency20_vs_zero ratio "" "$rl" "" "median drain with 20 ms gateway latency / median drain at 0 ms (same settings)"
	fig drain_faults20_per_s "payments/s" "$mz" "$flt" "" "fail_rate 0.2 (503), backoff_base 10ms, backoff_max 200ms, default circuit settings; baseline: drain_per_s"
	fig drain_flaky25_per_s "payments/s" "$mz" "$fl25" "" "fail_rate 0.25 (500), backoff_base 10ms, backoff_max 200ms, default circuit settings; baseline: drain_per_s"
	fig drain_retry_after20_per_s "payments/s" "$mz" "$ra20" "" "fail_rate 0.2 (503 with Retry-After: 1), default backoff (the Retry-After delays that order only), max_attempts 100; baseline: drain_per_s"
	fig drain_ratelimited_goodput_ratio ratio "" "$rlg" "" "$RL_N orders against the fake gateway limited to $RL_RATE requests/s (token bucket, 429 + Retry-After beyond), no ft_orders.rate_limit, default settings: payments/s / $RL_RATE"
	fig drain_ratelimited_429_share ratio "" "$rl429" "" "the same drain: requests answered 429 / all requests at the gateway, the whole drain (the first second included)"
	fig drain_ratelimited_429_share_after3s ratio "" "$rl429s" "" "the same, counting only the requests that arrived after the first 3 s of the drain"
	fig drain_ratelimited50_goodput_ratio ratio "" "$rlg50" "" "$RL_N_LOW orders against the fake gateway limited to $RL_RATE_LOW requests/s, as drain_ratelimited_goodput_ratio: payments/s / $RL_RATE_LOW"
	fig drain_ratelimited50_429_share ratio "" "$rl429_50" "" "the same drain: requests answered 429 / all requests at the gateway, the whole drain"
	# where the CPU goes (both share the 2 cores): per payment, whole drain
	local wz gz wl gl
	wz=$(cpu_runs zero 1); gz=$(cpu_runs zero 2); wl=$(cpu_runs lat 1); gl=$(cpu_runs lat 2)
	fig drain_worker_cpu_us "µs/payment" "" "$wz" "" "CPU (user + system) of both payment workers per payment over the zero-latency drains"
	fig drain_gateway_cpu_us "µs/payment" "" "$gz" "" "CPU of the fake gateway per request, same drains (it shares the 2 cores)"
	[ -n "$wz" ] && fig drain_latency20_worker_cpu_us "µs/payment" "$(median "$wz")" "$wl" "" "the same with 20 ms gateway latency; baseline: zero latency"
	[ -n "$gz" ] && fig drain_latency20_gateway_cpu_us "µs/payment" "$(median "$gz")" "$gl" "" "the fake gateway with 20 ms latency (suspended and resumed connections); baseline: zero latency"
}

# --- mvcc: the drain while an old snapshot is held ---------------------------
# dead_tuples -> n_dead_tup of the outbox (the statistics lag by up to a second)
dead_tuples() { psql_q "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'ft_orders.outbox'::regclass"; }

# claim_cost -> "<ms> <buffers>" of the workers' claim step 1 (lock up to
# $DRAIN_BATCH due events, from the claim floor when there is one) on the
# outbox as it is, planned as the workers plan it (index scans only),
# rolled back
claim_cost()
{
	local sql="SELECT event_id FROM ft_orders.outbox WHERE next_attempt_at <= now()" floor
	if [ "$(psql_q "SELECT to_regprocedure('ft_orders._claim_floor()') IS NOT NULL")" = t ]; then
		floor=$(psql_q "SELECT coalesce(ft_orders._claim_floor()::text, '-infinity')")
		sql="$sql AND next_attempt_at >= '$floor'"
	fi
	sql="$sql ORDER BY next_attempt_at LIMIT $DRAIN_BATCH FOR UPDATE SKIP LOCKED"
	printf '%s\n' "BEGIN;" \
		"SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;" \
		"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) $sql;" "ROLLBACK;" |
		psql -XAtq -v ON_ERROR_STOP=1 2>/dev/null | "$PY" -c '
import json, sys
p = json.loads(sys.stdin.read())[0]
print("%.2f ms %d buffers" % (p["Execution Time"], p["Plan"]["Shared Hit Blocks"] + p["Plan"]["Shared Read Blocks"]))'
}

# mvcc_batch LABEL -> payments/s: MVCC_N orders placed with the workers
# idle, then drained; logs the outbox's dead tuples and the claim's cost
mvcc_batch()
{
	local label=$1 prefix t0 el paid
	prefix="mv-$RUN_ID-$label"
	gateway_off
	preload "$prefix" "$MVCC_N" || { log "preload failed"; return 1; }
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	t0=$(now)
	gateway_on
	wait_drained $((MVCC_N / 50 + 120)) "$MVCC_N" || log "mvcc $label: not drained ($(outbox_count) left)"
	el=$(since "$t0")
	gateway_off
	paid=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' AND status = 'paid'")
	log "mvcc $label: $paid/$MVCC_N paid in $(printf %.2f "$el") s ($(echo "$MVCC_N / $el" | bc -l | xargs printf %.0f)/s), outbox dead tuples $(dead_tuples), claim on the drained outbox: $(claim_cost), duplicate charges $(gw_ledger duplicates)"
	[ "$paid" = "$MVCC_N" ] || return 1
	echo "$MVCC_N / $el" | bc -l
}

bench_mvcc()
{
	local clean="" r held="" i fifo=$FT_TMP/snapshot.fifo spid dpid dump=$FT_TMP/mvcc.dump dumprc dur t0 el r5 mc
	log "mvcc: batches of $MVCC_N orders, max_in_flight $DRAIN_INFLIGHT, batch_size $DRAIN_BATCH: 2 clean, 5 with a REPEATABLE READ snapshot held, 1 after; then one drain under pg_dump"
	gw_faults reset
	drain_settings "$DRAIN_INFLIGHT" "$DRAIN_BATCH"
	clean_slate
	for i in 1 2; do r=$(mvcc_batch "clean$i") && clean="$clean $r"; done
	# one session holds a snapshot (and nothing else) for the next 5 batches
	mkfifo "$fifo"
	psql -XAtq <"$fifo" >"$FT_TMP/snapshot.out" 2>&1 &
	spid=$!
	exec 7>"$fifo"
	echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;" >&7
	wait_until "SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xmin IS NOT NULL" 10 ||
		log "mvcc: the snapshot session is not holding a snapshot"
	for i in 1 2 3 4 5; do r=$(mvcc_batch "held$i") && held="$held $r"; done
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$spid"
	r=$(mvcc_batch released)
	mc=$(median "$clean")
	r5=$(echo "$held" | awk '{print $5}')
	[ -n "$r5" ] && [ -n "$mc" ] &&
		fig drain_snapshot_held_ratio ratio "" "$(echo "$r5 / $mc" | bc -l)" "" \
			"payments/s of the 5th consecutive batch of $MVCC_N orders with one REPEATABLE READ snapshot held since before the 1st / median of 2 clean batches (payments/s, clean: $(printf '%.0f ' $clean)held: $(printf '%.0f ' $held)after the release: $(printf '%.0f' "${r:-0}"))"

	# pg_dump of the database throughout a drain: its output goes to a reader
	# that waits, so pg_dump keeps its snapshot and locks until the drain ends
	clean_slate
	preload "mv-$RUN_ID-dump" "$MVCC_N" || { log "preload failed"; return 1; }
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	: >"$FT_TMP/dump.go"
	( pg_dump -Fp "$PGDATABASE" | { while [ -e "$FT_TMP/dump.go" ]; do sleep 0.1; done; cat >"$dump"; }
	  echo "${PIPESTATUS[0]}" >"$FT_TMP/dump.rc" ) &
	dpid=$!
	# until pg_dump is stuck on its output (its backend waits to send, or
	# waits for the next command while pg_dump cannot write): the drain's
	# clock does not count pg_dump's own start-up work.  Twice, 0.5 s apart,
	# as pg_dump's backend also waits for a moment between its commands.
	for i in 1 2; do
		sleep 0.5
		wait_until "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pg_dump'
		             AND backend_xmin IS NOT NULL AND wait_event IN ('ClientWrite', 'ClientRead')" 60 ||
			log "mvcc: pg_dump is not holding a snapshot, blocked on its output"
	done
	t0=$(now)
	gateway_on
	wait_drained $((MVCC_N / 50 + 120)) "$MVCC_N" || log "mvcc dump: not drained ($(outbox_count) left)"
	el=$(since "$t0")
	dur=$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'")
	gateway_off
	rm -f "$FT_TMP/dump.go"
	wait "$dpid"
	dumprc=$(cat "$FT_TMP/dump.rc" 2>/dev/null)
	log "mvcc dump: $MVCC_N drained in $(printf %.2f "$el") s ($(echo "$MVCC_N / $el" | bc -l | xargs printf %.0f)/s) with pg_dump open throughout ($dur at the end); pg_dump exit $dumprc, $(wc -c <"$dump") bytes; outbox dead tuples $(dead_tuples); duplicate charges $(gw_ledger duplicates)"
	[ "$dumprc" = 0 ] && [ "$dur" = 1 ] && [ -n "$mc" ] &&
		fig drain_during_pg_dump_ratio ratio "" "$(echo "$MVCC_N / $el / $mc" | bc -l)" "" \
			"payments/s of a drain of $MVCC_N while pg_dump of the database runs (held open by a slow reader; it completed) / median of the clean batches above"
	drain_settings
}

# --- latency -------------------------------------------------------------------
bench_latency()
{
	log "latency: $LAT_RATE orders/s for $LAT_SECS s (+2 s warm-up), pgbench -R, commit -> gateway first_received_us"
	gw_faults reset
	clean_slate
	gateway_on
	sleep 1
	local run="$RUN_ID$RANDOM" out
	# pgbench is the client (C, 8 sessions, a fixed rate): a heavier client
	# would take CPU from the pipeline being measured on these 2 cores
	out=$(cd "$FT_TMP" && pgbench -n -M prepared -c 8 -j 2 -R "$LAT_RATE" -T $((LAT_SECS + 2)) \
		-l --log-prefix=latlog -D run="$run" -D n=0 -f "$BENCH/latency_place_order.sql" 2>&1)
	echo "$out" >>"$FT_TMP/pgbench.log"
	log "latency: pgbench $(echo "$out" | grep -E '^(number of transactions actually|tps|latency average)' | tr '\n' ' ')"
	wait_drained 120 || log "latency: outbox not drained"
	curl -fsS "$GW_URL/ledger/receipts" >"$FT_TMP/receipts.txt"
	psql_q "SELECT idempotency_key, order_id FROM ft_orders.idempotency_keys
	         WHERE idempotency_key LIKE 'lat-$run-%'" | tr '|' ' ' >"$FT_TMP/keymap.txt"
	# the server's commit timestamp of each order (track_commit_timestamp), from
	# its idempotency_keys row: the workers update the orders row, not that one
	psql_q "SELECT o.payment_key, o.order_id, (extract(epoch FROM pg_xact_commit_timestamp(k.xmin)) * 1000000)::bigint
	          FROM ft_orders.idempotency_keys k JOIN ft_orders.orders o ON o.order_id = k.order_id
	         WHERE k.idempotency_key LIKE 'lat-$run-%'" | tr '|' ' ' >"$FT_TMP/commit_ts_all.txt"
	"$PY" "$BENCH/latency_pgbench.py" "$run" 2 "$FT_TMP/keymap.txt" "$FT_TMP/commit_ts_all.txt" \
		"$FT_TMP/latency_client.txt" "$FT_TMP/commit_ts.txt" "$FT_TMP"/latlog.* >&2 || return 1
	local r p50 p99 mx miss n mn c50 c99 cmx
	r=$("$PY" "$BENCH/latency_join.py" "$FT_TMP/commit_ts.txt" "$FT_TMP/receipts.txt" server \
		--dump="$SERIES/latency_server_ms.txt")
	read -r p50 p99 mx miss n mn <<<"$r"
	log "latency (server commit timestamp -> gateway): n=$n missing=$miss p50=$p50 p99=$p99 max=$mx min=$mn ms"
	r=$("$PY" "$BENCH/latency_join.py" "$FT_TMP/latency_client.txt" "$FT_TMP/receipts.txt" \
		--dump="$SERIES/latency_client_ms.txt")
	read -r c50 c99 cmx _ _ _ <<<"$r"
	log "latency (client saw the commit -> gateway): p50=$c50 p99=$c99 max=$cmx ms"
	fig commit_to_gateway_p50_ms ms "" "$p50" "" "commit timestamp (track_commit_timestamp, taken before the commit's WAL flush) -> gateway first_received_us; $n orders at $LAT_RATE/s (pgbench -R, 8 clients), $miss not received"
	fig commit_to_gateway_p99_ms ms "" "$p99"
	fig commit_to_gateway_max_ms ms "" "$mx"
	fig client_commit_to_gateway_p50_ms ms "" "$c50" "" "from the moment pgbench saw place_order's commit acknowledged instead"
	fig client_commit_to_gateway_p99_ms ms "" "$c99"
}

# --- memory ----------------------------------------------------------------------
# worker_rss [FIELD] -> "pid:kB ..." of the payment workers; FIELD RssAnon
# (default: private memory) or VmRSS (also counts every shared buffer page the
# worker has touched, so it grows with shared_buffers use, not leaks)
worker_rss()
{
	local pid out="" field=${1:-RssAnon}
	for pid in $(psql_q "SELECT pid FROM ft_orders.worker_status WHERE pid IS NOT NULL AND pid > 0"); do
		out="$out $pid:$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null)"
	done
	echo "$out"
}

bench_memory()
{
	log "memory: worker RSS before/after $MEM_N payments"
	gw_faults reset
	clean_slate
	gateway_on
	local chunk=50000 done_n=0 before after prefix="mem-$RUN_ID" b growth="" base="" p kb kb0
	[ "$MEM_N" -lt 200000 ] && chunk=10000
	# warm-up: caches, plans, curl handles
	preload "$prefix-w" 5000 && wait_drained 300
	psql_q "TRUNCATE ft_orders.payment_attempts, ft_orders.order_events" >/dev/null
	before=$(worker_rss)
	log "memory: RssAnon before (pid:kB):$before; VmRSS:$(worker_rss VmRSS)"
	while [ "$done_n" -lt "$MEM_N" ]; do
		b=$chunk; [ $((done_n + b)) -gt "$MEM_N" ] && b=$((MEM_N - done_n))
		preload "$prefix-$done_n" "$b" || break
		done_n=$((done_n + b))
		# keep the backlog bounded, the gateway's ledger small
		while [ "$(outbox_count)" -gt "$chunk" ]; do sleep 0.2; done
		curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	done
	wait_drained 600 || log "memory: not drained"
	after=$(worker_rss)
	log "memory: RssAnon after $done_n payments (pid:kB):$after; VmRSS:$(worker_rss VmRSS)"
	for p in $after; do
		kb=${p#*:}
		kb0=$(echo "$before" | tr ' ' '\n' | sed -n "s/^${p%%:*}://p")
		[ -n "$kb0" ] && [ -n "$kb" ] || { log "memory: worker ${p%%:*} is new (restarted?)"; continue; }
		growth="$growth $(echo "($kb - $kb0) / 1024" | bc -l)"
		base="$base $(echo "$kb0 / 1024" | bc -l)"
	done
	local gmax
	gmax=$(echo "$growth" | tr ' ' '\n' | grep . | sort -g | tail -1)
	fig worker_rss_growth_mb MB "$(median "$base")" "$growth" "$gmax" "max over workers of private RSS (RssAnon) growth over $done_n payments; runs: per worker; baseline: RssAnon before (MB)"
}

# --- crash restart -----------------------------------------------------------------
# log_time_us "LOG LINE" -> the %m timestamp at its start as CLOCK_REALTIME µs
log_time_us()
{
	local ts
	ts=$(echo "$1" | awk '{print $1, $2, $3}')
	echo "$(date -d "$ts" +%s%N) / 1000" | bc
}

bench_crash()
{
	log "crash: $CRASH_RUNS x SIGKILL of a payment worker after 30 % of $CRASH_N orders; the server's 'ready to accept connections' -> the next request at the gateway"
	gw_faults reset
	local i prefix victim t_kill ready_line ready_us first_us s vals="" total="" t0
	# the 'ready' line is at LOG
	pg_set log_min_messages log
	for i in $(seq 1 "$CRASH_RUNS"); do
		prefix="cr-$RUN_ID-$i"
		clean_slate
		preload "$prefix" "$CRASH_N" || { log "preload failed"; return 1; }
		curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
		t0=$(now)
		gateway_on
		while [ "$(curl -fsS "$GW_URL/ledger" | jq -r .charges)" -lt $((CRASH_N * 3 / 10)) ]; do sleep 0.02; done
		victim=$(psql_q "SELECT pid FROM ft_orders.worker_status WHERE pid > 0 ORDER BY worker_id LIMIT 1")
		t_kill=$EPOCHREALTIME
		kill -9 "$victim"
		# until the server answers again, then until all are paid
		local k=0
		until psql_q "SELECT 1" >/dev/null 2>&1; do
			sleep 0.02; k=$((k + 1)); [ "$k" -gt 3000 ] && { log "crash: the server did not come back"; return 1; }
		done
		# (not wait_drained: it gives up on the crash we caused)
		k=0
		while [ "$(outbox_count)" != 0 ]; do
			sleep 0.05; k=$((k + 1)); [ "$k" -gt 6000 ] && { log "crash $i: not drained"; break; }
		done
		total="$total $(since "$t0")"
		ready_line=$(grep 'database system is ready to accept connections' "$PG_LOG" | tail -1)
		ready_us=$(log_time_us "$ready_line")
		# the first POST /payments that arrived after the server was ready
		first_us=$(curl -fsS "$GW_URL/ledger/requests" | awk -v r="$ready_us" '$1 > r {print $1; exit}')
		if [ -z "$first_us" ] || [ -z "$ready_us" ]; then
			log "crash $i: no request after the restart ($ready_line)"
			continue
		fi
		s=$(echo "($first_us - $ready_us) / 1000000" | bc -l)
		vals="$vals $s"
		log "crash $i: SIGKILL $victim; ready $(echo "$ready_us / 1000000 - ${t_kill/,/.}" | bc -l | xargs printf %.3f) s after the kill, first payment $(printf %.3f "$s") s after ready; $(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' AND status = 'paid'")/$CRASH_N paid, gateway $(curl -fsS "$GW_URL/ledger" | jq -c '{charges,duplicates}')"
	done
	pg_set log_min_messages warning
	fig crash_to_first_payment_s s "" "$vals" "" "SIGKILL of a payment worker after 30 % of $CRASH_N orders were charged (a crash restart of the whole server): from the server's 'ready to accept connections' log line to the next POST /payments at the fake gateway"
	fig crash_drain_total_s s "" "$total" "" "the same drains: gateway_url set -> all $CRASH_N paid, the crash restart included"
}

# --- failover ----------------------------------------------------------------------
bench_failover()
{
	log "failover: tests/cluster/bench.sh, FT_DRILL_RUNS=$DRILL_RUNS"
	local js=$FT_TMP/drills.jsonl
	: >"$js"
	FT_DRILL_RUNS=$DRILL_RUNS FT_DRILL_JSON=$js bash "$ROOT/tests/cluster/bench.sh" >"$FT_TMP/drills.tap" 2>&1
	log "failover: drills exit $?, $(grep -c '^not ok' "$FT_TMP/drills.tap") failed checks, $(wc -l <"$js") drills"
	cp "$js" "$SERIES/drills.jsonl"
	"$PY" - "$js" "$FIGS" "$BENCH/report.py" <<'PYEOF'
import json, statistics, subprocess, sys
js, figs, rep = sys.argv[1:4]
d = [json.loads(l) for l in open(js) if l.strip()]
def vals(rows, k):
    return " ".join(str(r[k]) for r in rows if r.get(k) is not None)
def add(*a):
    subprocess.run(["/usr/bin/python3", rep, "add", figs] + [str(x) for x in a], check=True)
for sc in ("node_loss", "postmaster_kill", "switchover"):
    rows = [r for r in d if r["scenario"] == sc]
    promo = [r["fault_to_promotion_s"] for r in rows if r.get("fault_to_promotion_s") is not None]
    base = statistics.median(promo) if promo else ""
    add("failover_rto_%s_s" % sc, "s", base, vals(rows, "rto_s"), "",
        "median over drills; baseline: median fault -> promotion (Patroni's own)")
add("promotion_to_first_payment_s", "s", "", vals(d, "promotion_to_first_payment_s"))
add("failover_lost_orders", "orders", "", vals(d, "lost"), sum(r.get("lost") or 0 for r in d), "sum over drills")
add("failover_duplicate_charges", "charges", "", vals(d, "duplicates"), sum(r.get("duplicates") or 0 for r in d), "sum over drills")
PYEOF
}

# --- main ---------------------------------------------------------------------
log "make bench: scale $SCALE, parts: $PARTS, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
export FT_BENCH_LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if has intake || has drain || has mvcc || has latency || has memory || has crash; then
	start_server
	has intake && { bench_intake || log "intake failed"; }
	has drain && { bench_drain || log "drain failed"; }
	has mvcc && { bench_mvcc || log "mvcc failed"; }
	has latency && { bench_latency || log "latency failed"; }
	has memory && { bench_memory || log "memory failed"; }
	has crash && { bench_crash || log "crash failed"; }
	# free the CPU for the cluster
	pg_stop; PGDATA=""
	gw_stop
fi
has failover && { bench_failover || log "failover failed"; }

echo
"$PY" "$BENCH/report.py" write "$FIGS" "$OUT"
echo "# written $OUT"
"$PY" "$BENCH/plots.py" collect "$SERIES" "$DRAIN_N" "${OUT%.json}.series.json" &&
	"$PY" "$BENCH/plots.py" plot "${OUT%.json}.series.json" "$PLOTS" ||
	log "plots failed"
