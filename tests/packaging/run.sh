#!/usr/bin/env bash
# run.sh [SUITE...]: `make test-packages` (root).  For each Debian release
# (default: bookworm, whose PostgreSQL is 15, and trixie, 17), in chroots
# made by tests/lib/chroot.sh:
#   1. build: a system with deps.sh's packages runs `make deb`
#      (tests/packaging/deb.sh) and builds the fake gateway;
#   2. install on a clean system (the debootstrapped base only): apt-get
#      installs the built postgresql-MAJOR-ft-orders .deb, which pulls
#      PostgreSQL from Debian's archive;
#   3. tests/integration/happy_path.sh there: a server preloading the
#      packaged library, CREATE EXTENSION, orders placed and paid through
#      the fake gateway;
#   4. installcheck (debian/tests/installcheck, the autopkgtest) against the
#      installed files, after adding make and the server headers (PGXS).
# TAP (one ok per step); the inner scripts' output is shown as "# " lines.
# Ends with "N passed, N failed"; the .debs stay in build/deb/CODENAME.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
. "$src/tests/lib/chroot.sh"
. "$src/tests/lib/tap.sh"

[ "$(id -u)" -eq 0 ] || { echo "test-packages: needs root (debootstrap, chroot, mounts)"; echo "0 passed, 1 failed"; exit 1; }

trap 'ftc_cleanup' EXIT
trap 'exit 130' INT TERM
t_begin=$(date +%s)

# indent: the inner script's lines as TAP comments
indent() { sed 's/^/#   /'; }

# check RC DESC: ok RC DESC, and RC as the status (ok's own is always 0)
check() { ok "$@"; return "$1"; }

# one_release SUITE MAJOR: steps 1-4 for one Debian release
one_release()
{
	local suite=$1 major=$2 pkg=postgresql-$2-ft-orders bld cln out gw_bin runtime rc
	local log=$FTC_CACHE/ft_orders-$1/steps.log

	# 1. build
	ftc_deps_layer "$suite" "$src"
	check $? "$suite: a system with the packages of deps.sh" || return
	bld=$(mktemp -d "$FTC_CACHE/ft_orders-$suite/build.XXXXXX")
	ftc_up "$suite" "$bld" deps && ftc_copy_tree "$src" "$bld/work/p"
	ftc_run "$bld" 'cd /work/p && bash tests/packaging/deb.sh /work/out &&
		make -s -C tests/fake_gateway >/dev/null &&
		for f in $(ldd tests/fake_gateway/fake_gateway | awk "/=>/ {print \$3}"); do
			dpkg -S "$f" 2>/dev/null || dpkg -S "/usr$f" 2>/dev/null || dpkg -S "$(realpath "$f")" 2>/dev/null
		done | cut -d: -f1 | sort -u >/work/out/gateway-runtime.txt' 2>&1 | indent
	ls "$bld/work/out/${pkg}_"*.deb >/dev/null 2>&1 && [ -x "$bld/work/p/tests/fake_gateway/fake_gateway" ]
	check $? "$suite: make deb built $pkg (and the fake gateway was built)" || return
	out=$src/build/deb/$suite
	mkdir -p "$out"
	rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes
	cp "$bld"/work/out/*.deb "$bld"/work/out/*.buildinfo "$bld"/work/out/*.changes "$out/"
	gw_bin=$(mktemp -d /tmp/ft_pkg_gw.XXXXXX)
	cp "$bld/work/p/tests/fake_gateway/fake_gateway" "$bld/work/out/gateway-runtime.txt" "$gw_bin/"
	ftc_cleanup

	# 2. a clean system: the base only, then the package from apt
	cln=$(mktemp -d "$FTC_CACHE/ft_orders-$suite/clean.XXXXXX")
	ftc_up "$suite" "$cln" && ftc_copy_tree "$src" "$cln/work/p"
	mkdir -p "$cln/work/debs"
	cp "$out"/*.deb "$cln/work/debs/"
	cp "$gw_bin"/fake_gateway "$cln/work/p/tests/fake_gateway/"
	runtime=$(grep -v '^libc6$' "$gw_bin/gateway-runtime.txt" | tr '\n' ' ')
	rm -rf "$gw_bin"
	ftc_run "$cln" "! dpkg-query -W -f='\${Status}' 'postgresql-$major' 2>/dev/null | grep -q 'install ok installed'"
	ok $? "$suite: the clean system has no PostgreSQL before the package"
	ftc_run "$cln" "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /work/debs/${pkg}_*.deb curl jq procps $runtime >/dev/null" 2>&1 | indent
	ftc_run "$cln" "dpkg-query -W -f='\${Status}' $pkg | grep -q 'install ok installed' &&
		dpkg-query -W -f='\${Status}' postgresql-$major | grep -q 'install ok installed' &&
		test -f /usr/lib/postgresql/$major/lib/ft_orders.so &&
		test -f /usr/share/postgresql/$major/extension/ft_orders.control"
	check $? "$suite: apt-get installed $pkg and postgresql-$major; ft_orders.so and ft_orders.control in place" || return

	# 3. preload, CREATE EXTENSION, orders placed and paid (fake gateway)
	ftc_run "$cln" "cd /work/p && FT_PG_MAJOR=$major bash tests/integration/happy_path.sh" >"$log" 2>&1
	rc=$?
	indent <"$log"
	[ $rc -eq 0 ] && ! grep -q '^not ok' "$log" && grep -q '^ok .* all [0-9]* orders are paid' "$log"
	ok $? "$suite: the packaged library preloaded, CREATE EXTENSION, orders placed and paid (happy_path.sh)"

	# 4. installcheck against the installed files
	ftc_run "$cln" "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make postgresql-server-dev-$major >/dev/null &&
		cd /work/p && bash debian/tests/installcheck &&
		dpkg --verify $pkg && echo 'dpkg --verify $pkg: the package'\\''s files are unchanged'" >"$log" 2>&1
	rc=$?
	indent <"$log"
	[ $rc -eq 0 ] && grep -q "### PostgreSQL $major installcheck" "$log" &&
		grep -qE 'All [0-9]+ tests passed' "$log" && grep -q 'files are unchanged' "$log"
	ok $? "$suite: installcheck (debian/tests/installcheck) passes against the installed package, whose files dpkg --verify finds unchanged"
	rm -f "$log"
}

for suite in ${*:-bookworm trixie}; do
	t0=$(date +%s)
	case $suite in
		bookworm) one_release bookworm 15 ;;
		trixie) one_release trixie 17 ;;
		*) ok 1 "$suite: a release this script knows (bookworm, trixie)" ;;
	esac
	ftc_cleanup
	diag "$suite: $(($(date +%s) - t0)) s"
done

diag "test-packages: $(($(date +%s) - t_begin)) s"
echo "1..$TAP_N"
echo "$((TAP_N - TAP_FAILED)) passed, $TAP_FAILED failed"
[ "$TAP_FAILED" -eq 0 ] && [ "$TAP_N" -gt 0 ]
