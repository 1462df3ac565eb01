# lib.sh: helpers shared by the cluster scripts (up.sh, down.sh, drill.sh,
# run.sh).  Sourced, never run.  Unlike tests/lib/common.sh it installs no
# EXIT trap and makes no temp folder: the cluster outlives up.sh.

CL_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FT_ROOT=$(cd "$CL_HERE/../.." && pwd)
. "$FT_ROOT/tests/lib/pg_major.sh"
FT_PG_BIN=${FT_PG_BIN:-/usr/lib/postgresql/$FT_PG_MAJOR/bin}
FT_GATEWAY_BIN=${FT_GATEWAY_BIN:-$FT_ROOT/tests/fake_gateway/fake_gateway}
CL_PYTHON=/usr/bin/python3		# Debian's patroni needs this interpreter (RECIPES pitfall)

if [ "$(id -u)" -eq 0 ]; then
	FT_PG_USER=${FT_PG_USER:-postgres}
else
	FT_PG_USER=$(id -un)
fi

# run a command as the PostgreSQL OS user; exec, so $! is the real pid
as_pg()
{
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid="$FT_PG_USER" --regid="$(id -g "$FT_PG_USER")" --init-groups -- "$@"
	else
		"$@"
	fi
}

# as_pg_exec CMD...: only as "as_pg_exec CMD &": the backgrounded subshell
# execs setsid (which does not fork: a background job of a script is no
# process-group leader), which execs setpriv, which execs CMD, so $! is the
# daemon's own pid.  (A plain shell function run with & forks once more and
# $! would be the subshell's.)  setsid keeps a Ctrl-C on the terminal away
# from the daemons, so that the teardown stops them in order.
# CL_NETNS=NS (tests/partition) runs CMD in network namespace NS: nsenter
# execs too, so $! stays the daemon's pid.
as_pg_exec()
{
	local ns=()
	[ -n "${CL_NETNS:-}" ] && ns=(nsenter --net="/run/netns/$CL_NETNS" --)
	if [ "$(id -u)" -eq 0 ]; then
		exec "${ns[@]}" setsid setpriv --reuid="$FT_PG_USER" --regid="$(id -g "$FT_PG_USER")" --init-groups -- "$@"
	else
		exec "${ns[@]}" setsid "$@"
	fi
}

# node_addr I: the address node I's PostgreSQL and Patroni REST API listen
# on (NODE_ADDR_I in cluster.env; 127.0.0.1 for the loopback cluster)
node_addr() { local v="NODE_ADDR_$1"; echo "${!v:-127.0.0.1}"; }

# in_ns NS CMD...: exec CMD in network namespace NS (made by ip netns add).
# nsenter switches the network namespace only: ip netns exec (and ip -n)
# also make / a slave mount in a new mount namespace, which fails where /
# is not a mount point (a chroot such as a fresh-machine check).
in_ns()
{
	local ns=$1; shift
	exec nsenter --net="/run/netns/$ns" -- "$@"
}

# in_node I CMD...: run CMD in node I's network namespace (NETNS_I), if any
in_node()
{
	local v="NETNS_$1"; shift
	if [ -n "${!v:-}" ]; then (in_ns "${!v}" "$@"); else "$@"; fi
}

cl_log() { echo "# $(date +%T.%3N) $*" >&2; }

# a TCP port on 127.0.0.1 nothing listens on, not handed out before in
# this shell (CL_PORTS_TAKEN)
CL_PORTS_TAKEN=" "
free_port()
{
	local p
	for _ in $(seq 1 500); do
		# below the kernel's ephemeral range (32768-60999 by default), so
		# that no outgoing connection takes the port before a daemon that
		# restarts (node_loss) binds it again
		p=$((20000 + RANDOM % 12000))
		case "$CL_PORTS_TAKEN" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
			CL_PORTS_TAKEN="$CL_PORTS_TAKEN$p "
			echo "$p"
			return 0
		fi
	done
	return 1
}

# now as seconds since the epoch with fractions
now_s() { date +%s.%N; }

