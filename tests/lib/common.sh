# common.sh: shared set-up for ft_orders' shell test suites.
#
#   source "$(dirname "$0")/../lib/common.sh"
#
# Gives: a private temp folder ($FT_TMP) readable by the PostgreSQL OS user,
# pg_start/pg_stop/pg_reload/pg_restart_immediate for a throwaway server with
# ft_orders preloaded, psql_q for one-value queries, place_orders for a batch of orders, gw_start/gw_pg_start/gw_stop/gw_faults
# /gw_ledger for the fake gateway, circuit_reopened_after for the circuit, port_from_file for servers that write
# their port to a file, wait_until for polling, and an EXIT trap
# that stops exactly the processes this script started (by pid).

set -u

FT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$FT_ROOT/tests/lib/pg_major.sh"
FT_PG_BIN=${FT_PG_BIN:-/usr/lib/postgresql/$FT_PG_MAJOR/bin}
FT_GATEWAY_BIN=${FT_GATEWAY_BIN:-$FT_ROOT/tests/fake_gateway/fake_gateway}
export PATH="$FT_PG_BIN:$PATH"

# PostgreSQL refuses to run as root: use the postgres OS user then.
if [ "$(id -u)" -eq 0 ]; then
	FT_PG_USER=${FT_PG_USER:-postgres}
else
	FT_PG_USER=$(id -un)
fi

