#!/bin/bash
# up.sh DIR: bring up, on 127.0.0.1 only, a Patroni cluster for ft_orders:
# etcd (one member), three PostgreSQL 15 nodes managed by Patroni
# (synchronous_mode, pg_rewind, slots, ft_orders preloaded), HAProxy (write
# port -> GET /primary, read port -> GET /replica) and the fake gateway.
# Creates database ftdb with the extension on the leader (it replicates) and
# a login role for the load client, writes DIR/cluster.env and waits until
# the leader streams to two replicas, one of them synchronous.
#
# Every daemon runs as the PostgreSQL OS user through setpriv, so the pid in
# cluster.env is the daemon's own.  tests/cluster/down.sh DIR stops them.
# On failure up.sh tears down what it started (set FT_CLUSTER_KEEP_ON_FAIL=1
# to leave it for inspection).
set -u
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
CL_DIR=$1
mkdir -p "$CL_DIR"
CL_DIR=$(cd "$CL_DIR" && pwd)
[ -e "$CL_DIR/cluster.env" ] && { echo "$CL_DIR/cluster.env exists: cluster already up? (down.sh first)" >&2; exit 1; }
chmod 755 "$CL_DIR"
[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER:" "$CL_DIR"
mkdir -p "$CL_DIR/run" "$CL_DIR/log"
[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER:" "$CL_DIR/run" "$CL_DIR/log"

[ -x "$FT_GATEWAY_BIN" ] || make -s -C "$FT_ROOT/tests/fake_gateway" >&2 ||
	{ echo "cannot build the fake gateway" >&2; exit 1; }
for b in /usr/bin/patroni /usr/bin/etcd /usr/sbin/haproxy "$FT_PG_BIN/postgres"; do
	[ -x "$b" ] || { echo "missing $b (cluster packages not installed: make deps)" >&2; exit 1; }
done

T_START=$(now_s)
fail()
{
	echo "up.sh: $*" >&2
	for f in "$CL_DIR"/log/*.log; do
		[ -f "$f" ] || continue
		echo "---- tail $f" >&2
		tail -n 15 "$f" >&2
	done
	if [ -z "${FT_CLUSTER_KEEP_ON_FAIL:-}" ]; then
		"$CL_HERE/down.sh" --keep "$CL_DIR" >&2 || true
	fi
	exit 1
}
trap 'fail "interrupted"' INT TERM

# Patroni's primary_start_timeout: how long a crashed primary may take to
# restart in place before Patroni fails over.  Patroni's default (300) restarts
# it in place, which on these 2-core machines takes 12-23 s (crash recovery in
# single-user mode because of use_pg_rewind, a start as read-only, then a
# promotion); 0 fails over to the synchronous standby at once (3-4 s), which
# loses nothing under synchronous_mode.  FT_CLUSTER_PRIMARY_START_TIMEOUT=300
# measures the in-place restart instead.
PRIMARY_START_TIMEOUT=${FT_CLUSTER_PRIMARY_START_TIMEOUT:-0}

rand_pw() { head -c 18 /dev/urandom | base64 | tr -d '/+=' ; }

# ---------------------------------------------------------------- ports
ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port)
HAPROXY_RW_PORT=$(free_port); HAPROXY_RO_PORT=$(free_port)
for i in 1 2 3; do
	eval "PG_PORT_$i=$(free_port)"
	eval "REST_PORT_$i=$(free_port)"
	eval "DATA_$i=$CL_DIR/n$i"
done
SU_PASSWORD=$(rand_pw); REPL_PASSWORD=$(rand_pw); REWIND_PASSWORD=$(rand_pw)
APP_USER=ft_app; APP_PASSWORD=$(rand_pw)

{
	echo "# written by tests/cluster/up.sh; sourced by the other cluster scripts"
	echo "CL_DIR=$CL_DIR"
	echo "ETCD_PORT=$ETCD_PORT"
	echo "ETCD_PEER_PORT=$ETCD_PEER_PORT"
	echo "HAPROXY_RW_PORT=$HAPROXY_RW_PORT"
	echo "HAPROXY_RO_PORT=$HAPROXY_RO_PORT"
	for i in 1 2 3; do
		eval "echo PG_PORT_$i=\$PG_PORT_$i; echo REST_PORT_$i=\$REST_PORT_$i; echo DATA_$i=\$DATA_$i"
	done
	echo "SU_PASSWORD=$SU_PASSWORD"
	echo "APP_USER=$APP_USER"
	echo "APP_PASSWORD=$APP_PASSWORD"
	echo "DB=ftdb"
} >"$CL_DIR/cluster.env"
chmod 644 "$CL_DIR/cluster.env"

# ---------------------------------------------------------------- gateway
rm -f "$CL_DIR/gateway.port"
as_pg_exec "$FT_GATEWAY_BIN" --listen 127.0.0.1 --port 0 --port-file "$CL_DIR/gateway.port" \
	--hang-ms 3000 >"$CL_DIR/log/gateway.log" 2>&1 </dev/null &
GW_PID=$!
cl_set_env "$CL_DIR" GW_PID "$GW_PID"
for _ in $(seq 1 100); do [ -s "$CL_DIR/gateway.port" ] && break; sleep 0.05; done
[ -s "$CL_DIR/gateway.port" ] || fail "fake gateway did not start"
GW_PORT=$(cat "$CL_DIR/gateway.port")
GW_URL="http://127.0.0.1:$GW_PORT"
cl_set_env "$CL_DIR" GW_PORT "$GW_PORT"
cl_set_env "$CL_DIR" GW_URL "$GW_URL"

# ---------------------------------------------------------------- etcd
as_pg_exec /usr/bin/etcd --name e1 --data-dir "$CL_DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "e1=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new --initial-cluster-token ft \
	>"$CL_DIR/log/etcd.log" 2>&1 </dev/null &
ETCD_PID=$!
cl_set_env "$CL_DIR" ETCD_PID "$ETCD_PID"
ok_etcd=
for _ in $(seq 1 100); do
	if ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$ETCD_PORT" --command-timeout=1s endpoint health >/dev/null 2>&1; then
		ok_etcd=1; break
	fi
	kill -0 "$ETCD_PID" 2>/dev/null || break
	sleep 0.1
done
[ -n "$ok_etcd" ] || fail "etcd not healthy"

# ---------------------------------------------------------------- Patroni
for i in 1 2 3; do
	pg_var="PG_PORT_$i"; rest_var="REST_PORT_$i"
	cat >"$CL_DIR/n$i.yml" <<YAML
scope: ft
namespace: /service/
name: n$i
restapi:
  listen: 127.0.0.1:${!rest_var}
  connect_address: 127.0.0.1:${!rest_var}
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
log:
  level: INFO
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    primary_start_timeout: $PRIMARY_START_TIMEOUT
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        max_connections: 200
        shared_preload_libraries: ft_orders
        log_line_prefix: '%m [%p] %b '
        ft_orders.database: ftdb
        ft_orders.gateway_url: '$GW_URL'
        ft_orders.request_timeout: 2s
        ft_orders.connect_timeout: 1s
        ft_orders.lease_timeout: 5s
        ft_orders.backoff_base: 100ms
        ft_orders.backoff_max: 2s
        ft_orders.circuit_open_time: 2s
  initdb:
  - encoding: UTF8
  - data-checksums
  - auth-host: scram-sha-256
  - auth-local: trust
postgresql:
  listen: 127.0.0.1:${!pg_var}
  connect_address: 127.0.0.1:${!pg_var}
  data_dir: $CL_DIR/n$i
  bin_dir: $FT_PG_BIN
  pgpass: $CL_DIR/pgpass-n$i
  basebackup:
  - checkpoint: fast
  authentication:
    superuser: {username: postgres, password: '$SU_PASSWORD'}
    replication: {username: replicator, password: '$REPL_PASSWORD'}
    rewind: {username: rewinder, password: '$REWIND_PASSWORD'}
  parameters:
    unix_socket_directories: '$CL_DIR/run'
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256
watchdog:
  mode: 'off'
YAML
	chmod 600 "$CL_DIR/n$i.yml"
	[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER:" "$CL_DIR/n$i.yml"
done
cat >"$CL_DIR/patronictl.yml" <<YAML
scope: ft
namespace: /service/
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
YAML
chmod 644 "$CL_DIR/patronictl.yml"

for i in 1 2 3; do
	start_patroni "$i"
	cl_set_env "$CL_DIR" "PATRONI_PID_$i" "$CL_STARTED_PID"
done
. "$CL_DIR/cluster.env"

# the leader: first node whose REST answers 200 on GET /primary
LEADER=
for _ in $(seq 1 600); do
	LEADER=$(leader_node) && [ -n "$LEADER" ] && break
	for i in 1 2 3; do
		pv="PATRONI_PID_$i"
		kill -0 "${!pv}" 2>/dev/null || fail "Patroni n$i exited"
	done
	sleep 0.1
done
[ -n "$LEADER" ] || fail "no leader after 60 s"
cl_log "leader n$LEADER after $(awk -v a="$(now_s)" -v b="$T_START" 'BEGIN{printf "%.1f", a-b}') s"

# ---------------------------------------------------------------- database
node_q "$LEADER" "CREATE DATABASE ftdb" postgres >/dev/null ||
	fail "CREATE DATABASE ftdb on n$LEADER failed"
node_q "$LEADER" "CREATE EXTENSION ft_orders" >/dev/null ||
	fail "CREATE EXTENSION ft_orders on n$LEADER failed: $(node_psql "$LEADER" -d ftdb -c 'CREATE EXTENSION ft_orders' 2>&1)"
node_q "$LEADER" "CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASSWORD' IN ROLE ft_orders_app" >/dev/null ||
	fail "CREATE ROLE $APP_USER failed"

# ---------------------------------------------------------------- HAProxy
{
	cat <<CFG
global
    maxconn 4000
defaults
    mode tcp
    retries 2
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 2s
listen primary
    bind 127.0.0.1:$HAPROXY_RW_PORT
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
CFG
	for i in 1 2 3; do
		pv="PG_PORT_$i"; rv="REST_PORT_$i"
		echo "    server n$i 127.0.0.1:${!pv} check port ${!rv}"
	done
	cat <<CFG
listen replicas
    bind 127.0.0.1:$HAPROXY_RO_PORT
    balance roundrobin
    option httpchk GET /replica
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
CFG
	for i in 1 2 3; do
		pv="PG_PORT_$i"; rv="REST_PORT_$i"
		echo "    server n$i 127.0.0.1:${!pv} check port ${!rv}"
	done
} >"$CL_DIR/haproxy.cfg"
chmod 644 "$CL_DIR/haproxy.cfg"
/usr/sbin/haproxy -c -q -f "$CL_DIR/haproxy.cfg" >"$CL_DIR/log/haproxy-check.log" 2>&1 ||
	fail "haproxy -c rejected the configuration"
as_pg_exec /usr/sbin/haproxy -db -f "$CL_DIR/haproxy.cfg" >"$CL_DIR/log/haproxy.log" 2>&1 </dev/null &
HAPROXY_PID=$!
cl_set_env "$CL_DIR" HAPROXY_PID "$HAPROXY_PID"

# ---------------------------------------------------------------- healthy?
app_q()
{
	PGPASSWORD=$APP_PASSWORD PGCONNECT_TIMEOUT=2 "$FT_PG_BIN/psql" -XAtq \
		-h 127.0.0.1 -p "$1" -U "$APP_USER" -d ftdb -c "$2" 2>/dev/null
}
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
exit 0
