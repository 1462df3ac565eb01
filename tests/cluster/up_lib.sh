# up_lib.sh: the parts of bringing up a cluster that tests/cluster/up.sh
# (loopback) and tests/partition/up.sh (network namespaces) share:
# cl_prepare (the cluster folder, the checks, fail()) and cl_up_daemons
# (every daemon, once the caller has written DIR/cluster.env with the ports,
# addresses (NODE_ADDR_I, loopback if unset), namespaces (NETNS_I, NETNS_GW,
# NETNS_CLIENT, none if unset), ETCD_HOSTS, passwords and APP_USER).
# Sourced after lib.sh.

# cl_prepare DIR DOWN_SH BINARY...: make DIR (absolute path in CL_DIR, with
# run/ and log/, owned by the PostgreSQL user when root), refuse it if a
# cluster is up there, check the binaries (and postgres), build the fake
# gateway if needed, set T_START and trap INT/TERM.  fail() then tails the
# logs and tears down with DOWN_SH --keep (unless FT_CLUSTER_KEEP_ON_FAIL).
cl_prepare()
{
	local b
	mkdir -p "$1"
	CL_DIR=$(cd "$1" && pwd)
	CL_DOWN_SH=$2
	shift 2
	[ -e "$CL_DIR/cluster.env" ] &&
		{ echo "$CL_DIR/cluster.env exists: cluster already up? (down.sh first)" >&2; exit 1; }
	chmod 755 "$CL_DIR"
	mkdir -p "$CL_DIR/run" "$CL_DIR/log"
	[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER:" "$CL_DIR" "$CL_DIR/run" "$CL_DIR/log"
	for b in "$@" "$FT_PG_BIN/postgres"; do
		[ -x "$b" ] || { echo "missing $b (make deps)" >&2; exit 1; }
	done
	[ -x "$FT_GATEWAY_BIN" ] || make -s -C "$FT_ROOT/tests/fake_gateway" >&2 ||
		{ echo "cannot build the fake gateway" >&2; exit 1; }
	T_START=$(now_s)
	trap 'fail "interrupted"' INT TERM
}

fail()
{
	local f
	echo "up.sh: $*" >&2
	for f in "$CL_DIR"/log/*.log; do
		[ -f "$f" ] || continue
		echo "---- tail $f" >&2
		tail -n 15 "$f" >&2
	done
	[ -z "${FT_CLUSTER_KEEP_ON_FAIL:-}" ] && "$CL_DOWN_SH" --keep "$CL_DIR" >&2
	exit 1
}

# app_q PORT SQL: one query as the application role through HAProxy (from
# the client namespace, if any)
app_q()
{
	local ns=()
	[ -n "${NETNS_CLIENT:-}" ] && ns=(nsenter --net="/run/netns/$NETNS_CLIENT" --)
	PGPASSWORD=$APP_PASSWORD PGCONNECT_TIMEOUT=2 "${ns[@]}" "$FT_PG_BIN/psql" -XAtq \
		-h "${HAPROXY_HOST:-127.0.0.1}" -p "$1" -U "$APP_USER" -d ftdb -c "$2" 2>/dev/null
}

# cl_write_env WRITER: write DIR/cluster.env from the caller's lines on
# stdin (ports, addresses, namespaces) plus CL_DIR, fresh passwords,
# APP_USER and DB, and source it
cl_write_env()
{
	local who
	{
		echo "# written by $1; sourced by the cluster scripts"
		echo "CL_DIR=$CL_DIR"
		cat
		for who in SU REPL REWIND APP; do
			echo "${who}_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
		done
		echo "APP_USER=ft_app"
		echo "DB=ftdb"
	} >"$CL_DIR/cluster.env"
	chmod 644 "$CL_DIR/cluster.env"
	. "$CL_DIR/cluster.env"
}

# cl_wait_while_alive TRIES PIDVAR_PREFIX NAME COMMAND...: run COMMAND in
# this shell every 0.1 s until it succeeds (status 0) or TRIES rounds have
# passed (status 1); fail() at once if one of the three daemons whose pids
# are in PIDVAR_PREFIX1..3 has exited
cl_wait_while_alive()
{
	local tries=$1 prefix=$2 name=$3 i pv
	shift 3
	for _ in $(seq 1 "$tries"); do
		"$@" && return 0
		for i in 1 2 3; do
			pv="$prefix$i"
			kill -0 "${!pv}" 2>/dev/null || fail "$name of node $i exited"
		done
		sleep 0.1
	done
	return 1
}

cl_etcd_all_healthy() { cl_etcd_healthy 1 && cl_etcd_healthy 2 && cl_etcd_healthy 3; }
# sets LEADER: the first node whose REST API answers 200 on GET /primary
cl_find_leader() { LEADER=$(leader_node) && [ -n "$LEADER" ]; }

# cl_up_daemons GW_LISTEN HAPROXY_BIND: the fake gateway (on GW_LISTEN), the
# three etcd members, the three Patroni nodes, database ftdb with the
# extension and the application role, HAProxy (on HAPROXY_BIND); returns
# once the leader streams to two replicas, one sync, and HAProxy routes
# both ports.  Records every pid in cluster.env as it goes (down.sh).
cl_up_daemons()
{
	local gw_listen=$1 haproxy_bind=$2 i healthy
	# ---------------------------------------------------------------- gateway
	rm -f "$CL_DIR/gateway.port"
	CL_NETNS=${NETNS_GW:-} as_pg_exec "$FT_GATEWAY_BIN" --listen "$gw_listen" --port 0 --port-file "$CL_DIR/gateway.port" \
		--hang-ms 3000 >"$CL_DIR/log/gateway.log" 2>&1 </dev/null &
	GW_PID=$!
	cl_set_env "$CL_DIR" GW_PID "$GW_PID"
	for _ in $(seq 1 100); do [ -s "$CL_DIR/gateway.port" ] && break; sleep 0.05; done
	[ -s "$CL_DIR/gateway.port" ] || fail "fake gateway did not start"
	GW_PORT=$(cat "$CL_DIR/gateway.port")
	GW_URL="http://$gw_listen:$GW_PORT"
	cl_set_env "$CL_DIR" GW_PORT "$GW_PORT"
	cl_set_env "$CL_DIR" GW_URL "$GW_URL"

	# ---------------------------------------------------------------- etcd
	# three members, one per database node (no single point of failure), v2 API
	# on for Patroni's `etcd:` DCS (lib.sh cl_write_patroni_yml says why)
	for i in 1 2 3; do
		cl_start_etcd "$i"
		cl_set_env "$CL_DIR" "ETCD_PID_$i" "$CL_STARTED_PID"
	done
	. "$CL_DIR/cluster.env"
	cl_wait_while_alive 150 ETCD_PID_ etcd cl_etcd_all_healthy ||
		fail "etcd (3 members) not healthy after 15 s"

	# ---------------------------------------------------------------- Patroni
	for i in 1 2 3; do
		cl_write_patroni_yml "$i"
	done

	for i in 1 2 3; do
		start_patroni "$i"
		cl_set_env "$CL_DIR" "PATRONI_PID_$i" "$CL_STARTED_PID"
	done
	. "$CL_DIR/cluster.env"

	# the leader: first node whose REST answers 200 on GET /primary
	LEADER=
	cl_wait_while_alive 600 PATRONI_PID_ Patroni cl_find_leader || fail "no leader after 60 s"
	cl_log "leader n$LEADER after $(awk -v a="$(now_s)" -v b="$T_START" 'BEGIN{printf "%.1f", a-b}') s"

	# ---------------------------------------------------------------- database
	node_q "$LEADER" "CREATE DATABASE ftdb" postgres >/dev/null ||
		fail "CREATE DATABASE ftdb on n$LEADER failed"
	node_q "$LEADER" "CREATE EXTENSION ft_orders" >/dev/null ||
		fail "CREATE EXTENSION ft_orders on n$LEADER failed: $(node_psql "$LEADER" -d ftdb -c 'CREATE EXTENSION ft_orders' 2>&1)"
	node_q "$LEADER" "CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASSWORD' IN ROLE ft_orders_app" >/dev/null ||
		fail "CREATE ROLE $APP_USER failed"

	# ---------------------------------------------------------------- HAProxy
	cl_write_haproxy_cfg "$haproxy_bind"
	/usr/sbin/haproxy -c -q -f "$CL_DIR/haproxy.cfg" >"$CL_DIR/log/haproxy-check.log" 2>&1 ||
		fail "haproxy -c rejected the configuration"
	CL_NETNS=${NETNS_CLIENT:-} as_pg_exec /usr/sbin/haproxy -db -f "$CL_DIR/haproxy.cfg" >"$CL_DIR/log/haproxy.log" 2>&1 </dev/null &
	HAPROXY_PID=$!
	cl_set_env "$CL_DIR" HAPROXY_PID "$HAPROXY_PID"

	# ---------------------------------------------------------------- healthy?
	healthy=
	for _ in $(seq 1 600); do
		LEADER=$(leader_node) || LEADER=
		if [ -n "$LEADER" ] && [ "$(replication_state "$LEADER")" = "2 1" ] &&
			[ "$(app_q "$HAPROXY_RW_PORT" 'SELECT pg_is_in_recovery()')" = f ] &&
			[ "$(app_q "$HAPROXY_RO_PORT" 'SELECT pg_is_in_recovery()')" = t ] &&
			[ "$(app_q "$HAPROXY_RO_PORT" "SELECT count(*) FROM pg_extension WHERE extname = 'ft_orders'")" = 1 ]; then
			healthy=1; break
		fi
		kill -0 "$HAPROXY_PID" 2>/dev/null || fail "HAProxy exited"
		sleep 0.1
	done
	[ -n "$healthy" ] || fail "cluster not healthy after 60 s (leader=${LEADER:-none} replication=$( [ -n "$LEADER" ] && replication_state "$LEADER"))"
	# The bootstrap wrote ~50 MB of WAL (CREATE DATABASE copies template1
	# through WAL): checkpoint now, so that the first crash recovery of a drill
	# replays the drill's own WAL, not the set-up's.
	for i in 1 2 3; do
		node_q "$i" "CHECKPOINT" postgres >/dev/null || cl_log "CHECKPOINT on n$i failed"
	done
	cl_log "cluster healthy in $(awk -v a="$(now_s)" -v b="$T_START" 'BEGIN{printf "%.1f", a-b}') s: leader n$LEADER, 2 streaming replicas, 1 sync; rw=$HAPROXY_RW_PORT ro=$HAPROXY_RO_PORT gateway=$GW_URL"
}
