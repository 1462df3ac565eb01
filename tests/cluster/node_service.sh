#!/bin/bash
# node_service.sh [DIR]: the Node.js example service (examples/
# node-order-service) on a Patroni cluster, TAP output.  With DIR, on the
# cluster tests/cluster/up.sh started there (run.sh does this after the
# drills); without, on a cluster of its own, brought up and torn down here.
# See node_service_lib.sh.
#   node_service.sh --failover DIR SCENARIO   (internal: the failover test's fault)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/node_service_lib.sh"

if [ "${1:-}" = --failover ]; then
	ns_failover "$2" "$3"
	exit $?
fi

T_BEGIN=$(date +%s)
if [ $# -ge 1 ]; then
	run_node_service "$1"
	done_testing
	exit $?
fi

NS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ft_node_cluster.XXXXXX")
cleanup()
{
	local rc=$?
	trap - EXIT INT TERM
	cluster_suite_end "$rc" "$NS_DIR" "node service suite"
}
trap cleanup EXIT
trap 'ok 1 "node_service.sh interrupted"; exit 130' INT TERM
"$HERE/up.sh" "$NS_DIR" 2>&1 | sed '/^#/!s/^/# /'
[ "${PIPESTATUS[0]}" -eq 0 ]
ok $? "up.sh: a cluster for the node service" || exit 1
run_node_service "$NS_DIR"
exit 0
