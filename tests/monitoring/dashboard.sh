#!/bin/bash
# dashboard.sh: contrib/grafana/ft_orders.json against the build under test.
#
# Starts a throwaway server with ft_orders (no gateway needed: metrics()
# prints every family's HELP and TYPE lines even with nothing to count),
# takes the text of ft_orders.metrics(), and lets check_dashboard.py check
# the dashboard's structure (JSON schema, grid, variables, PromQL parsed by
# promtool) and that every query names a metric this metrics() exports.
# Needs python3-jsonschema, python3-yaml and promtool.

source "$(dirname "$0")/../lib/common.sh"

PROMTOOL=${FT_PROMTOOL_BIN:-$(command -v promtool || true)}
if [ -z "$PROMTOOL" ] || ! /usr/bin/python3 -c 'import jsonschema, yaml' 2>/dev/null; then
	echo "Bail out! promtool, python3-jsonschema or python3-yaml is missing (tests/setup/deps.sh installs them)"
	exit 255
fi
pg_start || { echo "Bail out! server did not start"; exit 255; }
psql_q "SELECT ft_orders.metrics()" >"$FT_TMP/metrics.txt" ||
	{ echo "Bail out! metrics() failed"; exit 255; }

# check DASHBOARD: the checker's TAP for DASHBOARD
check()
{
	/usr/bin/python3 "$FT_ROOT/tests/monitoring/check_dashboard.py" "$1" \
		"$FT_ROOT/tests/monitoring/dashboard.schema.json" \
		"$FT_TMP/metrics.txt" \
		"$FT_ROOT/contrib/prometheus/ft_orders.rules.yml" \
		"$FT_ROOT/contrib/postgres_exporter/ft_orders_queries.yaml" \
		"$PROMTOOL"
}

out=$(check "$FT_ROOT/contrib/grafana/ft_orders.json")
rc=$?
grep -v '^1\.\.' <<<"$out"
n=$(grep -cE '^(not )?ok ' <<<"$out")

# the check must catch a misspelt metric: a copy with one name changed
sed 's/ft_orders_outbox_oldest_event_age_seconds/ft_orders_outbox_oldest_age_seconds/g' \
	"$FT_ROOT/contrib/grafana/ft_orders.json" >"$FT_TMP/misspelt.json"
bad=$(check "$FT_TMP/misspelt.json")
bad_rc=$?
n=$((n + 1))
if [ $bad_rc -ne 0 ] && grep -q '^not ok .* names a metric that metrics() exports' <<<"$bad"; then
	echo "ok $n - a copy with a misspelt metric (ft_orders_outbox_oldest_age_seconds) fails the check"
else
	echo "not ok $n - a copy with a misspelt metric (ft_orders_outbox_oldest_age_seconds) fails the check"
	rc=1
fi
echo "1..$n"
exit $rc
