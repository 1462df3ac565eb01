#!/usr/bin/env bash
# deps.sh [--demo] [--deb] [--bench] [--fuzz]: install the Debian packages
# ft_orders needs, only those missing.  Works as root (apt-get) or as a user
# with sudo; otherwise it names what to install and fails.
#
#   (no option)  make test and friends: the build, the fake gateway and the
#                whole test stack (pgTAP, Patroni, etcd, HAProxy, Prometheus,
#                postgres_exporter, nftables, Node.js and the npm packages)
#   --demo       make demo: the build, the fake gateway and the Node.js
#                example service (node, npm and its npm packages) only
#   --deb        make deb: Debian's packaging tools only
#   --bench, --fuzz  what make bench / make fuzz add to the test stack
#
# No service of a package it installs is left enabled or running: the
# tests and the demo start their own servers on loopback.
# PostgreSQL's major is FT_PG_MAJOR (tests/lib/pg_major.sh: Debian 12's 15,
# Debian 13's 17).
set -euo pipefail
. "$(dirname "$0")/../lib/pg_major.sh"
v=$FT_PG_MAJOR

# building ft_orders and running it against the fake gateway (make demo;
# node and npm for its example service below)
build_pkgs=(
	make gcc pkg-config ca-certificates curl jq procps util-linux
	"postgresql-$v" "postgresql-server-dev-$v"
	libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev uthash-dev
	libssl-dev	# tests/fake_gateway: HMAC-SHA256 of the webhook signatures
)
# the test suites (make test, test-pg17, test-packages, bench, partition)
test_pkgs=(
	bc perl openssl iproute2
	libipc-run-perl	# PostgreSQL::Test::Cluster (the TAP tests in t/)
	"postgresql-$v-pgtap" libtap-parser-sourcehandler-pgtap-perl
	patroni etcd-server etcd-client haproxy python3 python3-psycopg2
	python3-etcd	# Patroni's etcd DCS: Debian 13's patroni would pick python3-consul
	nftables faketime e2fsprogs	# tests/partition: namespaces' firewalls, clock skew, mkfs.ext4
	prometheus-postgres-exporter	# tests/integration/exporter.sh
	python3-prometheus-client	# tests/lib/prom_check.py parses ft_orders.metrics()
	prometheus python3-yaml		# contrib/prometheus: promtool, tests/integration/prometheus.sh
	python3-jsonschema		# tests/monitoring/dashboard.sh (contrib/grafana), tests/packaging/meta.sh (META.json)
	chromium	# tests/integration/browser.sh: the Node example's pages in a real browser
)
# the services those packages enable at installation: the tests run their
# own, on loopback
test_services=(etcd haproxy patroni prometheus prometheus-postgres-exporter nftables)

profile=test
extra=()
for arg in "$@"; do
	case "$arg" in
		--demo) profile=demo ;;
		# make deb (tests/packaging/deb.sh): Debian's PostgreSQL extension tooling
		--deb) profile=deb ;;
		--bench) extra+=(wrk python3-matplotlib) ;;	# bench/plots.py
		# libFuzzer of Debian's default clang (14 in Debian 12, 19 in 13)
		--fuzz) extra+=(clang "libclang-rt-$(case $v in 15) echo 14 ;; *) echo 19 ;; esac)-dev") ;;
		*) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
	esac
done
case $profile in
	demo) pkgs=("${build_pkgs[@]}") ;;
	deb) pkgs=(build-essential dpkg-dev debhelper postgresql-server-dev-all
			   libcurl4-openssl-dev pkg-config ca-certificates) ;;
	test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
esac
pkgs+=(${extra[@]+"${extra[@]}"})

missing=()
for p in "${pkgs[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
# node + npm run the example service (make demo) and the third-party
# Stripe mock (tests/stripe_mock); any node >= 18 will do (Debian 12's
# nodejs is 18), so an existing one is kept.
if [ "$profile" != deb ] &&
	{ ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; }; then
	missing+=(nodejs npm)
fi

# npm_ci DIR MARKER USER: the npm packages pinned by DIR/package-lock.json,
# unless DIR/node_modules/MARKER is already there; a failure fails only
# USER (the tests that need them), not every suite
npm_ci()
{
	local dir
	dir=$(cd "$(dirname "$0")/../../$1" && pwd)
	[ -f "$dir/node_modules/$2" ] && return 0
	echo "deps.sh: npm ci in $dir"
	# playwright-core drives Debian's chromium: no browser is ever downloaded
	(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 \
		npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		echo "deps.sh: WARNING: npm ci failed; $3 will fail" >&2
}

# stripe-stateful-mock for the Stripe tests, pg and playwright-core for
# the Node.js example
node_packages()
{
	[ "$profile" != deb ] || return 0
	[ "$profile" = demo ] ||
		npm_ci tests/stripe_mock stripe-stateful-mock/package.json tests/integration/stripe_mock.sh
	npm_ci examples/node-order-service playwright-core/package.json \
		"tests/cluster/node_service.sh and tests/integration/browser.sh"
}

if [ ${#missing[@]} -eq 0 ]; then
	node_packages
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
elif command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
else
	echo "deps.sh: missing packages: ${missing[*]}" >&2
	echo "deps.sh: run as root, or install them with apt-get." >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}"
# A Debian postgresql package would create and start a "main" cluster on
# port 5432; ft_orders' tests run their own servers, so don't.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
	"${SUDO[@]}" mkdir -p /etc/postgresql-common
	echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's packages enable (and, under systemd, start) their services:
# etcd, HAProxy and Patroni would run on this machine for good, the
# exporter and Prometheus on every interface.  The tests run their own
# on loopback, so disable and stop the services of the packages just
# installed (one installed by other means is left as it is).  Without
# systemd, the init scripts may have started them (unless a policy-rc.d
# forbids it): stop those and disable them too.
for svc in "${test_services[@]}"; do
	case $svc in
		etcd) pkg=etcd-server ;;
		*) pkg=$svc ;;
	esac
	[[ " ${missing[*]} " == *" $pkg "* ]] || continue
	if [ -d /run/systemd/system ]; then
		"${SUDO[@]}" systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
	else
		if [ -x "/etc/init.d/$svc" ]; then
			"${SUDO[@]}" invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
			"${SUDO[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
		# the unit's links, for a later boot under systemd
		if command -v systemctl >/dev/null 2>&1; then
			"${SUDO[@]}" systemctl disable "$svc.service" >/dev/null 2>&1 || true
		fi
	fi
done
node_packages
echo "deps.sh: done"
