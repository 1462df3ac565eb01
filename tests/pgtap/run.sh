#!/usr/bin/env bash
# run.sh: the pgTAP suite of ft_orders (SQLSTATEs, privileges, invariants).
#
#   bash tests/pgtap/run.sh [test files...]     (default: tests/pgtap/*.sql)
#
# Starts a throwaway server (no payment workers, so nothing changes an
# order behind the tests' back), installs pgtap and dblink in ftdb, creates
# the application login role app_user (member of ft_orders_app), loads the
# shared helpers (helpers.sql, schema ft_test) and runs pg_prove.  Exits
# with pg_prove's status; the EXIT trap of common.sh stops
# the server and removes its folder.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$HERE/../lib/common.sh"

command -v pg_prove >/dev/null ||
	{ echo "Bail out! pg_prove not found (apt-get install libtap-parser-sourcehandler-pgtap-perl)"; exit 2; }

pg_start "ft_orders.workers = 0" ||
	{ echo "Bail out! could not start PostgreSQL"; exit 2; }

psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null ||
CREATE EXTENSION pgtap;
CREATE EXTENSION dblink;
CREATE ROLE app_user LOGIN;
GRANT ft_orders_app TO app_user;
SQL
	{ echo "Bail out! could not prepare database ftdb"; exit 2; }
psql -XAtq -v ON_ERROR_STOP=1 -f "$HERE/helpers.sql" >/dev/null ||
	{ echo "Bail out! could not load tests/pgtap/helpers.sql"; exit 2; }

if [ $# -gt 0 ]; then
	files=()
	for f in "$@"; do
		files+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
	done
else
	files=("$HERE"/[0-9]*.sql)
fi

# -v: one "ok N" / "not ok N" line per test (tests/run_all.sh counts them),
# then pg_prove's "Files=... Tests=..." and "Result: PASS|FAIL" lines.
pg_prove -v --psql-bin "$FT_PG_BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d ftdb \
	"${files[@]}"
rc=$?

# A backend crash restarts the whole server: say so plainly, with the query.
if [ -f "$PG_LOG" ] && grep -q 'terminated by signal' "$PG_LOG"; then
	echo "# SERVER CRASH during the suite (postmaster log):"
	grep -A1 'terminated by signal' "$PG_LOG" | sed 's/^/#   /'
	[ "$rc" -eq 0 ] && rc=1
elif [ "$rc" -ne 0 ] && [ -f "$PG_LOG" ]; then
	echo "# last ERROR lines of the server log:"
	grep -E 'ERROR|FATAL|PANIC' "$PG_LOG" | grep -v 'ft_orders launcher' | tail -n 10 | sed 's/^/#   /'
fi
exit "$rc"
