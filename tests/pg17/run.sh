#!/usr/bin/env bash
# run.sh: `make test-pg17`.  Every suite of `make test` against PostgreSQL
# 17 on Debian 13 (trixie), with Debian 13's own Patroni 4.0 and etcd 3.5,
# in a throwaway chroot (root only; tests/lib/chroot.sh):
#   1. the trixie base system, debootstrapped once and cached in
#      /var/tmp/ft_orders-trixie/base;
#   2. the packages tests/setup/deps.sh installs there, cached as a layer
#      that is remade when deps.sh changes;
#   3. a fresh overlay of both per run, this working tree copied into
#      /work/p, and tests/run_all.sh run there as on a new machine.
# Ends with run_all.sh's "N passed, N failed" line and its exit status.
#   FT_SUITES="..."   a subset (default: every suite of make test, as run_all.sh)
#   FT_KEEP_TMP=1     keep the run's system (its /tmp has the logs)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
. "$src/tests/lib/chroot.sh"

[ "$(id -u)" -eq 0 ] ||
	{ echo "test-pg17: needs root (debootstrap, chroot, mounts)"; echo "0 passed, 1 failed"; exit 1; }

suite=trixie
major=17
t0=$(date +%s)
trap 'ftc_cleanup' EXIT
trap 'exit 130' INT TERM

ftc_deps_layer "$suite" "$src" || { echo "0 passed, 1 failed"; exit 1; }

root=$(mktemp -d "$FTC_CACHE/ft_orders-$suite/run.XXXXXX")
ftc_up "$suite" "$root" deps || { echo "0 passed, 1 failed"; exit 1; }
ftc_copy_tree "$src" "$root/work/p"
t1=$(date +%s)
echo "# test-pg17: Debian $(cat "$root/etc/debian_version") system ready in $((t1 - t0)) s at $root"
ftc_run "$root" "cd /work/p && CI=true FT_PG_MAJOR=$major ${FT_SUITES:+FT_SUITES='$FT_SUITES'} bash tests/run_all.sh"
rc=$?
t2=$(date +%s)
echo "# test-pg17: set-up $((t1 - t0)) s, suites $((t2 - t1)) s, total $((t2 - t0)) s"
exit $rc
