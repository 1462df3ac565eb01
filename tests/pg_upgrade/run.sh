#!/usr/bin/env bash
# run.sh: `make test-pg-upgrade`.  pg_upgrade of a working ft_orders
# cluster from PostgreSQL 15 to 17 (upgrade.sh) in a throwaway Debian 13
# system that holds both majors (root only; tests/lib/chroot.sh):
#   1. the trixie base system, debootstrapped once and cached in
#      /var/tmp/ft_orders-trixie/base (shared with make test-pg17);
#   2. the layer setup.sh makes: Debian 13's PostgreSQL 17, Debian 12's
#      PostgreSQL 15 unpacked under /opt/pg15; remade when setup.sh changes;
#   3. a fresh overlay of both per run, this working tree copied into
#      /work/p, ft_orders built and installed for 15 and for 17, the fake
#      gateway built, and upgrade.sh run there.
# Prints upgrade.sh's TAP, then "N passed, N failed"; exit status 1 on any
# failure.
#   FT_KEEP_TMP=1   keep the run's system (its /tmp has the logs)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
. "$src/tests/lib/chroot.sh"

fail() { echo "# test-pg-upgrade: $*"; echo "0 passed, 1 failed"; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mounts)"

suite=trixie
t0=$(date +%s)
trap 'ftc_cleanup' EXIT
trap 'exit 130' INT TERM

key=$(sha256sum "$here/setup.sh" | cut -c1-12)
FTC_LAYER_TREE=$src ftc_layer "$suite" pgupgrade "$key" "cd /work/p && bash tests/pg_upgrade/setup.sh" ||
	fail "could not make the system (tests/pg_upgrade/setup.sh)"
root=$(mktemp -d "$FTC_CACHE/ft_orders-$suite/run.XXXXXX")
ftc_up "$suite" "$root" pgupgrade || fail "could not mount the system"
ftc_copy_tree "$src" "$root/work/p"
t1=$(date +%s)
echo "# test-pg-upgrade: Debian $(cat "$root/etc/debian_version") system ready in $((t1 - t0)) s at $root"

# ft_orders for 15, then for 17, then the fake gateway (make clean also
# cleans it).  No JIT bitcode: the test runs with jit = off, and Debian
# 12's PGXS would want its clang-14 for it.
old_pg_config=/opt/pg15/usr/lib/postgresql/15/bin/pg_config
ftc_run "$root" "cd /work/p && export LD_LIBRARY_PATH=/opt/pg15/usr/lib/x86_64-linux-gnu &&
	make -s -j2 WERROR=1 with_llvm=no PG_CONFIG=$old_pg_config install >/dev/null &&
	make -s PG_CONFIG=$old_pg_config clean >/dev/null &&
	make -s -j2 WERROR=1 with_llvm=no PG_CONFIG=/usr/lib/postgresql/17/bin/pg_config install >/dev/null &&
	make -s -C tests/fake_gateway >/dev/null" || fail "build failed"
t2=$(date +%s)
echo "# test-pg-upgrade: ft_orders built for 15 and 17 in $((t2 - t1)) s"

log=$root/tmp/pg_upgrade.tap
ftc_run "$root" "cd /work/p && ${FT_KEEP_TMP:+FT_KEEP_TMP=1} timeout 600 bash tests/pg_upgrade/upgrade.sh" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
t3=$(date +%s)
p=$(grep -cE '^ok [0-9]+' "$log")
f=$(grep -cE '^not ok [0-9]+' "$log")
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
[ "$rc" -eq 124 ] && echo "# test-pg-upgrade: upgrade.sh did not finish within 600 s"
echo "# test-pg-upgrade: set-up $((t1 - t0)) s, build $((t2 - t1)) s, scenario $((t3 - t2)) s, total $((t3 - t0)) s"
echo "$p passed, $f failed"
[ "$f" -eq 0 ] && [ "$p" -gt 0 ]
