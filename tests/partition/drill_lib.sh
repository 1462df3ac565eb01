# drill_lib.sh: run_partition_drill DIR SCENARIO, one drill on the cluster
# tests/partition/up.sh started in DIR.  Sourced after tests/lib/tap.sh.
#
# Timeline: cluster whole (leader n_old, 2 streaming replicas, 1 sync);
# gateway ledger cleared, gateway faults on (5 % 503, 1 % lost replies);
# role sampler and order load started (load client in the client
# namespace, retrying the same key until acknowledged, never cancelling a
# commit); FT_DRILL_BEFORE s of load; the fault (t0); the scenario's hold
# (fixed, or until another node is primary plus a margin); the heal; writes
# succeed again; FT_DRILL_AFTER s more load; stop the load; the cluster
# whole again (old leader rejoined) and the backlog drained; check.py.
#
# Scenarios (ftp_scenario_* below; FTP_SUBSET is what `make test` runs):
FTP_SUBSET="zombie_leader freeze_patroni disk_full gateway_partition"
FTP_ALL="$FTP_SUBSET leader_isolated clients_only replica_isolated one_way_leader_to_sync one_way_sync_to_leader one_way_leader_to_etcd flap_leader loss_leader node_frozen postmaster_stopped gateway_loss"
# drills that need the fault shims preloaded (up.sh with FTP_PRELOAD=1):
# run.sh runs them on a second cluster so the others run without them
FTP_PRELOADED="eio_leader skew_leader_plus skew_leader_minus"
# (zombie_leader_local_commit is in FTP_ALL: see its comment)
FTP_ALL="$FTP_ALL zombie_leader_local_commit"

HERE_P=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE_P/../cluster/drill_lib.sh"
. "$HERE_P/netns.sh"

FTP_DRILL_FAULTS=${FTP_DRILL_FAULTS:-'{"fail_rate":0.05,"fail_status":503,"timeout_rate":0.01}'}

