# lib.sh: helpers shared by the cluster scripts (up.sh, down.sh, drill.sh,
# run.sh).  Sourced, never run.  Unlike tests/lib/common.sh it installs no
# EXIT trap and makes no temp folder: the cluster outlives up.sh.

CL_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FT_ROOT=$(cd "$CL_HERE/../.." && pwd)
FT_PG_BIN=${FT_PG_BIN:-/usr/lib/postgresql/15/bin}
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
as_pg_exec()
{
	if [ "$(id -u)" -eq 0 ]; then
		exec setsid setpriv --reuid="$FT_PG_USER" --regid="$(id -g "$FT_PG_USER")" --init-groups -- "$@"
	else
		exec setsid "$@"
	fi
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

# rest_get I PATH: HTTP status of Patroni's REST endpoint on node I (000 if down)
rest_status()
{
	local i=$1 path=$2 port_var="REST_PORT_$1"
	curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:${!port_var}$path" 2>/dev/null || true
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
start_patroni()
{
	local i=$1
	as_pg_exec "$CL_PYTHON" /usr/bin/patroni "$CL_DIR/n$i.yml" >>"$CL_DIR/log/patroni-n$i.log" 2>&1 </dev/null &
	CL_STARTED_PID=$!
}

# cluster health on the leader: "<streaming replicas> <sync replicas>"
replication_state()
{
	node_q "$1" "SELECT count(*) FILTER (WHERE state = 'streaming') || ' ' || count(*) FILTER (WHERE sync_state = 'sync') FROM pg_stat_replication" postgres
}
