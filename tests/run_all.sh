#!/usr/bin/env bash
# run_all.sh: what `make test` does.  Installs missing packages, builds and
# installs ft_orders and the fake gateway, runs every suite, and ends with
# the line "N passed, N failed" (exit status 1 on any failure).
#
# Suites: pg_regress (sql/ + expected/) and the isolation specs (specs/),
# pgTAP (tests/pgtap, pg_prove), the TAP tests on PostgreSQL::Test::Cluster
# (t/, PGXS's TAP_TESTS), the fake gateway's self-test, META.json's
# check (tests/packaging/meta.sh), the
# monitoring checks (tests/monitoring: alert rules under promtool, the
# Grafana dashboard against metrics()), the integration tests
# (tests/integration), the
# chaos tests (tests/chaos, crashes and a flapping gateway under load), the
# cluster drills (tests/cluster), the partition drills (tests/partition,
# the subset; `make partition` runs them all).  FT_SUITES="regress pgtap"
# runs a subset.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash tests/setup/deps.sh || { echo "0 passed, 1 failed"; exit 1; }
bash tests/setup/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

suites=${FT_SUITES:-"regress pgtap tap gateway packaging monitoring integration chaos cluster partition"}
total_pass=0
total_fail=0
summary=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/ft_test_logs.XXXXXX")

# count TAP results in a log: prints "passed failed"
tap_counts()
{
	local log=$1 p f
	p=$(grep -cE '^[[:space:]]*ok [0-9]+' "$log")
	f=$(grep -cE '^[[:space:]]*not ok [0-9]+' "$log")
	echo "$p $f"
}

record()
{
	# record SUITE PASSED FAILED
	total_pass=$((total_pass + $2))
	total_fail=$((total_fail + $3))
	summary+=("$(printf '%-12s %4d passed, %d failed' "$1" "$2" "$3")")
}

run_regress()
{
	local log=$logdir/regress.log p=0 f=0 n x
	bash tests/regress/run.sh >"$log" 2>&1
	local rc=$?
	cat "$log"
	# one summary line per runner: pg_regress (sql/), then the isolation
	# specs (specs/), which run only if pg_regress passed
	for x in $(sed -nE 's/.*All ([0-9]+) tests passed.*/\1/p' "$log"); do
		p=$((p + x))
	done
	while read -r x n; do
		f=$((f + x))
		p=$((p + n - x))
	done < <(sed -nE 's/.* ([0-9]+) of ([0-9]+) tests failed.*/\1 \2/p' "$log")
	[ $((p + f)) -eq 0 ] && f=1
	[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
	record regress "$p" "$f"
}

# run_tap NAME COMMAND...: a suite whose output is TAP (prove -v / pg_prove -v)
run_tap()
{
	local name=$1 log=$logdir/$1.log p f rc
	shift
	"$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	read -r p f < <(tap_counts "$log")
	# a script that died before reporting still counts as a failure
	[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
	record "$name" "$p" "$f"
}

for s in $suites; do
	echo "=== suite: $s"
	case $s in
		regress)
			run_regress ;;
		pgtap)
			[ -f tests/pgtap/run.sh ] && run_tap pgtap bash tests/pgtap/run.sh ;;
		tap)
			# t/*.pl under prove -v: single-server scenarios (standby,
			# shutdown, preload) with their own servers and fake gateway
			run_tap tap bash tests/regress/run.sh tap ;;
		gateway)
			[ -f tests/fake_gateway/selftest.sh ] &&
				run_tap gateway prove -v --exec bash tests/fake_gateway/selftest.sh ;;
		monitoring)
			run_tap monitoring prove -v --exec bash tests/monitoring/*.sh ;;
		packaging)
			# META.json against the PGXN schema (make test-packages builds
			# and installs the .debs in chroots)
			run_tap packaging prove -v --exec bash tests/packaging/meta.sh ;;
		integration)
			ls tests/integration/*.sh >/dev/null 2>&1 &&
				run_tap integration prove -v --exec bash tests/integration/*.sh ;;
		chaos)
			# every tests/chaos/*.sh but the soaks, `make soak` and
			# `make soak-memory`
			chaos_tests=$(ls tests/chaos/*.sh 2>/dev/null | grep -v '/soak[a-z_]*\.sh$')
			[ -n "$chaos_tests" ] &&
				run_tap chaos prove -v --exec bash $chaos_tests ;;
		cluster)
			[ -f tests/cluster/run.sh ] && run_tap cluster bash tests/cluster/run.sh ;;
		partition)
			run_tap partition bash tests/partition/run.sh ;;
		*)
			echo "unknown suite $s"; record "$s" 0 1 ;;
	esac
done
rm -rf "$logdir"

echo "=== summary"
for line in "${summary[@]}"; do echo "$line"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ "$total_pass" -gt 0 ]
