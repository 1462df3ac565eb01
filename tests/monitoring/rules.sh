#!/bin/bash
# rules.sh: contrib/prometheus/ft_orders.rules.yml under promtool.
#
# `promtool check rules` must be clean; every contrib/prometheus/tests/*.yml
# must pass `promtool test rules` (after rule_tests.py adds the static
# annotations: see there); every alert must have a case where it fires and
# one where it must not; and a copy of the rules with one threshold changed
# must fail its tests (so the tests do look at the expressions).
# Needs Debian's prometheus package (promtool) and python3-yaml; no server.

source "$(dirname "$0")/../lib/tap.sh"
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RULES=$ROOT/contrib/prometheus/ft_orders.rules.yml
HELPER=$ROOT/tests/monitoring/rule_tests.py
PROMTOOL=${FT_PROMTOOL_BIN:-$(command -v promtool || true)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ft_rules.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

[ -n "$PROMTOOL" ] && [ -x "$PROMTOOL" ] ||
	bail_out "promtool is not installed (Debian package prometheus; tests/setup/deps.sh installs it)"
/usr/bin/python3 -c 'import yaml' 2>/dev/null || bail_out "python3-yaml is missing"

out=$("$PROMTOOL" check rules "$RULES" 2>&1)
ok $? "promtool check rules: $(echo "$out" | grep -oE '[0-9]+ rules found')"
echo "$out" | grep -vE '^(Checking|  SUCCESS|$)' | sed 's/^/# /'

tests=("$ROOT"/contrib/prometheus/tests/*.yml)
for t in "${tests[@]}"; do
	name=$(basename "$t")
	/usr/bin/python3 "$HELPER" expand "$RULES" "$t" "$TMP/$name" &&
		out=$("$PROMTOOL" test rules "$TMP/$name" 2>&1)
	rc=$?
	ok $rc "promtool test rules $name ($(grep -c '^  - name:' "$t") groups, $(grep -c 'alertname:' "$t") alert checks)"
	[ $rc -eq 0 ] || echo "$out" | head -n 40 | sed 's/^/# /'
done

out=$(/usr/bin/python3 "$HELPER" coverage "$RULES" "${tests[@]}")
ok $? "each of the $(grep -c '^      - alert:' "$RULES") alerts has a case where it fires and one where it does not"
[ -n "$out" ] && echo "$out" | sed 's/^/# /'

# the tests must notice a changed expression: FtOrdersOldestPendingTooOld
# at 20 minutes instead of 10
sed 's/ft_orders:outbox_oldest_age_seconds > 600/ft_orders:outbox_oldest_age_seconds > 1200/' "$RULES" >"$TMP/changed.rules.yml"
cmp -s "$RULES" "$TMP/changed.rules.yml"
is "$?" "1" "the mutated copy differs from the rules"
/usr/bin/python3 "$HELPER" expand "$TMP/changed.rules.yml" "$ROOT/contrib/prometheus/tests/backlog.yml" "$TMP/changed.yml" &&
	out=$("$PROMTOOL" test rules "$TMP/changed.yml" 2>&1)
rc=$?
is "$rc" "1" "promtool test rules fails when the oldest-pending threshold is changed"
like "$(echo "$out" | grep -m1 -oE 'alertname: [A-Za-z]+')" "FtOrdersOldestPendingTooOld" \
	"... and names the alert whose expectation broke"

done_testing
