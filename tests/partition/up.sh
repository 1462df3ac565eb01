#!/bin/bash
# up.sh DIR: the cluster of tests/cluster (3 etcd members with the v2 API,
# 3 Patroni-managed PostgreSQL 15 nodes with ft_orders, HAProxy, the fake
# gateway) in network namespaces of its own (netns.sh has the layout), so
# that the drills can partition, isolate, flap and drop packets between
# them.  Root only.  Writes DIR/cluster.env (the same names as
# tests/cluster plus FTP_PREFIX, NETNS_*, NODE_ADDR_*), which down.sh uses
# to remove everything again.
#   FTP_WAL_MB=N   each node's pg_wal on its own N MB ext4 (loop device)
#                  for the disk-full drill (default 400; 0: no)
#   FTP_PRELOAD=1  preload the EIO shim and libfaketime into every node's
#                  PostgreSQL (the eio and skew drills of `make partition`)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../cluster/lib.sh"
. "$HERE/../cluster/up_lib.sh"
. "$HERE/netns.sh"

[ $# -ge 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "up.sh: network namespaces need root" >&2; exit 1; }
cl_prepare "$1" "$HERE/down.sh" /usr/sbin/nft /usr/bin/patroni /usr/bin/etcd /usr/sbin/haproxy /sbin/mkfs.ext4

# a prefix no namespace or link of this machine uses yet
for _ in $(seq 1 50); do
	FTP_PREFIX=ftp$(printf '%04x' $((RANDOM % 65536)))
	ip netns list | grep -q "^$FTP_PREFIX" || ip -o link | grep -q ": $FTP_PREFIX" || break
done
FTP_WAL_MB=${FTP_WAL_MB:-400}
cl_write_env tests/partition/up.sh < <(
	echo "FTP_PREFIX=$FTP_PREFIX"
	echo "NETNS_GW=$(ftp_ns g)"
	echo "NETNS_CLIENT=$(ftp_ns c)"
	echo "HAPROXY_HOST=127.0.0.1"
	echo "HAPROXY_RW_PORT=5000"
	echo "HAPROXY_RO_PORT=5001"
	echo "ETCD_HOSTS=$(ftp_addr 1):2379,$(ftp_addr 2):2379,$(ftp_addr 3):2379"
	for i in 1 2 3; do
		echo "NETNS_$i=$(ftp_ns "$i")"
		echo "NODE_ADDR_$i=$(ftp_addr "$i")"
		# the Unix sockets of all nodes share DIR/run: one port each
		echo "PG_PORT_$i=$((5440 + i))"
		echo "REST_PORT_$i=8008"
		echo "ETCD_PORT_$i=2379"
		echo "ETCD_PEER_PORT_$i=2380"
		echo "DATA_$i=$CL_DIR/n$i"
		[ "$FTP_WAL_MB" != 0 ] && echo "CL_WALDIR_$i=$CL_DIR/wal$i/pg_wal"
		# the shims' settings reach PostgreSQL through Patroni's
		# environment; the preload itself only through the postgres
		# wrapper below (libfaketime preloaded into Patroni's python broke
		# its time.time(): BlockingIOError)
		if [ -n "${FTP_PRELOAD:-}" ]; then
			echo "NODE_ENV_$i=\"FT_EIO_TRIGGER=$CL_DIR/eio-n$i FAKETIME_TIMESTAMP_FILE=$CL_DIR/faketime-n$i FAKETIME_CACHE_DURATION=1 FAKETIME_ONLY_CMDS=postgres DONT_FAKE_MONOTONIC=1\""
		fi
	done
)

ftp_net_up || fail "network set-up failed"
cl_log "namespaces $FTP_PREFIX{n1,n2,n3,c,g} on bridge ${FTP_PREFIX}br"
if [ "$FTP_WAL_MB" != 0 ]; then
	for i in 1 2 3; do ftp_wal_fs_up "$i" || fail "pg_wal filesystem of n$i"; done
	. "$CL_DIR/cluster.env"
fi
if [ -n "${FTP_PRELOAD:-}" ]; then
	make -s -C "$HERE" eio_shim.so >&2 || fail "cannot build eio_shim.so"
	for i in 1 2 3; do skew "$i" 0; done
	# Patroni's bin_dir: the real binaries, but postgres through a wrapper
	# that preloads the EIO shim and libfaketime
	mkdir -p "$CL_DIR/bin"
	for b in "$FT_PG_BIN"/*; do ln -s "$b" "$CL_DIR/bin/$(basename "$b")"; done
	rm -f "$CL_DIR/bin/postgres"
	cat >"$CL_DIR/bin/postgres" <<SH
#!/bin/sh
LD_PRELOAD=$HERE/eio_shim.so:/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 exec $FT_PG_BIN/postgres "\$@"
SH
	chmod 755 "$CL_DIR/bin/postgres"
	CL_PATRONI_BIN_DIR=$CL_DIR/bin
fi

CL_HBA_NET=$FTP_NET.0/24
CL_WAL_KEEP_SIZE=64MB
# pg_wal must fit its small filesystem (FTP_WAL_MB) in normal operation;
# the fake gateway listens on its namespace's address, not on loopback, and
# speaks plain http (the token of the test is no secret)
CL_EXTRA_PG_PARAMS="        max_wal_size: 96MB
        min_wal_size: 32MB
        ft_orders.allow_insecure_http: 'on'"
cl_up_daemons "$(ftp_addr g)" 0.0.0.0
cl_log "partition cluster healthy in $(awk -v a="$(now_s)" -v b="$T_START" 'BEGIN{printf "%.1f", a-b}') s"
exit 0