# a scenario sets: what it does (FTP_DO), how it is undone (FTP_UNDO), how
# long the fault holds (FTP_HOLD: seconds; with FTP_UNTIL_NEW=1, seconds
# after another node became primary), FTP_FAILOVER (1: expect another
# primary), FTP_NO_CLIENT_ERRORS (1: gateway drills)
ftp_scenario()
{
	local old=$1 sync=$2 other=$3
	FTP_UNTIL_NEW=0 FTP_FAILOVER=0 FTP_NO_CLIENT_ERRORS=0 FTP_HOLD=20 FTP_DEMOTE_AFTER_HEAL=0
	FTP_SESSION_OPTIONS=
	case $FTP_SC in
		zombie_leader)		# cut from etcd and the replicas, still reaching clients and gateway
			FTP_DO="isolate_from_cluster $old"; FTP_UNDO=heal
			FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=10 ;;
		zombie_leader_local_commit)
			# The drill that proves a deterministic payment_key (docs/reference.md, "Failures")
			# once workers claim with the server's synchronous_commit (b):
			# the server runs with synchronous_commit = local (so a worker's
			# claim does not wait for the standby) while the load client
			# sets synchronous_commit = on in its own sessions (so its
			# commits do).  The zombie's commits that wait for the
			# unreachable standby become visible when Patroni demotes it
			# (the wait is cancelled), its workers claim and charge them,
			# pg_rewind then loses them with the old timeline and the
			# client's retry re-creates each order on the new primary: only
			# a payment_key derived from the client's key and request keeps
			# that at one charge.  Since the workers stop claiming at the
			# shutdown's SIGTERM this happens rarely (check.py counts it as
			# recreated_orders); tests/integration/payment_key.sh tests the
			# same path deterministically.
			FTP_DO="sync_commit_local on; isolate_from_cluster $old"
			FTP_UNDO="heal; sync_commit_local off"
			FTP_SESSION_OPTIONS="-c synchronous_commit=on"
			FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=10 ;;
		freeze_patroni)		# only the leader's Patroni SIGSTOPped past ttl (10 s)
			# (nothing demotes its PostgreSQL until Patroni runs again:
			# Patroni's watchdog would, it is off here)
			FTP_DO="freeze_patroni $old"; FTP_UNDO="thaw_patroni $old"
			FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=8 FTP_DEMOTE_AFTER_HEAL=1 ;;
		disk_full)			# the leader's pg_wal filesystem full
			FTP_DO="fill_disk $old"; FTP_UNDO="free_disk $old"
			FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=5 ;;
		gateway_partition)	# the gateway cut from every database node for 20 s
			FTP_DO="partition g 1; partition g 2; partition g 3"; FTP_UNDO=heal
			FTP_HOLD=20 FTP_NO_CLIENT_ERRORS=1 ;;
		leader_isolated)
			FTP_DO="isolate $old"; FTP_UNDO=heal; FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=10 ;;
		clients_only)		# Patroni keeps the leader: writes wait for the heal
			FTP_DO="partition $old c"; FTP_UNDO=heal; FTP_HOLD=15 ;;
		replica_isolated)	# the synchronous standby isolated: Patroni picks the other one
			FTP_DO="isolate $sync"; FTP_UNDO=heal; FTP_HOLD=20 ;;
		one_way_leader_to_sync)
			FTP_DO="one_way $old $sync"; FTP_UNDO=heal; FTP_HOLD=20 ;;
		one_way_sync_to_leader)
			FTP_DO="one_way $sync $old"; FTP_UNDO=heal; FTP_HOLD=20 ;;
		one_way_leader_to_etcd)	# the leader's packets to the other etcd members dropped
			FTP_DO="one_way $old $sync; one_way $old $other"; FTP_UNDO=heal
			FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=10 ;;
		flap_leader)		# the leader's link down/up every 1-3 s for 60 s
			FTP_DO="flap $old 1-3"; FTP_UNDO=heal; FTP_HOLD=60 FTP_FAILOVER=maybe ;;
		loss_leader)		# 30 % of the packets to the leader dropped for 30 s
			FTP_DO="loss $old 30"; FTP_UNDO=heal; FTP_HOLD=30 FTP_FAILOVER=maybe ;;
		node_frozen)		# the leader's etcd, Patroni and PostgreSQL SIGSTOPped past ttl
			FTP_DO="freeze $old"; FTP_UNDO=thaw; FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=8 FTP_DEMOTE_AFTER_HEAL=1 ;;
		postmaster_stopped)	# only the leader's postmaster SIGSTOPped for 20 s
			FTP_DO="kill -STOP \$(postmaster_pid $old)"; FTP_UNDO="kill -CONT \$(postmaster_pid $old)"
			FTP_HOLD=20 FTP_FAILOVER=maybe ;;
		gateway_loss)		# 30 % of the packets toward the gateway dropped for 30 s
			FTP_DO="loss g 30"; FTP_UNDO=heal; FTP_HOLD=30 FTP_NO_CLIENT_ERRORS=1 ;;
		eio_leader)			# fsync/fdatasync/pwrite of the leader's postgres fail with EIO
			FTP_DO="eio $old on"; FTP_UNDO="eio $old off"; FTP_UNTIL_NEW=1 FTP_FAILOVER=1 FTP_HOLD=5 ;;
		skew_leader_plus)	# the leader's PostgreSQL clock 1 h ahead for 30 s, then back
			FTP_DO="skew $old 3600"; FTP_UNDO="skew $old 0"; FTP_HOLD=30 ;;
		skew_leader_minus)	# the leader's PostgreSQL clock 1 h behind for 30 s, then back
			FTP_DO="skew $old -3600"; FTP_UNDO="skew $old 0"; FTP_HOLD=30 ;;
		*) return 1 ;;
	esac
}

# sync_commit_local on|off: the server's synchronous_commit = local on every
# node (ALTER SYSTEM + reload over the Unix sockets, which no network fault
# touches), or back to the default
sync_commit_local()
{
	local i sql="ALTER SYSTEM SET synchronous_commit = 'local'"
	[ "$1" = off ] && sql="ALTER SYSTEM RESET synchronous_commit"
	for i in 1 2 3; do
		node_q "$i" "$sql" postgres >/dev/null
		node_q "$i" "SELECT pg_catalog.pg_reload_conf()" postgres >/dev/null
	done
}

# in the client namespace
in_client() { (in_ns "$NETNS_CLIENT" "$@"); }

