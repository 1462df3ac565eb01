# node_service_lib.sh: run_node_service DIR, the Node.js example service
# (examples/node-order-service) tested with node's test runner on the
# cluster tests/cluster/up.sh started in DIR: its unit tests, its HTTP API
# through HAProxy, and a failover under order load.  Sourced after
# tests/lib/tap.sh (by node_service.sh and run.sh): each top-level node test
# becomes one ok/not ok line of the caller's TAP stream, the rest diagnostics.
#   FT_NODE_FAILOVER=postmaster_kill|switchover   the fault (default postmaster_kill)
#   FT_NODE_LOAD_ORDERS=N                         orders placed during it (default 300)

. "$(dirname "${BASH_SOURCE[0]}")/drill_lib.sh"

NS_EXAMPLE=$FT_ROOT/examples/node-order-service
. "$(dirname "${BASH_SOURCE[0]}")/node_service_tap.sh"

# the fault the failover test triggers (called back by the test through
# FT_FAILOVER_CMD): node_service.sh --failover DIR SCENARIO
ns_failover()
{
	local scenario=$2 old new pm cand t0
	CL_DIR=$(cd "$1" && pwd)
	cl_load_env "$CL_DIR" || return 1
	old=$(leader_node) || { echo '{"error":"no leader before the fault"}'; return 1; }
	pm=$(postmaster_pid "$old")
	t0=$(now_s)
	case "$scenario" in
		postmaster_kill)
			kill -KILL "$pm" ;;
		switchover)
			cand=$(node_q "$old" "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync' LIMIT 1" postgres)
			cl_patronictl switchover --leader "n$old" --candidate "$cand" --force >&2 ;;
		*) echo "{\"error\":\"unknown scenario $scenario\"}"; return 1 ;;
	esac
	echo "# $(date +%T.%3N) $scenario of leader n$old (postmaster $pm)" >&2
	for _ in $(seq 1 300); do
		new=$(leader_node) || new=
		if [ -n "$new" ] && [ "$new" != "$old" ] &&
			[ "$(node_q "$new" "SELECT NOT pg_is_in_recovery()" postgres)" = t ]; then
			local pv="PG_PORT_$new"
			printf '{"scenario":"%s","old":%s,"new":%s,"new_port":%s,"promoted_s":%s}\n' \
				"$scenario" "$old" "$new" "${!pv}" "$(secs_since "$t0")"
			return 0
		fi
		sleep 0.2
	done
	echo "{\"error\":\"no new leader within 60 s\",\"old\":$old}"
	return 1
}

# ns_browser_failover: test/browser_failover.test.js, chromium in a process
# group of its own (ended at return, also on failure), its temporary
# profiles under the cluster's folder; screenshots into CL_DIR/log/browser
ns_browser_failover()
{
	local tmp=$CL_DIR/browser-tmp pgid_file=$CL_DIR/browser.pgid
	mkdir -p "$tmp" "$CL_DIR/log/browser"
	rm -f "$pgid_file"
	FT_CHROMIUM=${FT_CHROMIUM:-/usr/bin/chromium} FT_BROWSER_OUT=$CL_DIR/log/browser TMPDIR=$tmp \
		FT_SERVICE_LOG=$CL_DIR/log/node-service-browser.log PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
		NS_PGID_FILE=$pgid_file node_tap browser_failover.test.js
	if [ -s "$pgid_file" ]; then
		kill -TERM -- "-$(cat "$pgid_file")" 2>/dev/null
		sleep 0.3
		kill -KILL -- "-$(cat "$pgid_file")" 2>/dev/null
	fi
	return 0
}

run_node_service()
{
	local dir=$1 leader log_file f t_begin
	t_begin=$(date +%s)
	CL_DIR=$(cd "$dir" && pwd)
	cl_load_env "$CL_DIR" || { ok 1 "node service: cluster environment"; return 1; }
	if ! command -v node >/dev/null 2>&1; then
		ok 1 "node service: node is installed (tests/setup/deps.sh)"
		return 1
	fi
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	cmp_ok "$major" -ge 18 "node service: node >= 18 (found $(node --version))" || return 1
	if [ ! -f "$NS_EXAMPLE/node_modules/playwright-core/package.json" ]; then
		(cd "$NS_EXAMPLE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
		ok $? "node service: npm ci in examples/node-order-service" || return 1
	fi

	# after the drills, the old leader may still be rejoining: the
	# failover needs a synchronous standby
	leader=$(leader_node) || leader=
	[ -n "$leader" ] && wait_cluster_whole "$leader" 60
	ok $? "node service: cluster whole before the tests (leader n${leader:-none}, 2 streaming replicas, 1 sync)" || return 1
	curl -fsS -m 5 -X DELETE "$GW_URL/faults" >/dev/null 2>&1

	log_file=$CL_DIR/log/node-service-failover.log
	: >"$log_file"
	export FT_WRITE_HOST=127.0.0.1 FT_WRITE_PORT=$HAPROXY_RW_PORT FT_READ_HOST=127.0.0.1 \
		FT_READ_PORT=$HAPROXY_RO_PORT FT_DATABASE=$DB FT_USER=$APP_USER FT_PASSWORD=$APP_PASSWORD \
		FT_GATEWAY_URL=$GW_URL FT_CHECK_USER=postgres FT_CHECK_PASSWORD=$SU_PASSWORD \
		FT_SERVICE_LOG=$log_file FT_LOAD_ORDERS=${FT_NODE_LOAD_ORDERS:-300} \
		FT_FAILOVER_CMD="bash $CL_HERE/node_service.sh --failover $CL_DIR ${FT_NODE_FAILOVER:-postmaster_kill}"
	for f in unit api failover; do
		diag "---- node --test test/$f.test.js"
		node_tap "$f.test.js"
	done

	# a failover with the checkout page and the console open in chromium
	diag "---- node --test test/browser_failover.test.js"
	if [ ! -x "${FT_CHROMIUM:-/usr/bin/chromium}" ]; then
		ok 1 "node service: chromium is installed (tests/setup/deps.sh)"
	else
		leader=$(leader_node) || leader=
		[ -n "$leader" ] && wait_cluster_whole "$leader" 60
		ok $? "node service: cluster whole again before the browser failover (leader n${leader:-none})" &&
			ns_browser_failover
	fi

	# the service's log around the failover (the retries summed up)
	diag "---- the service's log during the failover ($log_file)"
	"$CL_PYTHON" - "$log_file" <<'PY'
import json, sys
# every line, except that repetitive events are cut after a few
cap = {"retry": 6, "recovered": 4, "pool_client_lost": 2}
seen = {}
for raw in open(sys.argv[1]):
    try:
        event = json.loads(raw).get("event")
    except ValueError:
        event = None
    seen[event] = seen.get(event, 0) + 1
    if event in cap and seen[event] > cap[event]:
        continue
    print("# " + raw.rstrip())
print("# (not shown: %s)" % (", ".join("%d of %d %s lines" % (seen[e] - c, seen[e], e)
                                       for e, c in cap.items() if seen.get(e, 0) > c) or "nothing"))
PY
	diag "node service tests took $(( $(date +%s) - t_begin )) s"
}
