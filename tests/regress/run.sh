#!/usr/bin/env bash
# run.sh: pg_regress (sql/) and the isolation specs (specs/) through
# `make installcheck`, each on a temp instance preloading ft_orders.
# pg_regress runs initdb, which refuses root: as root, run it as the
# postgres OS user in a copy of the tree that user owns.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
work=$(mktemp -d "${TMPDIR:-/tmp}/ft_regress.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$root/Makefile" "$root/ft_orders.control" "$root"/ft_orders--*.sql \
	"$root/sql" "$root/specs" "$root/expected" "$root/extension" "$work/"
mkdir -p "$work/tests" && cp "$root/tests/regress.conf" "$root/tests/isolation.conf" "$work/tests/"
chmod 755 "$work"
if [ "$(id -u)" -eq 0 ]; then
	chown -R postgres: "$work"
	runuser -u postgres -- make -C "$work" -s PG_CONFIG="$PG_CONFIG" installcheck
else
	make -C "$work" -s PG_CONFIG="$PG_CONFIG" installcheck
fi
rc=$?
for d in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
	[ $rc -ne 0 ] && [ -f "$d" ] || continue
	cat "$d"
	[ -n "${FT_KEEP_DIFFS:-}" ] && cat "$d" >>"$root/regression.diffs"
done
[ -n "${FT_ACCEPT:-}" ] && cp "$work"/results/*.out "$work"/output_iso/results/*.out "$root/expected/" 2>/dev/null
exit $rc