run_partition_drill()
{
	local dir=$1 scenario=$2
	local old sync other new final t0 t_heal t_stop tag load_json roles_pid rc out res
	local drained=0 whole=0 deadline drain_s
	CL_DIR=$(cd "$dir" && pwd)
	cl_load_env "$CL_DIR" || { ok 1 "$scenario: cluster environment"; return 1; }
	FTP_SC=$scenario
	DRILL_SEQ=$((DRILL_SEQ + 1))
	tag="$scenario-$(date +%H%M%S)"
	load_json="$CL_DIR/drill-$tag.load.json"
	DRILL_STATUS="$CL_DIR/drill-$tag.status"

	old=$(leader_node) || old=
	if [ -z "$old" ] || ! wait_cluster_whole "$old" 90; then
		ok 1 "$scenario: cluster whole before the drill (leader=${old:-none} replication=$( [ -n "$old" ] && replication_state "$old"))"
		return 1
	fi
	sync=$(node_q "$old" "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync' LIMIT 1" postgres)
	sync=${sync#n}
	for other in 1 2 3; do [ "$other" != "$old" ] && [ "$other" != "$sync" ] && break; done
	ftp_scenario "$old" "$sync" "$other" || { ok 1 "unknown scenario $scenario"; return 1; }
	# zombie_leader_local_commit: the server setting must be in place
	# before the load starts (FTP_DO sets it again, harmlessly)
	case $FTP_DO in sync_commit_local*) sync_commit_local on ;; esac
	ok 0 "$scenario: cluster whole before the drill: leader n$old, sync standby n$sync"

	in_client curl -fsS -m 5 -X DELETE "$GW_URL/ledger" >/dev/null &&
		in_client curl -fsS -m 5 -X DELETE "$GW_URL/faults" >/dev/null &&
		in_client curl -fsS -m 5 -X POST -d "$FTP_DRILL_FAULTS" "$GW_URL/faults" >/dev/null
	ok $? "$scenario: gateway ledger cleared, faults on: $FTP_DRILL_FAULTS"

	"$CL_PYTHON" "$HERE_P/roles.py" --sock "$CL_DIR/run" --ports "$PG_PORT_1,$PG_PORT_2,$PG_PORT_3" \
		--out "$CL_DIR/drill-$tag.roles" &
	roles_pid=$!
	PGPASSWORD=$APP_PASSWORD nsenter --net="/run/netns/$NETNS_CLIENT" -- "$CL_PYTHON" "$CL_HERE/load_client.py" \
		--host "$HAPROXY_HOST" --rw-port "$HAPROXY_RW_PORT" --ro-port "$HAPROXY_RO_PORT" \
		--rest-ports "$REST_PORT_1,$REST_PORT_2,$REST_PORT_3" \
		--rest-hosts "$NODE_ADDR_1,$NODE_ADDR_2,$NODE_ADDR_3" --customer-is-key \
		--user "$APP_USER" --prefix "$tag" --out "$load_json" --status "$DRILL_STATUS" \
		--session-options "$FTP_SESSION_OPTIONS" \
		--drain-timeout 60 2>"$CL_DIR/log/load-$tag.log" &
	DRILL_LOAD_PID=$!
	cl_set_env "$CL_DIR" LOAD_PID "$DRILL_LOAD_PID"
	sleep "$FT_DRILL_BEFORE"
	cmp_ok "$(load_status acked)" -gt 0 "$scenario: orders acknowledged before the fault"

	# ---------------------------------------------------------- fault
	t0=$(now_s)
	eval "$FTP_DO"
	diag "$(date +%T) $scenario: fault on (leader n$old, sync n$sync): $FTP_DO"
	new=
	if [ "$FTP_UNTIL_NEW" = 1 ]; then
		deadline=$(($(date +%s) + 90))
		while [ "$(date +%s)" -le "$deadline" ]; do
			for i in 1 2 3; do
				[ "$i" = "$old" ] && continue
				[ "$(node_q "$i" "SELECT NOT pg_is_in_recovery()" postgres)" = t ] && { new=$i; break 2; }
			done
			sleep 0.2
		done
		if [ -n "$new" ]; then
			ok 0 "$scenario: n$new primary $(secs_since "$t0") s after the fault"
		else
			ok 1 "$scenario: another node primary within 90 s of the fault"
		fi
	fi
	sleep "$FTP_HOLD"
	t_heal=$(now_s)
	eval "$FTP_UNDO"
	diag "$(date +%T) $scenario: healed after $(secs_since "$t0") s: $FTP_UNDO"

	# writes succeed again (an attempt started after the heal)
	local t_rec=
	for _ in $(seq 1 300); do
		if awk -v s="$(load_status last_ok_start)" -v h="$t_heal" 'BEGIN { exit !(s > h) }'; then
			t_rec=1; break
		fi
		sleep 0.2
	done
	[ -n "$t_rec" ]
	ok $? "$scenario: writes through HAProxy succeed after the heal ($(secs_since "$t_heal") s)"
	sleep "$FT_DRILL_AFTER"
	stop_load 90
	[ -s "$load_json" ]
	ok $? "$scenario: load client wrote its history" || { kill "$roles_pid" 2>/dev/null; return 1; }

	# ---------------------------------------------------------- rejoin, drain
	deadline=$(($(date +%s) + 120))
	final=
	while [ "$(date +%s)" -le "$deadline" ]; do
		final=$(leader_node) || final=
		if [ -n "$final" ] && [ "$(replication_state "$final")" = "2 1" ]; then
			whole=1; break
		fi
		sleep 0.5
	done
	[ -n "$final" ] || final=${new:-$old}
	t_stop=$(now_s)
	deadline=$(($(date +%s) + FT_DRILL_DRAIN_TIMEOUT))
	while [ "$(date +%s)" -le "$deadline" ]; do
		[ "$(node_q "$final" "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending' AND idempotency_key LIKE '$tag-%'")" = 0 ] && { drained=1; break; }
		sleep 0.5
	done
	drain_s=$(secs_since "$t_stop")
	kill -TERM "$roles_pid" 2>/dev/null; wait "$roles_pid" 2>/dev/null
	in_client curl -fsS -m 5 -X DELETE "$GW_URL/faults" >/dev/null

	# ---------------------------------------------------------- checks
	local extra=()
	[ "$FTP_NO_CLIENT_ERRORS" = 1 ] && extra+=(--no-client-errors)
	[ "$FTP_DEMOTE_AFTER_HEAL" = 1 ] && extra+=(--demotion-after-heal)
	[ -n "${FT_PARTITION_JSON:-}" ] && extra+=(--json "$FT_PARTITION_JSON")
	out=$(in_client "$CL_PYTHON" "$HERE_P/check.py" --scenario "$scenario" --load "$load_json" \
		--roles "$CL_DIR/drill-$tag.roles" --t0 "$t0" --t-heal "$t_heal" --old "$old" --final "$final" \
		--sock "$CL_DIR/run" --ports "$PG_PORT_1,$PG_PORT_2,$PG_PORT_3" \
		--addrs "$NODE_ADDR_1,$NODE_ADDR_2,$NODE_ADDR_3" --gateway "$GW_URL" \
		--drained "$drained" --drain-s "$drain_s" --whole "$whole" \
		--demotion-window "${FTP_DEMOTION_WINDOW:-5}" --request-bound "${FTP_REQUEST_BOUND:-15}" \
		--result "$CL_DIR/drill-$tag.result.json" "${extra[@]}" 2>&1)
	rc=$?
	report_checks check <<<"$out"
	ok $rc "$scenario: checker ran" || return 1
	cat "$CL_DIR/drill-$tag.result.json" >>"$FTP_RUN_JSON"
	return 0
}

# ftp_table FILE: the drill table of the JSON lines in FILE
ftp_table()
{
	"$CL_PYTHON" - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = ["scenario", "acknowledged", "unknown", "lost", "duplicate_charges", "phantom_charges",
        "stuck", "write_unavailable_s", "old_leader_requests_after_demotion",
        "last_old_leader_request_s", "new_primary_after_s", "two_primaries_s", "checker_ok"]
heads = ["scenario", "acked", "unknown", "lost", "dup_charges", "phantom", "stuck",
         "write_unavail_s", "old_req_after", "old_last_req_s", "new_primary_s", "two_primaries_s", "ok"]
print("# | " + " | ".join(heads) + " |")
for r in rows:
    print("# | " + " | ".join("-" if r.get(k) is None else str(r.get(k)) for k in cols) + " |")
PY
}
