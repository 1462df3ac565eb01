#!/usr/bin/env bash
# run.sh: pg_regress through `make installcheck` (temp instance preloading
# ft_orders).  pg_regress runs initdb, which refuses root: as root, run it
# as the postgres OS user in a copy of the tree that user owns.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
work=$(mktemp -d "${TMPDIR:-/tmp}/ft_regress.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$root/Makefile" "$root/ft_orders.control" "$root"/ft_orders--*.sql \
	"$root/sql" "$root/expected" "$root/extension" "$work/"
mkdir -p "$work/tests" && cp "$root/tests/regress.conf" "$work/tests/"
chmod 755 "$work"
if [ "$(id -u)" -eq 0 ]; then
	chown -R postgres: "$work"
	runuser -u postgres -- make -C "$work" -s PG_CONFIG="$PG_CONFIG" installcheck
else
	make -C "$work" -s PG_CONFIG="$PG_CONFIG" installcheck
fi
rc=$?
if [ $rc -ne 0 ] && [ -f "$work/regression.diffs" ]; then
	cat "$work/regression.diffs"
	[ -n "${FT_KEEP_DIFFS:-}" ] && cp "$work/regression.diffs" "$root/regression.diffs"
fi
[ -n "${FT_ACCEPT:-}" ] && cp "$work"/results/*.out "$root/expected/" 2>/dev/null
exit $rc