# pid_is PID WORD: the process PID exists and its command line contains WORD
pid_is()
{
	local pid=$1 word=$2
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
		{ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$word"
}

# wait_gone PID SECONDS: wait until PID has exited
wait_gone()
{
	local pid=$1 limit=${2:-30} i
	for i in $(seq 1 $((limit * 10))); do
		[ -d "/proc/$pid" ] || return 0
		# a zombie child of ours counts as gone
		grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# load DIR/cluster.env into the shell
cl_load_env()
{
	local dir=$1
	[ -r "$dir/cluster.env" ] || { echo "no $dir/cluster.env (is the cluster up?)" >&2; return 1; }
	# shellcheck disable=SC1091
	. "$dir/cluster.env"
}

# cl_set_env DIR NAME VALUE: replace (or add) one line of cluster.env
cl_set_env()
{
	local dir=$1 name=$2 value=$3 tmp
	tmp=$(mktemp "$dir/.cluster.env.XXXXXX")
	grep -v "^$name=" "$dir/cluster.env" >"$tmp" || true
	echo "$name=$value" >>"$tmp"
	chmod 644 "$tmp"
	mv "$tmp" "$dir/cluster.env"
}

# psql on one node over its Unix socket as the superuser: node_psql I [psql args]
node_psql()
{
	local i=$1; shift
	local port_var="PG_PORT_$i"
	PGCONNECT_TIMEOUT=3 "$FT_PG_BIN/psql" -XAtq -h "$CL_DIR/run" -p "${!port_var}" -U postgres "$@"
}

# node_q I SQL [DB]: one query, unaligned tuples only (empty on error)
node_q()
{
	node_psql "$1" -d "${3:-ftdb}" -v ON_ERROR_STOP=1 -c "$2" 2>/dev/null
}

# rest_status I PATH: HTTP status of Patroni's REST endpoint on node I (000
# if down), asked from inside the node's own namespace if it has one
rest_status()
{
	local i=$1 path=$2 port_var="REST_PORT_$1"
	in_node "$i" curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$(node_addr "$i"):${!port_var}$path" 2>/dev/null || true
}

# the node number whose Patroni answers 200 to GET /primary (empty if none)
leader_node()
{
	local i
	for i in 1 2 3; do
		[ "$(rest_status "$i" /primary)" = 200 ] && { echo "$i"; return 0; }
	done
	return 1
}

# postmaster pid of node I (first line of postmaster.pid), if it runs
postmaster_pid()
{
	local data_var="DATA_$1" pid
	[ -r "${!data_var}/postmaster.pid" ] || return 1
	pid=$(head -n 1 "${!data_var}/postmaster.pid" 2>/dev/null)
	pid_is "$pid" postgres && echo "$pid"
}

# patronictl for this cluster
cl_patronictl()
{
	as_pg "$CL_PYTHON" /usr/bin/patronictl -c "$CL_DIR/patronictl.yml" "$@"
}

# start (or restart) node I's Patroni as the PostgreSQL user; sets CL_STARTED_PID
# (NODE_ENV_I: "NAME=VALUE ..." for Patroni and its PostgreSQL, e.g. the
# LD_PRELOAD of tests/partition's fault shims)
start_patroni()
{
	local i=$1 ns="NETNS_$1" ev="NODE_ENV_$1"
	# shellcheck disable=SC2086
	CL_NETNS=${!ns:-} as_pg_exec env ${!ev:-} "$CL_PYTHON" /usr/bin/patroni "$CL_DIR/n$i.yml" >>"$CL_DIR/log/patroni-n$i.log" 2>&1 </dev/null &
	CL_STARTED_PID=$!
}

# cluster health on the leader: "<streaming replicas> <sync replicas>"
replication_state()
{
	node_q "$1" "SELECT count(*) FILTER (WHERE state = 'streaming') || ' ' || count(*) FILTER (WHERE sync_state = 'sync') FROM pg_stat_replication" postgres
}

# ---------------------------------------------------------------- set-up
# The configuration both cluster suites write (tests/cluster on loopback,
# tests/partition in network namespaces): one implementation, addresses and
# ports from cluster.env-style variables:
#   NODE_ADDR_I PG_PORT_I REST_PORT_I ETCD_PORT_I ETCD_PEER_PORT_I [NETNS_I]
#   ETCD_HOSTS (host:port,...)  GW_URL  CL_HBA_NET (client network, CIDR)
#   SU/REPL/REWIND_PASSWORD  PRIMARY_START_TIMEOUT  CL_WALDIR_I (optional:
#   pg_wal on its own filesystem)  CL_EXTRA_PG_PARAMS (YAML lines, 8 spaces)

# cl_start_etcd I: start etcd member eI (v2 API on: Patroni's `etcd:` DCS,
# see cl_write_patroni_yml) in node I's namespace; sets CL_STARTED_PID
cl_start_etcd()
{
	local i=$1 a cp pp ns="NETNS_$1" members="" j
	a=$(node_addr "$i"); cp="ETCD_PORT_$i"; pp="ETCD_PEER_PORT_$i"
	for j in 1 2 3; do
		local pj="ETCD_PEER_PORT_$j"
		members="${members:+$members,}e$j=http://$(node_addr "$j"):${!pj}"
	done
	CL_NETNS=${!ns:-} as_pg_exec /usr/bin/etcd --name "e$i" --data-dir "$CL_DIR/etcd$i" \
		--enable-v2=true \
		--listen-client-urls "http://$a:${!cp}" --advertise-client-urls "http://$a:${!cp}" \
		--listen-peer-urls "http://$a:${!pp}" --initial-advertise-peer-urls "http://$a:${!pp}" \
		--initial-cluster "$members" --initial-cluster-state new --initial-cluster-token ft \
		>>"$CL_DIR/log/etcd$i.log" 2>&1 </dev/null &
	CL_STARTED_PID=$!
}

# cl_etcd_healthy I: etcd member I answers (v2 API, the one Patroni uses)
cl_etcd_healthy()
{
	local cp="ETCD_PORT_$1"
	in_node "$1" curl -fs -m 1 "http://$(node_addr "$1"):${!cp}/v2/keys/" >/dev/null 2>&1 &&
		in_node "$1" curl -fs -m 1 "http://$(node_addr "$1"):${!cp}/health" 2>/dev/null | grep -q '"health":"true"'
}

# cl_write_patroni_yml I: DIR/nI.yml.  `etcd:` (v2 API), not `etcd3:`:
# Debian 12's Patroni 3.0.2 with etcd3 overwrites the leader key
# unconditionally when a leader's Patroni resumes after hanging past ttl,
# and lost 206-1784 acknowledged writes in that drill; etcd (v2) lost none
# (docs/failures.md, tests/partition freeze_patroni).
cl_write_patroni_yml()
{
	local i=$1 a pg rest wd hba=${CL_HBA_NET:-127.0.0.1/32}
	a=$(node_addr "$i"); pg="PG_PORT_$i"; rest="REST_PORT_$i"; wd="CL_WALDIR_$i"
	cat >"$CL_DIR/n$i.yml" <<YAML
scope: ft
namespace: /service/
name: n$i
restapi:
  listen: $a:${!rest}
  connect_address: $a:${!rest}
etcd:
  hosts: $ETCD_HOSTS
log:
  level: INFO
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    primary_start_timeout: ${PRIMARY_START_TIMEOUT:-0}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: ${CL_WAL_KEEP_SIZE:-128MB}
        # a synchronous standby that stops hearing the leader (or being
        # heard) is dropped after 5 s, so that Patroni picks the other
        # replica: with the 60 s defaults one-way loss between the leader
        # and its sync standby blocked every commit for the whole fault
        # (26.8 s for 20 s); with 5 s, 5.9-6.7 s (tests/partition)
        wal_sender_timeout: 5s
        wal_receiver_timeout: 5s
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
${CL_EXTRA_PG_PARAMS:-}
  initdb:
  - encoding: UTF8
  - data-checksums
  - auth-host: scram-sha-256
  - auth-local: trust
${!wd:+  - waldir: ${!wd}}
postgresql:
  listen: $a:${!pg}
  connect_address: $a:${!pg}
  data_dir: $CL_DIR/n$i
  bin_dir: ${CL_PATRONI_BIN_DIR:-$FT_PG_BIN}
  pgpass: $CL_DIR/pgpass-n$i
  basebackup:
  - checkpoint: fast
${!wd:+  - waldir: ${!wd}}
  authentication:
    superuser: {username: postgres, password: '$SU_PASSWORD'}
    replication: {username: replicator, password: '$REPL_PASSWORD'}
    rewind: {username: rewinder, password: '$REWIND_PASSWORD'}
  parameters:
    unix_socket_directories: '$CL_DIR/run'
  pg_hba:
  - local all all trust
  - host replication replicator $hba scram-sha-256
  - host all all $hba scram-sha-256
watchdog:
  mode: 'off'
YAML
	chmod 600 "$CL_DIR/n$i.yml"
	[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER:" "$CL_DIR/n$i.yml"
	cat >"$CL_DIR/patronictl.yml" <<YAML
scope: ft
namespace: /service/
etcd:
  hosts: $ETCD_HOSTS
YAML
	chmod 644 "$CL_DIR/patronictl.yml"
}

# cl_write_haproxy_cfg BIND_ADDR: DIR/haproxy.cfg, write port -> GET /primary,
# read port -> GET /replica, the three nodes at their addresses
cl_write_haproxy_cfg()
{
	local bind=$1 i pv rv section
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
CFG
		for section in "primary $HAPROXY_RW_PORT /primary" "replicas $HAPROXY_RO_PORT /replica"; do
			set -- $section
			echo "listen $1"
			echo "    bind $bind:$2"
			[ "$1" = replicas ] && echo "    balance roundrobin"
			echo "    option httpchk GET $3"
			echo "    http-check expect status 200"
			echo "    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions"
			for i in 1 2 3; do
				pv="PG_PORT_$i"; rv="REST_PORT_$i"
				echo "    server n$i $(node_addr "$i"):${!pv} check port ${!rv}"
			done
		done
	} >"$CL_DIR/haproxy.cfg"
	chmod 644 "$CL_DIR/haproxy.cfg"
}
