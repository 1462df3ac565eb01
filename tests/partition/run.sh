#!/bin/bash
# run.sh [all]: the partition drills.  Brings up the cluster in network
# namespaces (up.sh), runs the drills (default: the subset `make test`
# runs, FTP_SUBSET in drill_lib.sh; "all" or FT_PARTITION_DRILLS="..."
# for more), prints the drill table, and removes everything (down.sh) on
# any exit, interrupted or not, then checks that no namespace or link of
# this run is left.  One TAP stream, plan at the end.  Root only.
#   FT_PARTITION_JSON=F  append each drill's JSON line to F as well
#   FT_KEEP_TMP=1        keep the cluster folder (logs, histories)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/drill_lib.sh"

T_BEGIN=$(date +%s)
drills=${FT_PARTITION_DRILLS:-$FTP_SUBSET}
[ "${1:-}" = all ] && drills=${FT_PARTITION_DRILLS:-$FTP_ALL $FTP_PRELOADED}
if [ "$(id -u)" -ne 0 ]; then
	ok 1 "partition drills need root (network namespaces, nftables, loop devices)"
	done_testing; exit 1
fi
# the drills that need the EIO shim and libfaketime run on a cluster of
# their own, brought up with them preloaded, after the others
plain= preloaded=
for d in $drills; do
	case " $FTP_PRELOADED " in *" $d "*) preloaded="$preloaded $d" ;; *) plain="$plain $d" ;; esac
done
FTP_RUN_JSON=$(mktemp "${TMPDIR:-/tmp}/ft_partition.XXXXXX.drills.json")
export FT_PARTITION_JSON=${FT_PARTITION_JSON:-}
FTP_RUN_DIR=

# cluster_down: down.sh of the cluster in FTP_RUN_DIR, as two tests (it
# stopped everything; nothing of this run's prefix left in ip netns / ip link)
cluster_down()
{
	local prefix left
	[ -n "$FTP_RUN_DIR" ] || return 0
	prefix=$(sed -n 's/^FTP_PREFIX=//p' "$FTP_RUN_DIR/cluster.env" 2>/dev/null)
	"$HERE/down.sh" "$FTP_RUN_DIR" >&2
	ok $? "down.sh stopped every daemon, unmounted the pg_wal filesystems, removed the namespaces and links"
	if [ -n "$prefix" ]; then
		left=$( { ip netns list; ip -o link show; } 2>/dev/null | grep -o "$prefix[a-z0-9]*" | sort -u | tr '\n' ' ')
		is "$left" "" "nothing named $prefix* left in ip netns list / ip link"
	fi
	FTP_RUN_DIR=
}

cleanup()
{
	local rc=$? done_rc
	trap - EXIT INT TERM
	stop_load 5
	cluster_down
	[ -s "$FTP_RUN_JSON" ] && ftp_table "$FTP_RUN_JSON"
	rm -f "$FTP_RUN_JSON"
	diag "partition suite took $(( $(date +%s) - T_BEGIN )) s"
	done_testing
	done_rc=$?
	[ "$rc" -ne 0 ] && exit "$rc"
	exit $done_rc
}
trap cleanup EXIT
trap 'ok 1 "run.sh interrupted"; exit 130' INT TERM

# run_on_cluster PRELOAD DRILLS...: bring a cluster up, run DRILLS, take it down
run_on_cluster()
{
	local preload=$1 scenario t
	shift
	FTP_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ft_partition.XXXXXX")
	diag "partition cluster folder $FTP_RUN_DIR${preload:+ (fault shims preloaded)}; drills:$*"
	FTP_PRELOAD=$preload "$HERE/up.sh" "$FTP_RUN_DIR" 2>&1 | sed '/^#/!s/^/# /'
	[ "${PIPESTATUS[0]}" -eq 0 ]
	ok $? "up.sh${preload:+ (FTP_PRELOAD=1)}: namespaces, 3 etcd members (v2), 3 Patroni nodes, HAProxy and the load client's namespace, the gateway's namespace" ||
		exit 1
	for scenario in "$@"; do
		diag "---- drill $scenario"
		t=$(date +%s)
		run_partition_drill "$FTP_RUN_DIR" "$scenario"
		diag "drill $scenario took $(( $(date +%s) - t )) s"
	done
	cluster_down
}

# shellcheck disable=SC2086
[ -n "$plain" ] && run_on_cluster "" $plain
# shellcheck disable=SC2086
[ -n "$preloaded" ] && run_on_cluster 1 $preloaded
exit 0
