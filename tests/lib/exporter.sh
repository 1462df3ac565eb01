# exporter.sh: Debian's prometheus-postgres-exporter with
# contrib/postgres_exporter/ft_orders_queries.yaml, for the tests that
# scrape it (tests/integration/exporter.sh, prometheus.sh).
#
#   source "$(dirname "$0")/../lib/common.sh"
#   source "$(dirname "$0")/../lib/exporter.sh"
#
# Gives exporter_pg_start, exporter_role (the login role docs/monitoring.md
# recommends) and exporter_start.  EXPORTER_BIN is FT_EXPORTER_BIN or the packaged binary
# (empty when there is none: the caller bails out).

EXPORTER_QUERIES=$FT_ROOT/contrib/postgres_exporter/ft_orders_queries.yaml
EXPORTER_BIN=${FT_EXPORTER_BIN:-$(command -v prometheus-postgres-exporter || true)}

# exporter_pg_start: the fake gateway and a server paying through it, as
# both exporter tests want it: quick retries, and a circuit that opens after
# 3 failures for 2 s (so that an outage shows in the scraped figures)
exporter_pg_start()
{
	gw_pg_start "ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
		"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '200ms'" \
		"ft_orders.max_attempts = 100" \
		"ft_orders.circuit_failure_threshold = 3" "ft_orders.circuit_open_time = '2s'"
}

# exporter_role: CREATE ROLE ft_exporter: login, no superuser, member of
# ft_orders_app and pg_monitor, read-only sessions
exporter_role()
{
	psql_q "CREATE ROLE ft_exporter LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE ft_orders_app, pg_monitor;
	        ALTER ROLE ft_exporter SET default_transaction_read_only = on" >/dev/null
}

# exporter_start ROLE LOGFILE [ARGS...]: start an exporter for database ftdb
# logged in as ROLE on a free loopback port; sets EXP_PID, EXP_PORT and
# EXP_URL, and returns once it serves /metrics
exporter_start()
{
	local role=$1 log=$2 port
	shift 2
	port=$(free_port) || return 1
	DATA_SOURCE_NAME="host=$FT_TMP/run port=$PGPORT user=$role dbname=ftdb sslmode=disable" \
		"$EXPORTER_BIN" --web.listen-address="127.0.0.1:$port" \
		--extend.query-path="$EXPORTER_QUERIES" --log.level=info "$@" >"$log" 2>&1 </dev/null &
	EXP_PID=$!
	FT_PIDS+=("$EXP_PID")
	EXP_PORT=$port
	EXP_URL="http://127.0.0.1:$port"
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null --max-time 20 "$EXP_URL/metrics" 2>/dev/null && return 0
		kill -0 "$EXP_PID" 2>/dev/null || break
		sleep 0.2
	done
	cat "$log" >&2
	return 1
}