FT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ft_orders.XXXXXX")
chmod 755 "$FT_TMP"
[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER" "$FT_TMP"

FT_PIDS=()			# processes to stop at exit, by pid
PGDATA=""
PG_LOG=""
GW_PID=""
GW_PORT=""
GW_URL=""

# run a command as the PostgreSQL OS user (setpriv execs: for a daemon run
# with "as_pg cmd &", $! is still a subshell; use "exec setpriv" there)
as_pg()
{
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid="$FT_PG_USER" --regid="$(id -g "$FT_PG_USER")" --init-groups -- "$@"
	else
		"$@"
	fi
}

# a TCP port on 127.0.0.1 that nothing listens on right now, below Linux's
# ephemeral range (32768-60999) so that no outgoing connection takes it
free_port()
{
	local p
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % 22000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

ft_cleanup()
{
	local pid
	if [ -n "$PGDATA" ] && [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg pg_ctl -D "$PGDATA" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
	fi
	for pid in "${FT_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${FT_PIDS[@]}"; do
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	done
	if [ -n "${FT_KEEP_TMP:-}" ]; then
		echo "# kept $FT_TMP" >&2
	else
		rm -rf "$FT_TMP"
	fi
}
trap ft_cleanup EXIT

# pg_init DATADIR [postgresql.conf lines...]: initdb DATADIR for a server on
# 127.0.0.1 and a free port (returned in PG_INIT_PORT), its socket in
# FT_TMP/run, fsync off, the given lines appended
pg_init()
{
	local data=$1 line
	shift
	mkdir -p "$FT_TMP/run"
	[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER" "$FT_TMP/run"
	as_pg initdb -D "$data" -U postgres -A trust -E UTF8 --no-sync >"$data.initdb.log" 2>&1 ||
		{ cat "$data.initdb.log" >&2; return 1; }
	PG_INIT_PORT=$(free_port)
	{
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $PG_INIT_PORT"
		echo "unix_socket_directories = '$FT_TMP/run'"
		echo "fsync = off"
		echo "log_line_prefix = '%m [%p] %b '"
		for line in "$@"; do echo "$line"; done
	} >>"$data/postgresql.conf"
}

# pg_start [postgresql.conf lines...]
# initdb + start a server on a free port with ft_orders preloaded, create
# database ftdb with the extension.  Sets PGHOST PGPORT PGDATABASE PGUSER.
pg_start()
{
	PGDATA=$FT_TMP/pgdata
	PG_LOG=$FT_TMP/postgres.log
	pg_init "$PGDATA" "shared_preload_libraries = 'ft_orders'" "ft_orders.database = 'ftdb'" \
		"max_connections = 120" "$@" || return 1
	PGPORT=$PG_INIT_PORT
	ulimit -n 65536 2>/dev/null || true
	as_pg pg_ctl -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null ||
		{ tail -n 30 "$PG_LOG" >&2; return 1; }
	export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=ftdb
	psql -XAtq -d postgres -c "CREATE DATABASE ftdb" >/dev/null || return 1
	psql -XAtq -c "CREATE EXTENSION ft_orders" >/dev/null || return 1
}

# latin1_db NAME: create database NAME in LATIN1 (C locale) with the
# extension, on the server of pg_start (list it in ft_orders.database)
latin1_db()
{
	psql -XAtq -d postgres -c "CREATE DATABASE $1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null &&
		psql -XAtq -d "$1" -c "CREATE EXTENSION ft_orders" >/dev/null
}

pg_stop()
{
	as_pg pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
}

pg_start_again()
{
	as_pg pg_ctl -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null
}

pg_reload()
{
	as_pg pg_ctl -D "$PGDATA" reload >/dev/null
}

# pg_set NAME VALUE: ALTER SYSTEM + reload (for sighup settings)
pg_set()
{
	psql -XAtq -c "ALTER SYSTEM SET $1 = '$2'" >/dev/null && pg_reload
}

pg_restart_immediate()
{
	as_pg pg_ctl -D "$PGDATA" -m immediate -w -t 60 stop >/dev/null
	pg_start_again
}

# psql_q SQL: print the result unaligned, tuples only; fails on error
psql_q()
{
	psql -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

# wait_until SQL SECONDS: poll until SQL returns 't'; fail after SECONDS
wait_until()
{
	local sql=$1 limit=${2:-30} deadline
	deadline=$(($(date +%s) + limit))
	while [ "$(date +%s)" -le "$deadline" ]; do
		[ "$(psql -XAtq -c "$sql" 2>/dev/null)" = "t" ] && return 0
		sleep 0.2
	done
	return 1
}

# port_from_file FILE LOG: wait (10 s at most) for a server started in the
# background to write its port to FILE and print it; if it does not, print
# its LOG to stderr and return 1
port_from_file()
{
	local file=$1 log=$2
	for _ in $(seq 1 200); do
		[ -s "$file" ] && { cat "$file"; return 0; }
		sleep 0.05
	done
	cat "$log" >&2
	return 1
}

# place_orders PREFIX N [AMOUNT]: place N orders at once, keys PREFIX-1 ..
# PREFIX-N, customer cust, AMOUNT+1 .. AMOUNT+N minor units (AMOUNT 100
# unless given) in EUR
place_orders()
{
	psql_q "SELECT count(*) FROM generate_series(1, $2) g,
	        LATERAL ft_orders.place_order('$1-' || g, 'cust', ${3:-100} + g, 'EUR')" >/dev/null
}

# open_session FD NAME SQL: a psql session reading from a fifo on file
# descriptor FD (7 or 8), which starts with SQL and stays open until FD is
# closed (echo "COMMIT;" >&FD first to end its transaction); a background
# subshell started afterwards must close FD itself (exec 7>&-), or the
# session outlives the close
open_session()
{
	mkfifo "$FT_TMP/$2.fifo"
	psql -XAtq <"$FT_TMP/$2.fifo" >"$FT_TMP/$2.out" 2>&1 &
	FT_PIDS+=($!)
	eval "exec $1>\"\$FT_TMP/$2.fifo\""
	echo "$3" >&"$1"
}

# claim_buffers FROM -> shared buffers the workers' claim step reads when it
# starts at FROM (a timestamptz literal: ft_orders._claim_floor() is
# volatile, so in the WHERE clause it would not bound the index scan),
# planned as the workers plan it, rolled back
claim_buffers()
{
	printf '%s\n' "BEGIN;" \
		"SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;" \
		"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT event_id FROM ft_orders.outbox
		  WHERE next_attempt_at >= '$1' AND next_attempt_at <= now()
		  ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED;" "ROLLBACK;" |
		psql -XAtq -v ON_ERROR_STOP=1 | python3 -c '
import json, sys
p = json.loads(sys.stdin.read())[0]["Plan"]
print(p["Shared Hit Blocks"] + p["Shared Read Blocks"])'
}

# gw_start [fake_gateway args...]: start the fake gateway on a free port
gw_start()
{
	local portfile=$FT_TMP/gateway.port
	rm -f "$portfile"
	"$FT_GATEWAY_BIN" --listen 127.0.0.1 --port 0 --port-file "$portfile" "$@" \
		>"$FT_TMP/gateway.log" 2>&1 &
	GW_PID=$!
	FT_PIDS+=("$GW_PID")
	GW_PORT=$(port_from_file "$portfile" "$FT_TMP/gateway.log") || return 1
	GW_URL="http://127.0.0.1:$GW_PORT"
}

# gw_pg_start [SETTING...]: the fake gateway, then the server with
# ft_orders.gateway_url pointing at it and the SETTINGs (as for pg_start);
# returns 1, saying which on stderr, if either did not start
gw_pg_start()
{
	gw_start || { echo "fake gateway did not start" >&2; return 1; }
	pg_start "ft_orders.gateway_url = '$GW_URL'" "$@" ||
		{ echo "server did not start" >&2; return 1; }
}

gw_stop()
{
	[ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null
	wait "$GW_PID" 2>/dev/null || true
	GW_PID=""
}

# gw_faults JSON: set faults ('' or 'reset' clears them)
gw_faults()
{
	if [ -z "${1:-}" ] || [ "$1" = reset ]; then
		curl -fsS -X DELETE "$GW_URL/faults" >/dev/null
	else
		curl -fsS -X POST -H 'Content-Type: application/json' -d "$1" "$GW_URL/faults" >/dev/null
	fi
}

# gw_ledger FIELD: one number from GET /ledger
gw_ledger()
{
	curl -fsS "$GW_URL/ledger" | jq -r ".$1"
}

# circuit_reopened_after T: when the circuit opened again first after T
# (server log, waited for up to 5 s): gateway_status holds the latest
# opening only, and a script on a loaded machine may look after a further
# round of probes
circuit_reopened_after()
{
	local vals t
	for _ in $(seq 1 50); do
		vals=$(grep 'circuit opened again' "$PG_LOG" | cut -d' ' -f1-3 | sed "s/.*/('&'::timestamptz)/" | paste -sd,)
		if [ -n "$vals" ]; then
			t=$(psql_q "SELECT min(t) FROM (VALUES $vals) v(t) WHERE t > '$1'::timestamptz")
			[ -n "$t" ] && { echo "$t"; return 0; }
		fi
		sleep 0.1
	done
	return 1
}
