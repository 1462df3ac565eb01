#!/bin/bash
# up.sh DIR: bring up, on 127.0.0.1 only, a Patroni cluster for ft_orders:
# etcd (three members, v2 API on), three PostgreSQL 15 nodes managed by Patroni
# (synchronous_mode, pg_rewind, slots, ft_orders preloaded), HAProxy (write
# port -> GET /primary, read port -> GET /replica) and the fake gateway.
# Creates database ftdb with the extension on the leader (it replicates) and
# a login role for the load client, writes DIR/cluster.env and waits until
# the leader streams to two replicas, one of them synchronous.
#
# Every daemon runs as the PostgreSQL OS user through setpriv, so the pid in
# cluster.env is the daemon's own.  tests/cluster/down.sh DIR stops them.
# On failure up.sh tears down what it started (set FT_CLUSTER_KEEP_ON_FAIL=1
# to leave it for inspection).
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/up_lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
cl_prepare "$1" "$CL_HERE/down.sh" /usr/bin/patroni /usr/bin/etcd /usr/sbin/haproxy

# Patroni's primary_start_timeout: how long a crashed primary may take to
# restart in place before Patroni fails over.  Patroni's default (300) restarts
# it in place, which on these 2-core machines takes 12-23 s (crash recovery in
# single-user mode because of use_pg_rewind, a start as read-only, then a
# promotion); 0 fails over to the synchronous standby at once (3-4 s), which
# loses nothing under synchronous_mode.  FT_CLUSTER_PRIMARY_START_TIMEOUT=300
# measures the in-place restart instead.
PRIMARY_START_TIMEOUT=${FT_CLUSTER_PRIMARY_START_TIMEOUT:-0}

# ---------------------------------------------------------------- ports
HAPROXY_RW_PORT=$(free_port); HAPROXY_RO_PORT=$(free_port)
for i in 1 2 3; do
	eval "PG_PORT_$i=$(free_port)"
	eval "REST_PORT_$i=$(free_port)"
	eval "DATA_$i=$CL_DIR/n$i"
	eval "ETCD_PORT_$i=$(free_port)"
	eval "ETCD_PEER_PORT_$i=$(free_port)"
done
ETCD_HOSTS=127.0.0.1:$ETCD_PORT_1,127.0.0.1:$ETCD_PORT_2,127.0.0.1:$ETCD_PORT_3

cl_write_env tests/cluster/up.sh < <(
	echo "ETCD_HOSTS=$ETCD_HOSTS"
	echo "HAPROXY_RW_PORT=$HAPROXY_RW_PORT"
	echo "HAPROXY_RO_PORT=$HAPROXY_RO_PORT"
	for i in 1 2 3; do
		eval "echo PG_PORT_$i=\$PG_PORT_$i; echo REST_PORT_$i=\$REST_PORT_$i; echo DATA_$i=\$DATA_$i"
		eval "echo ETCD_PORT_$i=\$ETCD_PORT_$i; echo ETCD_PEER_PORT_$i=\$ETCD_PEER_PORT_$i"
	done
)

cl_up_daemons 127.0.0.1 127.0.0.1
exit 0
