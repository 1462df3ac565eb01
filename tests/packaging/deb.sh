#!/usr/bin/env bash
# deb.sh [OUTDIR]: `make deb`.  Builds the Debian packages of ft_orders for
# this system's PostgreSQL majors (debian/pgversions: 15 and later; Debian
# 12 gives postgresql-15-ft-orders, Debian 13 postgresql-17-ft-orders) with
# pg_buildext and dpkg-buildpackage -us -uc -b, in a copy of the tree (the
# build writes its results next to the source folder), and collects the
# .deb, .buildinfo and .changes files in OUTDIR (default build/deb/CODENAME).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
out=${1:-$src/build/deb/$codename}

bash "$src/tests/setup/deps.sh" --deb

work=$(mktemp -d "${TMPDIR:-/tmp}/ft_deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/ft-orders"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$src" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$work/ft-orders" -xf -
else
	tar -C "$src" --exclude=./build --exclude=./.git --exclude=node_modules \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . | tar -C "$work/ft-orders" -xf -
fi
cd "$work/ft-orders"
# debian/control for the majors this system supports (from control.in)
pg_buildext updatecontrol
if ! dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1; then
	tail -40 "$work/build.log"
	echo "deb.sh: dpkg-buildpackage failed (log above)" >&2
	exit 1
fi
mkdir -p "$out"
rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes
cp "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out/"
for f in "$out"/*.deb; do
	echo "deb.sh: $f"
done
# what the packages install for PostgreSQL (the -dbgsym ones hold debug symbols)
for f in "$out"/postgresql-*-ft-orders_*.deb; do
	dpkg-deb -c "$f" | awk '$6 ~ /\.(so|sql|control)$/ {print "deb.sh:   " $6}'
done
