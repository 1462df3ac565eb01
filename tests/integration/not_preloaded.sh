#!/bin/bash
# not_preloaded.sh: ft_orders refuses to load unless it is in
# shared_preload_libraries, with an ERROR and a hint (as pg_cron and pg_net
# do), and the server keeps running.
#
# Starts a server WITHOUT shared_preload_libraries, then asserts that
# CREATE EXTENSION ft_orders and LOAD 'ft_orders' fail with SQLSTATE 55000,
# the message and the hint, that the session and the server survive, and
# that nothing of the extension was created.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

PGDATA=$FT_TMP/pgdata
PG_LOG=$FT_TMP/postgres.log
pg_init "$PGDATA" || bail_out "initdb failed"
PGPORT=$PG_INIT_PORT
as_pg pg_ctl -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null || bail_out "server did not start"
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres

out=$(psql -X -c "\\set VERBOSITY verbose" \
	-c "CREATE EXTENSION ft_orders" -c "SELECT 'session alive'" 2>&1)
like "$out" 'ERROR:  55000: ft_orders can only be loaded via shared_preload_libraries' \
	"CREATE EXTENSION without preload: ERROR 55000 with the message"
like "$out" 'HINT:  Add ft_orders to shared_preload_libraries in postgresql.conf and restart the server.' \
	"... and the hint"
like "$out" 'session alive' "... the session goes on (an ERROR, not a FATAL)"

out=$(psql -X -c "\\set VERBOSITY verbose" -c "LOAD 'ft_orders'" 2>&1)
like "$out" 'ERROR:  55000: ft_orders can only be loaded via shared_preload_libraries' \
	"LOAD 'ft_orders' without preload: the same ERROR"

is "$(psql -XAtq -c "SELECT count(*) FROM pg_extension WHERE extname = 'ft_orders'")" "0" \
	"no extension was created"
is "$(psql -XAtq -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'ft_orders'")" "0" \
	"no ft_orders schema was left behind"
is "$(psql -XAtq -c "SELECT count(*) FROM pg_settings WHERE name LIKE 'ft_orders.%'")" "0" \
	"no ft_orders setting was defined"
is "$(grep -c 'FATAL\|terminated by signal' "$PG_LOG")" "0" "no FATAL, no crash in the server log"

pg_stop
done_testing
