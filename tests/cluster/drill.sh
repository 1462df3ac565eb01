#!/bin/bash
# drill.sh DIR SCENARIO: one failover drill (postmaster_kill, node_loss or
# switchover) on the cluster tests/cluster/up.sh started in DIR; TAP output.
# See drill_lib.sh for the timeline and analyze.py for the checks.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/drill_lib.sh"
[ $# -eq 2 ] || { echo "usage: $0 DIR postmaster_kill|node_loss|switchover" >&2; exit 2; }
trap 'stop_load 5' EXIT
trap 'ok 1 "drill.sh interrupted"; exit 130' INT TERM
run_drill "$1" "$2"
done_testing
