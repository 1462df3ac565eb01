# drill_lib.sh: run_drill DIR SCENARIO, one failover drill under order load
# on the cluster tests/cluster/up.sh started in DIR.  Sourced by drill.sh,
# run.sh and bench.sh after tests/lib/tap.sh (it prints TAP through ok/is).
#
# SCENARIO: postmaster_kill  kill -9 of the leader's postmaster (Patroni
#                            restarts it in place or fails over)
#           node_loss        kill -9 of the leader's Patroni and postmaster;
#                            once a new leader is up, that node's Patroni is
#                            started again and must rejoin as a replica
#           switchover       patronictl switchover to the synchronous standby
#
# Timeline: gateway faults on (FT_DRILL_FAULTS), load client started, ~5 s of
# load, fault, wait for a new leader and for writes to succeed, ~10 s more
# load, stop the load (orders in progress keep retrying until acknowledged),
# wait for the backlog to drain and the cluster to be whole again, then
# analyze.py checks and measures.  Prints
#   drill SCENARIO: rto=…s reads_unavailable=…s promotion_to_first_payment=…s acknowledged=N lost=N duplicates=N
# and appends the figures as one JSON line to ${FT_DRILL_JSON:-DIR/drills.json}.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# cluster_suite_end RC DIR WHAT [FILE...]: the end of a TAP suite that
# brought up the cluster in DIR (its EXIT trap): down.sh as one more test,
# FILEs removed, the suite's duration, the plan; exits with RC if the suite
# failed, else with done_testing's status
cluster_suite_end()
{
	local rc=$1 dir=$2 what=$3 done_rc
	shift 3
	"$CL_HERE/down.sh" "$dir" >&2
	ok $? "down.sh stopped everything up.sh started"
	[ $# -gt 0 ] && rm -f "$@"
	diag "$what took $(( $(date +%s) - T_BEGIN )) s"
	done_testing
	done_rc=$?
	[ "$rc" -ne 0 ] && exit "$rc"
	exit $done_rc
}

FT_DRILL_FAULTS=${FT_DRILL_FAULTS:-'{"fail_rate":0.05,"fail_status":503,"timeout_rate":0.01}'}
FT_DRILL_BEFORE=${FT_DRILL_BEFORE:-5}		# seconds of load before the fault
FT_DRILL_AFTER=${FT_DRILL_AFTER:-10}		# seconds of load after recovery
FT_DRILL_DRAIN_TIMEOUT=${FT_DRILL_DRAIN_TIMEOUT:-90}
FT_DRILL_REJOIN_TIMEOUT=${FT_DRILL_REJOIN_TIMEOUT:-30}
DRILL_SEQ=0

secs_since() { awk -v a="$(now_s)" -v b="$1" 'BEGIN{printf "%.2f", a-b}'; }

# load_status FIELD: one field of the load client's status file (0 if none)
load_status()
{
	local k v
	while read -r k v; do
		[ "$k" = "$1" ] && { echo "$v"; return 0; }
	done <"$DRILL_STATUS" 2>/dev/null
	echo 0
}

# wait_cluster_whole I SECONDS: node I leads, 2 streaming replicas, 1 sync
wait_cluster_whole()
{
	local i=$1 limit=$2 deadline
	deadline=$(($(date +%s) + limit))
	while [ "$(date +%s)" -le "$deadline" ]; do
		[ "$(replication_state "$i")" = "2 1" ] && [ "$(rest_status "$i" /primary)" = 200 ] && return 0
		sleep 0.2
	done
	return 1
}

# every process of a list gone within SECONDS (prints the survivors)
wait_pids_gone()
{
	local limit=$1; shift
	local deadline left p
	deadline=$(($(date +%s) + limit))
	while :; do
		left=
		for p in "$@"; do [ -d "/proc/$p" ] && left="$left $p"; done
		[ -z "$left" ] && return 0
		[ "$(date +%s)" -gt "$deadline" ] && { echo "$left"; return 1; }
		sleep 0.1
	done
}

# stop_load [SECONDS]: SIGTERM the load client (it lets orders in progress
# finish, up to its --drain-timeout), SIGKILL it after SECONDS (default 60)
stop_load()
{
	[ -n "${DRILL_LOAD_PID:-}" ] || return 0
	kill -TERM "$DRILL_LOAD_PID" 2>/dev/null
	wait_gone "$DRILL_LOAD_PID" "${1:-60}" || kill -KILL "$DRILL_LOAD_PID" 2>/dev/null
	wait "$DRILL_LOAD_PID" 2>/dev/null
	DRILL_LOAD_PID=
	cl_set_env "$CL_DIR" LOAD_PID ""
}

gw() { curl -fsS -m 5 "$@" >/dev/null 2>&1; }

# report_checks NAME: a checker's output on stdin (lines "CHECK<TAB>pass
# <TAB>description<TAB>detail", anything else is shown) as TAP lines
report_checks()
{
	local tag0 pass desc detail
	while IFS=$'\t' read -r tag0 pass desc detail; do
		if [ "$tag0" = CHECK ]; then
			ok $((1 - pass)) "$desc"
			[ "$pass" = 1 ] || diag "  $detail"
			[ "$pass" = 1 ] && [ -n "${FT_DRILL_VERBOSE:-}" ] && diag "  $detail"
		else
			[ -n "$tag0$desc" ] && diag "$1: $tag0 $pass $desc $detail"
		fi
	done
}

run_drill()
{
	local dir=$1 scenario=$2
	local old new cand pm t0 t_rec t_restart t_stop drained drain_s rejoin_s recovered_s
	local children= survivors i out line json_file res rc
	CL_DIR=$(cd "$dir" && pwd)
	cl_load_env "$CL_DIR" || { ok 1 "$scenario: cluster environment"; return 1; }
	case "$scenario" in postmaster_kill|node_loss|switchover) ;;
		*) ok 1 "unknown scenario $scenario"; return 1 ;; esac
	DRILL_SEQ=$((DRILL_SEQ + 1))
	local tag="$scenario-$(date +%H%M%S)-$DRILL_SEQ"
	local load_json="$CL_DIR/drill-$tag.load.json"
	DRILL_STATUS="$CL_DIR/drill-$tag.status.json"
	json_file=${FT_DRILL_JSON:-$CL_DIR/drills.json}

	# ---------------------------------------------------------- before
	old=$(leader_node) || old=
	if [ -z "$old" ] || ! wait_cluster_whole "$old" 60; then
		ok 1 "$scenario: cluster whole before the drill (leader=${old:-none})"
		return 1
	fi
	ok 0 "$scenario: cluster whole before the drill: leader n$old, 2 streaming replicas, 1 sync"
	cand=$(node_q "$old" "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync' LIMIT 1" postgres)
	cand=${cand#n}

	gw -X DELETE "$GW_URL/faults"
	gw -X POST -H 'Content-Type: application/json' -d "$FT_DRILL_FAULTS" "$GW_URL/faults"
	ok $? "$scenario: gateway faults on: $FT_DRILL_FAULTS"

	PGPASSWORD=$APP_PASSWORD "$CL_PYTHON" "$CL_HERE/load_client.py" \
		--rw-port "$HAPROXY_RW_PORT" --ro-port "$HAPROXY_RO_PORT" \
		--rest-ports "$REST_PORT_1,$REST_PORT_2,$REST_PORT_3" --user "$APP_USER" \
		--prefix "$tag" --out "$load_json" --status "$DRILL_STATUS" --drain-timeout 30 \
		2>"$CL_DIR/log/load-$tag.log" &
	DRILL_LOAD_PID=$!
	cl_set_env "$CL_DIR" LOAD_PID "$DRILL_LOAD_PID"
	sleep "$FT_DRILL_BEFORE"
	cmp_ok "$(load_status acked)" -gt 0 "$scenario: orders acknowledged before the fault"

	# ---------------------------------------------------------- fault
	pm=$(postmaster_pid "$old")
	[ -n "$pm" ] && children=$(ps -o pid= --ppid "$pm" 2>/dev/null | tr '\n' ' ')
	local pv="PATRONI_PID_$old"
	t0=$(now_s)
	case "$scenario" in
		postmaster_kill)
			kill -KILL "$pm" ;;
		node_loss)
			kill -KILL "${!pv}" "$pm" ;;
		switchover)
			cl_patronictl switchover --leader "n$old" --candidate "n$cand" --force \
				>"$CL_DIR/log/switchover-$tag.log" 2>&1 ||
				diag "patronictl switchover: $(tail -n 3 "$CL_DIR/log/switchover-$tag.log")" ;;
	esac
	diag "$(date +%T) $scenario: fault on leader n$old (postmaster $pm)${cand:+, sync standby n$cand}"
	if [ "$scenario" != switchover ]; then
		survivors=$(wait_pids_gone 10 $children)
		ok $? "$scenario: every child of the killed postmaster (backends, workers) exited within 10 s${survivors:+ (left:$survivors)}"
	fi

	# ---------------------------------------------------------- recovery
	# a leader that accepts writes: another node, or (postmaster_kill) the
	# same node restarted in place by Patroni with a new postmaster
	new=
	for _ in $(seq 1 300); do
		new=$(leader_node) || new=
		if [ -n "$new" ] && { [ "$new" != "$old" ] ||
			{ [ "$scenario" = postmaster_kill ] && [ "$(postmaster_pid "$new")" != "$pm" ]; }; } &&
			[ "$(node_q "$new" "SELECT NOT pg_is_in_recovery()" postgres)" = t ]; then
			break
		fi
		new=
		sleep 0.2
	done
	if [ -z "$new" ]; then
		ok 1 "$scenario: a leader after the fault (none within 60 s)"
		stop_load
		return 1
	fi
	ok 0 "$scenario: leader n$new $(secs_since "$t0") s after the fault"
	if [ "$scenario" = node_loss ]; then
		start_patroni "$old"
		cl_set_env "$CL_DIR" "PATRONI_PID_$old" "$CL_STARTED_PID"
		t_restart=$(now_s)
		diag "$(date +%T) node_loss: Patroni of n$old started again (pid $CL_STARTED_PID)"
	fi
	# recovered: the client saw a success of an attempt started after the
	# fault and after its last failure
	t_rec=
	for _ in $(seq 1 300); do
		if awk -v s="$(load_status last_ok_start)" -v f="$(load_status last_fail_end)" -v t="$t0" \
			'BEGIN { exit !(s > t && s > f) }'; then
			t_rec=$(now_s); break
		fi
		sleep 0.2
	done
	recovered_s=$(secs_since "$t0")
	[ -n "$t_rec" ]
	ok $? "$scenario: writes through HAProxy succeed again (seen by the client ${recovered_s} s after the fault)"

	sleep "$FT_DRILL_AFTER"
	t_stop=$(now_s)
	stop_load
	[ -s "$load_json" ]
	ok $? "$scenario: load client wrote its record" || return 1

	# ---------------------------------------------------------- drain
	drained=0
	local deadline=$(($(date +%s) + FT_DRILL_DRAIN_TIMEOUT)) nworkers=""
	while [ "$(date +%s)" -le "$deadline" ]; do
		if [ "$(node_q "$new" "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" = 0 ]; then
			drained=1; break
		fi
		# no payment workers at all (not built): waiting cannot help
		nworkers=$(node_q "$new" "SELECT count(*) FROM ft_orders.worker_status")
		if [ "$nworkers" = 0 ] && [ "$(date +%s)" -gt $(( ${t_stop%.*} + 5 )) ]; then
			diag "$scenario: no payment workers on n$new (ft_orders.worker_status is empty): not waiting for the drain"
			break
		fi
		sleep 0.25
	done
	drain_s=$(secs_since "$t_stop")

	# ---------------------------------------------------------- rejoin
	rejoin_s=
	if [ "$new" != "$old" ]; then
		local from=${t_restart:-$t0}
		deadline=$(($(date +%s) + FT_DRILL_REJOIN_TIMEOUT))
		while [ "$(date +%s)" -le "$deadline" ]; do
			if [ "$(node_q "$new" "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'n$old' AND state = 'streaming'" postgres)" = 1 ]; then
				rejoin_s=$(secs_since "$from"); break
			fi
			sleep 0.2
		done
	fi
	wait_cluster_whole "$new" 30 || diag "$scenario: cluster not whole 30 s after the drain: $(replication_state "$new")"
	# replicas' launchers need a moment after a restart to publish their workers
	for i in 1 2 3; do
		[ "$i" = "$new" ] && continue
		for _ in $(seq 1 25); do
			[ "$(node_q "$i" "SELECT count(*) > 0 AND bool_and(state = 'standby') FROM ft_orders.worker_status")" = t ] && break
			sleep 0.2
		done
	done
	gw -X DELETE "$GW_URL/faults"

	# ---------------------------------------------------------- checks
	local ports="$PG_PORT_1,$PG_PORT_2,$PG_PORT_3" result="$CL_DIR/drill-$tag.result.json"
	out=$("$CL_PYTHON" "$CL_HERE/analyze.py" --scenario "$scenario" --load "$load_json" --t0 "$t0" \
		--old "$old" --new "$new" --sock "$CL_DIR/run" --ports "$ports" --gateway "$GW_URL" \
		--patroni-log "$CL_DIR/log/patroni-n$new.log" --drained "$drained" --drain-s "$drain_s" \
		${rejoin_s:+--rejoin-s "$rejoin_s"} --recovered-s "$recovered_s" --result "$result" 2>&1)
	rc=$?
	report_checks analyze <<<"$out"
	ok $rc "$scenario: analysis ran" || return 1

	res=$("$CL_PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1]))
f=lambda k: "-" if r[k] is None else r[k]
print("drill %s: rto=%ss reads_unavailable=%ss promotion_to_first_payment=%ss acknowledged=%s lost=%s duplicates=%s"
      % (r["scenario"], f("rto_s"), f("reads_unavailable_s"), f("promotion_to_first_payment_s"),
         r["acknowledged"], r["lost"], f("duplicates")))' "$result")
	echo "$res"
	# the issue's targets on these 2-core machines (reported, not asserted:
	# they depend on Patroni's timing and on the machine's load)
	"$CL_PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1]))
t={"postmaster_kill":6,"node_loss":12,"switchover":5}[r["scenario"]]
f=lambda x,lim: "-" if x is None else ("%s (%s)" % (x, "ok" if x <= lim else "OVER"))
print("# targets: rto <= %ss: %s; promotion->first payment <= 1s: %s"
      % (t, f(r["rto_s"], t), f(r["promotion_to_first_payment_s"], 1)))' "$result"
	cat "$result" >>"$json_file" && echo >>"$json_file"
	return 0
}
