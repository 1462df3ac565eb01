#!/bin/bash
# down.sh [--keep] DIR: stop exactly what tests/cluster/up.sh started in DIR,
# by the pids recorded in DIR/cluster.env, in RECIPES' order: SIGTERM every
# Patroni (each stops its PostgreSQL) and wait; SIGINT any postmaster left
# (first line of its postmaster.pid); then HAProxy, the etcd members and the
# fake gateway.
# Removes DIR afterwards unless --keep is given (or FT_KEEP_TMP is set).
set -u
. "$(dirname "$0")/lib.sh"

keep=${FT_KEEP_TMP:-}
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [--keep] DIR" >&2; exit 2; }
CL_DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "down.sh: no directory $1" >&2; exit 0; }
rc=0

if [ -r "$CL_DIR/cluster.env" ]; then
	. "$CL_DIR/cluster.env"

	# stop PID WORD SIGNAL SECONDS: signal PID if it is still the daemon we
	# started (its command line contains WORD), wait, then SIGKILL
	stop()
	{
		local pid=$1 word=$2 sig=$3 limit=$4
		pid_is "$pid" "$word" || return 0
		kill "-$sig" "$pid" 2>/dev/null || return 0
		if ! wait_gone "$pid" "$limit"; then
			echo "down.sh: $word (pid $pid) ignored SIG$sig for ${limit}s, killing it" >&2
			kill -KILL "$pid" 2>/dev/null
			wait_gone "$pid" 5 || rc=1
		fi
	}

	# 1. Patroni: SIGTERM all at once (each stops its own server), then wait
	for i in 1 2 3; do
		pv="PATRONI_PID_$i"
		pid_is "${!pv:-}" patroni && kill -TERM "${!pv}" 2>/dev/null
	done
	for i in 1 2 3; do
		pv="PATRONI_PID_$i"
		stop "${!pv:-}" patroni TERM 40
	done
	# 2. postmasters left behind (a node whose Patroni was killed)
	for i in 1 2 3; do
		dv="DATA_$i"
		[ -r "${!dv:-/nonexistent}/postmaster.pid" ] || continue
		pm=$(head -n 1 "${!dv}/postmaster.pid")
		stop "$pm" postgres INT 30
	done
	# 3. HAProxy, etcd, the gateway
	stop "${HAPROXY_PID:-}" haproxy TERM 10
	for i in 1 2 3; do
		ev="ETCD_PID_$i"
		stop "${!ev:-}" etcd TERM 15
	done
	stop "${GW_PID:-}" fake_gateway TERM 10
	# a load client a drill left running (drill.sh records it)
	stop "${LOAD_PID:-}" load_client TERM 10

	# 4. anything still running with DIR on its command line is ours too
	#    (e.g. a pid recorded wrongly): report it and stop it by pid
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = $$ ] && continue
		{ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$CL_DIR/" || continue
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)
		case "$cmd" in *down.sh*|*drill.sh*|*run.sh*|*bench.sh*|*up.sh*) continue ;; esac
		echo "down.sh: stray process $pid: $cmd" >&2
		rc=1
		kill -TERM "$pid" 2>/dev/null
		wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null
	done
	[ $rc -eq 0 ] && rm -f "$CL_DIR/cluster.env"
fi

if [ -n "$keep" ] || [ $rc -ne 0 ]; then
	echo "# kept $CL_DIR" >&2
else
	rm -rf "$CL_DIR"
fi
exit $rc
