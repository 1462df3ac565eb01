#!/bin/bash
# valgrind.sh: integration tests with the server under valgrind memcheck
# (the fallback of run.sh when libasan cannot be preloaded into postgres).
#
#   bash tests/asan/valgrind.sh [test ...]   (default: happy_path hostile_replies)
#
# The installed (normal) ft_orders.so is used as it is.  common.sh takes its
# binaries from $FT_PG_BIN: here a folder of symlinks whose pg_ctl adds
# "-p postgres_vg", a script that execs valgrind on the real postgres
# (children forked by the postmaster stay under valgrind).  Reports whose
# stack names ft_orders.so are counted as ours; exit status 0 when none.

set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
PG_BIN=$($PG_CONFIG --bindir)
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=(happy_path hostile_replies)
command -v valgrind >/dev/null || { echo "1..0 # SKIP no valgrind"; exit 0; }

OUT=$(mktemp -d "${TMPDIR:-/tmp}/ft_valgrind.XXXXXX")
chmod 755 "$OUT"
LOGS=$OUT/logs
mkdir -p "$LOGS" "$OUT/bin"
chmod 1777 "$LOGS"
for f in "$PG_BIN"/*; do ln -s "$f" "$OUT/bin/$(basename "$f")"; done
rm "$OUT/bin/pg_ctl"
cat >"$OUT/bin/postgres_vg" <<WRAP
#!/bin/sh
exec valgrind -q --tool=memcheck --error-limit=no --num-callers=20 \\
	--log-file=$LOGS/vg.%p "$PG_BIN/postgres" "\$@"
WRAP
cat >"$OUT/bin/pg_ctl" <<WRAP
#!/bin/sh
for a in "\$@"; do
	case "\$a" in start|restart) exec "$PG_BIN/pg_ctl" -p "$OUT/bin/postgres_vg" "\$@" ;; esac
done
exec "$PG_BIN/pg_ctl" "\$@"
WRAP
chmod 755 "$OUT/bin" "$OUT/bin/pg_ctl" "$OUT/bin/postgres_vg"

fails=0
for t in "${TESTS[@]}"; do
	s=$(date +%s)
	FT_PG_BIN=$OUT/bin bash "$ROOT/tests/integration/$t.sh" >"$OUT/$t.tap" 2>&1
	rc=$?
	p=$(grep -cE '^ok [0-9]+' "$OUT/$t.tap")
	f=$(grep -cE '^not ok [0-9]+' "$OUT/$t.tap")
	{ [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; } && fails=$((fails + 1))
	echo "# $t (under valgrind): $p passed, $f failed, exit $rc, $(($(date +%s) - s)) s"
	grep -E '^(not ok|Bail out)' "$OUT/$t.tap" | sed 's/^/#   /'
done

nlogs=$(ls "$LOGS"/vg.* 2>/dev/null | wc -l)
ours=0 total=0
for r in "$LOGS"/vg.*; do
	[ -s "$r" ] || continue
	# one valgrind error = a block starting "==PID== <text>" after a blank "==PID== "
	n=$(grep -cE '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Argument)' "$r")
	total=$((total + n))
	if grep -q 'ft_orders.so' "$r"; then
		ours=$((ours + 1))
		echo "# report naming ft_orders.so in $(basename "$r"):"
		grep -B2 -A10 -m3 'ft_orders.so' "$r" | sed 's/^/#   /' | head -40
	fi
done
echo "# valgrind: $nlogs processes logged, $total error reports, logs naming ft_orders.so: $ours"
echo "# logs kept in $OUT"
if [ "$ours" -eq 0 ]; then
	echo "ok - no invalid access in ft_orders code under valgrind ($fails test scripts with failures)"
	exit 0
fi
echo "not ok - valgrind reports in ft_orders code"
exit 1
