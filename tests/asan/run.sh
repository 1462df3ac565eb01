#!/bin/bash
# run.sh: integration tests with ft_orders.so built under AddressSanitizer
# and UBSan (issue 6, "Memory": no invalid access in ft_orders code).
#
#   bash tests/asan/run.sh [test ...]      (default: a subset, see TESTS)
#
# Builds ft_orders.so with -fsanitize=address,undefined in a copy of the
# tree, installs it over the normal one, and runs the given integration
# tests with the server started under LD_PRELOAD=libasan.  The environment
# reaches only the server: common.sh takes its binaries from $FT_PG_BIN, so
# FT_PG_BIN points at a folder of symlinks whose pg_ctl is a wrapper that
# sets LD_PRELOAD/ASAN_OPTIONS/UBSAN_OPTIONS and records that the
# postmaster really mapped libasan and the sanitized ft_orders.so.  psql,
# the fake gateway and the python responders run as usual.  At exit (trap)
# the normal build is reinstalled with tests/setup/build.sh (or, if that
# fails, the .so that was installed before is put back).
#
# Not part of `make test`: it replaces the installed .so for its duration.
# Exit status 0 when no sanitizer report names ft_orders code.
#
# Fallback (FT_SANITIZER=valgrind, or automatically when a PostgreSQL
# binary hangs with libasan preloaded, as it does on Debian 12: glibc
# 2.36's locale rwlocks deadlock at start-up/exit under both gcc's and
# clang's ASan runtime): the normal installed build is kept and the server
# runs under valgrind memcheck (pg_ctl -p points at a valgrind wrapper,
# see valgrind.sh), same test list.  Reports whose stack names
# ft_orders.so are counted as ours.  Under valgrind the RssAnon checks of
# hostile_*.sh fail (valgrind's own memory is counted): expected.

set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
PG_BIN=$($PG_CONFIG --bindir)
LIBDIR=$($PG_CONFIG --pkglibdir)
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=(happy_path outcomes retries lost_replies hostile_replies hostile_network crash)
PG_USER=postgres
[ "$(id -u)" -eq 0 ] || PG_USER=$(id -un)

