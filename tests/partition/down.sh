#!/bin/bash
# down.sh [--keep] DIR: undo tests/partition/up.sh DIR: every fault off
# (thaw what a drill froze, disks freed), the daemons stopped by pid
# (tests/cluster/down.sh), the pg_wal filesystems unmounted and their loop
# devices detached, and the namespaces, veth pairs and bridge of this run
# removed by name; then checks with `ip netns list` and `ip link` that none
# is left.  Removes DIR unless --keep (or FT_KEEP_TMP).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../cluster/lib.sh"
. "$HERE/netns.sh"

keep=${FT_KEEP_TMP:-}
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [--keep] DIR" >&2; exit 2; }
CL_DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "down.sh: no directory $1" >&2; exit 0; }
[ -r "$CL_DIR/cluster.env" ] || { echo "down.sh: no $CL_DIR/cluster.env" >&2; exit 0; }
. "$CL_DIR/cluster.env"
rc=0

# a frozen process cannot stop: SIGCONT every process of every node first
for i in 1 2 3; do
	# shellcheck disable=SC2046
	kill -CONT $(node_pids "$i") 2>/dev/null
	free_disk "$i" 2>/dev/null
	eio "$i" off
done
[ -n "${FTP_PREFIX:-}" ] && heal 2>/dev/null

# (--keep: this script removes DIR at the end; its "kept" note would mislead)
"$HERE/../cluster/down.sh" --keep "$CL_DIR" 2>&1 | grep -v '^# kept' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1

for i in 1 2 3; do
	ftp_wal_fs_down "$i" || { echo "down.sh: pg_wal filesystem of n$i still mounted" >&2; rc=1; }
done
if [ -n "${FTP_PREFIX:-}" ]; then
	ftp_net_down || rc=1
fi

if [ -n "$keep" ] || [ $rc -ne 0 ]; then
	echo "# kept $CL_DIR" >&2
else
	rm -rf "$CL_DIR"
fi
exit $rc
