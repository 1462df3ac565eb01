#!/usr/bin/env bash
# run.sh [regress|tap]: PGXS's `make installcheck` on a copy of the tree.
#   regress (default)  pg_regress (sql/) and the isolation specs (specs/),
#                      each on a temp instance preloading ft_orders
#   tap                the TAP tests (t/*.pl, PostgreSQL::Test::Cluster),
#                      each starting its own servers and the fake gateway
#                      (tests/fake_gateway, built by tests/setup/build.sh)
# initdb refuses root: as root, run it as the postgres OS user in a copy of
# the tree that user owns.  PG_CONFIG picks the PostgreSQL installation.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
mode=${1:-regress}
work=$(mktemp -d "${TMPDIR:-/tmp}/ft_$mode.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$root/Makefile" "$root/ft_orders.control" "$root"/ft_orders--*.sql \
	"$root/extension" "$work/"
mkdir -p "$work/tests"
case $mode in
	regress)
		cp -r "$root/sql" "$root/specs" "$root/expected" "$work/"
		cp "$root/tests/regress.conf" "$root/tests/isolation.conf" "$work/tests/"
		# TAP_TESTS emptied: those run as their own suite (run.sh tap)
		args=(TAP_TESTS=) ;;
	tap)
		[ -x "$root/tests/fake_gateway/fake_gateway" ] ||
			{ echo "run.sh tap: tests/fake_gateway/fake_gateway is not built (tests/setup/build.sh)" >&2; exit 1; }
		cp -r "$root/t" "$work/"
		mkdir -p "$work/tests/fake_gateway" "$work/tests/lib"
		cp "$root/tests/fake_gateway/fake_gateway" "$work/tests/fake_gateway/"
		cp "$root/tests/lib/prom_check.py" "$work/tests/lib/"
		# only the TAP tests, every line of their output (run_all.sh counts them)
		args=(REGRESS= ISOLATION= PROVE_FLAGS=-v) ;;
	*)
		echo "run.sh: unknown mode $mode (regress or tap)" >&2; exit 2 ;;
esac
chmod 755 "$work"
if [ "$(id -u)" -eq 0 ]; then
	chown -R postgres: "$work"
	runuser -u postgres -- make -C "$work" -s PG_CONFIG="$PG_CONFIG" "${args[@]}" installcheck
else
	make -C "$work" -s PG_CONFIG="$PG_CONFIG" "${args[@]}" installcheck
fi
rc=$?
if [ "$mode" = tap ]; then
	# a failing test: its own log (every query and result) and the end of
	# each server's log, each line behind "# " (run_all.sh counts the
	# "ok N" lines of the output)
	if [ $rc -ne 0 ]; then
		for f in "$work"/tmp_check/log/regress_log_*; do
			[ -f "$f" ] && { echo "# === $f"; sed 's/^/# /' "$f"; }
		done
		for f in "$work"/tmp_check/log/*.log; do
			[ -f "$f" ] && { echo "# === $f (end)"; tail -n 40 "$f" | sed 's/^/# /'; }
		done
	fi
	[ -n "${FT_KEEP_TMP:-}" ] && cp -r "$work/tmp_check" "$root/tmp_check_tap" 2>/dev/null
	exit $rc
fi
for d in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
	[ $rc -ne 0 ] && [ -f "$d" ] || continue
	cat "$d"
	[ -n "${FT_KEEP_DIFFS:-}" ] && cat "$d" >>"$root/regression.diffs"
done
[ -n "${FT_ACCEPT:-}" ] && cp "$work"/results/*.out "$work"/output_iso/results/*.out "$root/expected/" 2>/dev/null
exit $rc