LIBASAN=$(gcc -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { echo "# no libasan.so from gcc" >&2; exit 2; }
MODE=${FT_SANITIZER:-}
if [ -z "$MODE" ]; then
	if (cd /tmp && LD_PRELOAD=$LIBASAN timeout 10 "$PG_BIN/postgres" -V >/dev/null 2>&1); then
		MODE=asan
	else
		echo "# postgres -V hangs or fails with libasan preloaded: falling back to valgrind"
		MODE=valgrind
	fi
fi
if [ "$MODE" = valgrind ]; then
	[ ${#TESTS[@]} -gt 0 ] || TESTS=(happy_path hostile_replies)
	exec bash "$(dirname "$0")/valgrind.sh" "${TESTS[@]}"
fi

OUT=$(mktemp -d "${TMPDIR:-/tmp}/ft_asan.XXXXXX")
chmod 755 "$OUT"
LOGS=$OUT/logs
mkdir -p "$LOGS" "$OUT/bin" "$OUT/src"
chmod 1777 "$LOGS"
INSTALLED=$LIBDIR/ft_orders.so
cp -p "$INSTALLED" "$OUT/ft_orders.so.orig"

restore()
{
	echo "# reinstalling the normal build (tests/setup/build.sh)"
	if ! (cd "$ROOT" && bash tests/setup/build.sh) >"$OUT/rebuild.log" 2>&1; then
		echo "# build.sh failed (see $OUT/rebuild.log); putting back the previous .so"
		install -m 755 "$OUT/ft_orders.so.orig" "$INSTALLED"
	fi
	if nm -D "$INSTALLED" 2>/dev/null | grep -q __asan; then
		echo "# WARNING: $INSTALLED is still the sanitized build"
	else
		echo "# $INSTALLED is a normal build again"
	fi
	echo "# sanitizer logs and test output kept in $OUT"
}

# 1. the sanitized build, in a copy of the tree
cd "$ROOT" || exit 2
cp -r Makefile extension bgworker ft_orders.control ft_orders--*.sql "$OUT/src/"
find "$OUT/src" \( -name '*.o' -o -name '*.bc' -o -name '*.so' \) -delete
if ! make -C "$OUT/src" -s -j2 all PG_CONFIG="$PG_CONFIG" with_llvm=no \
	PG_CFLAGS="-Wall -Werror -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	SHLIB_LINK="-lcurl -fsanitize=address,undefined" >"$OUT/build.log" 2>&1; then
	echo "Bail out! the sanitized build failed"
	sed 's/^/# /' "$OUT/build.log" | tail -30
	exit 2
fi
nm -D "$OUT/src/ft_orders.so" | grep -q __asan || { echo "Bail out! no ASan in the build"; exit 2; }
trap restore EXIT
install -m 755 "$OUT/src/ft_orders.so" "$INSTALLED"
ASAN_SUM=$(sha256sum <"$INSTALLED")

# 2. FT_PG_BIN: the real binaries, but pg_ctl sets the sanitizer environment
for f in "$PG_BIN"/*; do ln -s "$f" "$OUT/bin/$(basename "$f")"; done
rm "$OUT/bin/pg_ctl"
cat >"$OUT/bin/pg_ctl" <<WRAP
#!/bin/bash
export LD_PRELOAD=$LIBASAN
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:log_path=$LOGS/asan
export UBSAN_OPTIONS=print_stacktrace=1:log_path=$LOGS/ubsan
"$PG_BIN/pg_ctl" "\$@"
rc=\$?
data=""; prev=""; start=0
for a in "\$@"; do
	[ "\$prev" = -D ] && data=\$a
	[ "\$a" = start ] && start=1
	prev=\$a
done
if [ \$start = 1 ] && [ \$rc = 0 ] && [ -f "\$data/postmaster.pid" ]; then
	pm=\$(head -1 "\$data/postmaster.pid")
	echo "\$pm asan=\$(grep -c libasan /proc/\$pm/maps) ft_orders=\$(grep -c '$INSTALLED' /proc/\$pm/maps)" >>"$LOGS/started"
fi
exit \$rc
WRAP
chmod 755 "$OUT/bin" "$OUT/bin/pg_ctl"

# 3. the tests
fails=0
for t in "${TESTS[@]}"; do
	s=$(date +%s)
	FT_PG_BIN=$OUT/bin bash "$ROOT/tests/integration/$t.sh" >"$OUT/$t.tap" 2>&1
	rc=$?
	p=$(grep -cE '^ok [0-9]+' "$OUT/$t.tap")
	f=$(grep -cE '^not ok [0-9]+' "$OUT/$t.tap")
	[ "$rc" -ne 0 ] || [ "$f" -ne 0 ] && fails=$((fails + 1))
	echo "# $t: $p passed, $f failed, exit $rc, $(($(date +%s) - s)) s"
	grep -E '^(not ok|Bail out)' "$OUT/$t.tap" | sed 's/^/#   /'
	[ "$(sha256sum <"$INSTALLED")" = "$ASAN_SUM" ] ||
		echo "# WARNING: $INSTALLED was replaced during $t (someone ran make install?)"
done

# 4. did the servers run sanitized, and what did the sanitizers say?
n_started=$(wc -l <"$LOGS/started" 2>/dev/null || echo 0)
n_asan=$(grep -c 'asan=[1-9].* ft_orders=[1-9]' "$LOGS/started" 2>/dev/null || echo 0)
echo "# servers started: $n_started, with libasan and the sanitized .so mapped: $n_asan"

reports=$(grep -lE 'ERROR: AddressSanitizer|runtime error:' "$LOGS"/asan.* "$LOGS"/ubsan.* 2>/dev/null)
ours=0
for r in $reports; do
	echo "# report in $(basename "$r"):"
	grep -m1 -E 'ERROR: AddressSanitizer|runtime error:' "$r" | sed 's/^/#   /'
	grep -E '^ +#[0-9]+ ' "$r" | head -8 | sed 's/^/#   /'
	grep -qE 'ft_orders\.so|/(bgworker|extension)/' "$r" && ours=$((ours + 1))
done
echo "# sanitizer reports: $(echo "$reports" | grep -c .), naming ft_orders code: $ours"
if [ "$ours" -eq 0 ]; then
	echo "ok - no invalid access in ft_orders code ($fails test scripts with failures)"
	[ "$n_asan" -gt 0 ] && [ "$n_asan" -eq "$n_started" ] || { echo "# but not every server ran sanitized"; exit 1; }
	exit 0
fi
echo "not ok - sanitizer reports in ft_orders code"
exit 1
