#!/bin/bash
# bench.sh: the failover figures for the benchmarks.  Brings up a cluster,
# runs each drill FT_DRILL_RUNS times (default 3), tears it down, and leaves
# one JSON line per drill in FT_DRILL_JSON (default: a file in /tmp, named
# at the end).  Output is TAP, like run.sh.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
runs=${FT_DRILL_RUNS:-3}
drills=""
for _ in $(seq 1 "$runs"); do drills="$drills postmaster_kill node_loss switchover"; done
export FT_DRILL_JSON=${FT_DRILL_JSON:-${TMPDIR:-/tmp}/ft_cluster_drills.$(date +%Y%m%d-%H%M%S).json}
FT_DRILLS=$drills bash "$HERE/run.sh"
rc=$?
echo "# drill JSON lines: $FT_DRILL_JSON"
exit $rc
