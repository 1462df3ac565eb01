#!/bin/bash
# run.sh: the cluster suite of `make test`.  Brings up the cluster
# (up.sh), runs each drill once (postmaster_kill, node_loss, switchover),
# prints the drill table, tests the Node.js example service on the same
# cluster (node_service_lib.sh: its API and a failover under load), and tears
# everything down (down.sh) on any exit, interrupted or not.  One TAP
# stream, plan at the end.
#   FT_KEEP_TMP=1     keep the cluster folder (logs, load records)
#   FT_DRILLS="..."   scenarios to run (default: all three)
#   FT_DRILL_JSON=F   append the drills' JSON lines to F as well
#   FT_NODE_SERVICE=0 skip the Node.js example service
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/drill_lib.sh"
. "$HERE/node_service_lib.sh"

T_BEGIN=$(date +%s)
CL_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ft_cluster.XXXXXX")
export FT_DRILL_JSON=${FT_DRILL_JSON:-}
RUN_JSON=$CL_RUN_DIR.drills.json		# outside DIR: down.sh removes DIR
: >"$RUN_JSON"

cleanup()
{
	local rc=$?
	trap - EXIT INT TERM
	stop_load 5
	cluster_suite_end "$rc" "$CL_RUN_DIR" "cluster suite" "$RUN_JSON"
}
trap cleanup EXIT
trap 'ok 1 "run.sh interrupted"; exit 130' INT TERM

diag "cluster folder $CL_RUN_DIR"
"$HERE/up.sh" "$CL_RUN_DIR" 2>&1 | sed '/^#/!s/^/# /'
[ "${PIPESTATUS[0]}" -eq 0 ]
ok $? "up.sh: etcd, 3 Patroni nodes (1 leader, 2 streaming replicas, 1 sync), HAProxy, fake gateway" ||
	exit 1

for scenario in ${FT_DRILLS:-postmaster_kill node_loss switchover}; do
	diag "---- drill $scenario"
	FT_DRILL_JSON=$RUN_JSON run_drill "$CL_RUN_DIR" "$scenario"
done

# the drill table
"$CL_PYTHON" - "$RUN_JSON" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = [("scenario", "scenario"), ("old_leader", "old"), ("new_leader", "new"),
        ("rto_s", "rto_s"), ("reads_unavailable_s", "reads_unavail_s"),
        ("fault_to_promotion_s", "promotion_s"), ("promotion_to_first_payment_s", "promo_to_pay_s"),
        ("acknowledged", "acked"), ("lost", "lost"), ("duplicates", "dups"),
        ("drain_s", "drain_s"), ("rejoin_s", "rejoin_s")]
print("# drill table")
print("# " + " ".join("%-15s" % h for _, h in cols))
for r in rows:
    print("# " + " ".join("%-15s" % ("-" if r.get(k) is None else r.get(k)) for k, _ in cols))
PY
[ -n "$FT_DRILL_JSON" ] && cat "$RUN_JSON" >>"$FT_DRILL_JSON"

if [ "${FT_NODE_SERVICE:-1}" != 0 ]; then
	diag "---- Node.js order service (examples/node-order-service)"
	run_node_service "$CL_RUN_DIR"
fi
exit 0
