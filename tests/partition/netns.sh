# netns.sh: the network of the partition drills and the fault helpers.
# Sourced after tests/cluster/lib.sh, with cluster.env loaded (CL_DIR,
# FTP_PREFIX, NETNS_*, NODE_ADDR_*, VETH_*, BRIDGE, ...).  Never run.
#
# Layout (names all start with FTP_PREFIX, "ftp" + 4 hex digits, unique per
# run; interface names <= 15 characters; addresses only from 198.18.0.0/15,
# on a bridge of the host that has no address, routed nowhere):
#
#   ${P}n1 ${P}n2 ${P}n3  198.18.0.11-13  etcd member, Patroni, PostgreSQL
#   ${P}c                 198.18.0.20     HAProxy, load client, checker
#   ${P}g                 198.18.0.30     fake gateway
#   ${P}br                bridge; ${P}v1 ${P}v2 ${P}v3 ${P}vc ${P}vg the
#                         host ends of the veth pairs (eth0 inside)
#
# Faults are nftables rules in one table "inet ftp" per namespace (input
# hook, so a rule in X drops what arrives at X), link state of the host-side
# veth (flap), signals (freeze), a loop-mounted ext4 for pg_wal (disk full),
# an LD_PRELOAD shim (eio) and libfaketime (skew).  `heal` undoes every
# network fault; the others have their own "off".

FTP_NODES="1 2 3"
FTP_NET=198.18.0

# ftp_ns NAME: the namespace of a member: 1 2 3 c g
ftp_ns() { echo "${FTP_PREFIX}$( case $1 in [123]) echo "n$1" ;; *) echo "$1" ;; esac)"; }
# ftp_addr NAME: its address
ftp_addr()
{
	case $1 in
		[123]) echo "$FTP_NET.1$1" ;;
		c) echo "$FTP_NET.20" ;;
		g) echo "$FTP_NET.30" ;;
	esac
}
ftp_veth() { echo "${FTP_PREFIX}v$1"; }

# ftp_net_up: bridge, namespaces, veth pairs, addresses, an empty nft table
# with an input chain in each namespace
ftp_net_up()
{
	local m ns veth
	ip link add "${FTP_PREFIX}br" type bridge || return 1
	ip link set "${FTP_PREFIX}br" up || return 1
	for m in 1 2 3 c g; do
		ns=$(ftp_ns "$m"); veth=$(ftp_veth "$m")
		ip netns add "$ns" || return 1
		ip link add "$veth" type veth peer name eth0 netns "$ns" || return 1
		ip link set "$veth" master "${FTP_PREFIX}br" || return 1
		ip link set "$veth" up || return 1
		(in_ns "$ns" ip addr add "$(ftp_addr "$m")/24" dev eth0) || return 1
		(in_ns "$ns" ip link set eth0 up) || return 1
		(in_ns "$ns" ip link set lo up) || return 1
		(in_ns "$ns" nft add table inet ftp) || return 1
		(in_ns "$ns" nft add chain inet ftp in '{ type filter hook input priority 0; policy accept; }') || return 1
	done
}

# ftp_net_down: remove, by name, every namespace, veth and the bridge this
# run made (deleting a namespace deletes its nft table and its veth pair);
# prints what could not be removed and returns 1 then
ftp_net_down()
{
	local m ns veth rc=0
	ftp_flap_stop
	for m in 1 2 3 c g; do
		ns=$(ftp_ns "$m"); veth=$(ftp_veth "$m")
		ip netns list 2>/dev/null | grep -qw "^$ns" && { ip netns del "$ns" || rc=1; }
		# deleting the namespace deletes the pair, asynchronously
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			ip link show "$veth" >/dev/null 2>&1 || break
			sleep 0.1
		done
		ip link show "$veth" >/dev/null 2>&1 && { ip link del "$veth" 2>/dev/null ||
			! ip link show "$veth" >/dev/null 2>&1 || rc=1; }
	done
	ip link show "${FTP_PREFIX}br" >/dev/null 2>&1 && { ip link del "${FTP_PREFIX}br" || rc=1; }
	# verify
	if ip netns list 2>/dev/null | grep -q "^${FTP_PREFIX}"; then
		echo "netns left: $(ip netns list | grep "^${FTP_PREFIX}" | tr '\n' ' ')" >&2; rc=1
	fi
	if ip -o link show 2>/dev/null | grep -q ": ${FTP_PREFIX}"; then
		echo "links left: $(ip -o link show | grep -o ": ${FTP_PREFIX}[^:@]*" | tr '\n' ' ')" >&2; rc=1
	fi
	return $rc
}

# ---------------------------------------------------------------- network faults
# nft_in M RULE...: add a rule to M's input chain
nft_in() { local m=$1; shift; (in_ns "$(ftp_ns "$m")" nft add rule inet ftp in "$@"); }

# partition A B: no packet between A and B, either way
partition() { nft_in "$1" ip saddr "$(ftp_addr "$2")" drop && nft_in "$2" ip saddr "$(ftp_addr "$1")" drop; }

# one_way A B: packets from A to B are dropped (B's replies to A still flow,
# but a TCP connection A->B cannot be set up and B->A gets no ACKs)
one_way() { nft_in "$2" ip saddr "$(ftp_addr "$1")" drop; }

# isolate M: M hears nothing from anyone (its own loopback still works)
isolate()
{
	local o
	nft_in "$1" iifname != lo drop || return 1
	for o in 1 2 3 c g; do
		[ "$o" = "$1" ] || nft_in "$o" ip saddr "$(ftp_addr "$1")" drop || return 1
	done
}

# isolate_from_cluster M: M cut from the other database nodes (their etcd
# members and PostgreSQL) but still reaching the clients and the gateway:
# the zombie leader
isolate_from_cluster()
{
	local o
	for o in $FTP_NODES; do
		[ "$o" = "$1" ] || partition "$1" "$o" || return 1
	done
}

# loss M PCT: drop PCT % of the packets arriving at M
loss() { nft_in "$1" numgen random mod 100 '<' "$2" drop; }

# flap M PERIOD: the link of M goes down and up every PERIOD seconds
# (PERIOD may be "1-3": a random whole number in that range each time)
# until heal; runs in the background, pid in FTP_FLAP_PID
ftp_flap_stop()
{
	[ -n "${FTP_FLAP_PID:-}" ] || return 0
	kill "$FTP_FLAP_PID" 2>/dev/null
	wait "$FTP_FLAP_PID" 2>/dev/null
	FTP_FLAP_PID=
}
flap()
{
	local veth lo hi
	veth=$(ftp_veth "$1"); lo=${2%-*}; hi=${2#*-}
	(
		trap 'ip link set "$veth" up; exit 0' TERM
		while :; do
			ip link set "$veth" down
			sleep $((lo + RANDOM % (hi - lo + 1))) & wait $!
			ip link set "$veth" up
			sleep $((lo + RANDOM % (hi - lo + 1))) & wait $!
		done
	) &
	FTP_FLAP_PID=$!
}

# heal: every network fault off (rules flushed, links up, flapping stopped)
heal()
{
	local m
	ftp_flap_stop
	for m in 1 2 3 c g; do
		(in_ns "$(ftp_ns "$m")" nft flush chain inet ftp in) 2>/dev/null
		ip link set "$(ftp_veth "$m")" up 2>/dev/null
	done
}

# ---------------------------------------------------------------- hangs
# node_pids I: node I's etcd, Patroni, and every descendant of Patroni (its
# postmaster and the postmaster's children), by pid from cluster.env
node_pids()
{
	local i=$1 ev pv
	ev="ETCD_PID_$i"; pv="PATRONI_PID_$i"
	[ -n "${!ev:-}" ] && echo "${!ev}"
	[ -n "${!pv:-}" ] && descendants "${!pv}"
}
descendants()
{
	local c
	[ -d "/proc/$1" ] || return 0
	echo "$1"
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants "$c"; done
}

# freeze I / thaw I: SIGSTOP / SIGCONT every process of node I (the pid
# list is taken at freeze time and kept for the thaw)
freeze()
{
	FTP_FROZEN=$(node_pids "$1" | tr '\n' ' ')
	# shellcheck disable=SC2086
	kill -STOP $FTP_FROZEN
}
thaw() { [ -n "${FTP_FROZEN:-}" ] && kill -CONT $FTP_FROZEN; FTP_FROZEN=; }

# freeze_patroni I / thaw_patroni I: SIGSTOP / SIGCONT node I's Patroni only
freeze_patroni() { local pv="PATRONI_PID_$1"; kill -STOP "${!pv}"; }
thaw_patroni() { local pv="PATRONI_PID_$1"; kill -CONT "${!pv}"; }

# ---------------------------------------------------------------- disks
# node I's pg_wal lives on its own small ext4 (a loop device over
# DIR/walN.img mounted on DIR/walN; pg_wal is DIR/walN/pg_wal) when the
# cluster was brought up with FTP_WAL_MB set.
ftp_wal_fs_up()
{
	local i=$1 img="$CL_DIR/wal$i.img" mnt="$CL_DIR/wal$i" dev
	truncate -s "${FTP_WAL_MB}M" "$img" || return 1
	mkfs.ext4 -q -F -m 0 "$img" || return 1
	dev=$(losetup -f --show "$img") || return 1
	cl_set_env "$CL_DIR" "LOOP_$i" "$dev"
	mkdir -p "$mnt" && mount "$dev" "$mnt" || return 1
	chown "$FT_PG_USER:" "$mnt"
}
ftp_wal_fs_down()
{
	local i=$1 lv="LOOP_$1" rc=0
	mountpoint -q "$CL_DIR/wal$i" && { umount "$CL_DIR/wal$i" || umount -l "$CL_DIR/wal$i" || rc=1; }
	[ -n "${!lv:-}" ] && losetup "${!lv}" >/dev/null 2>&1 && { losetup -d "${!lv}" || rc=1; }
	return $rc
}

# fill_disk I: fill node I's pg_wal filesystem to the last block, then make
# the server move on to new WAL segments (pg_switch_wal after a write) until
# it needs one it cannot create: ENOSPC, PANIC.  (Without the switches an
# order load of ~100 kB/s would take minutes to get past the segments
# already allocated or recycled.)  free_disk I: undo.
fill_disk()
{
	local i=$1 n
	dd if=/dev/zero of="$CL_DIR/wal$i/filler" bs=1M status=none 2>/dev/null
	sync -f "$CL_DIR/wal$i" 2>/dev/null
	for n in $(seq 1 40); do
		node_q "$i" "SELECT pg_catalog.txid_current(), pg_catalog.pg_switch_wal()" postgres >/dev/null || break
	done
	return 0
}
free_disk() { rm -f "$CL_DIR/wal$1/filler"; }

# eio I on|off: fsync, fdatasync and pwrite of node I's postgres processes
# fail with EIO while DIR/eio-nI exists (tests/partition/eio_shim.c,
# preloaded when the cluster was brought up with FTP_PRELOAD=1)
eio()
{
	if [ "$2" = on ]; then touch "$CL_DIR/eio-n$1"; else rm -f "$CL_DIR/eio-n$1"; fi
}

# skew I SECONDS: node I's postgres processes see the clock moved by SECONDS
# (libfaketime, re-read at most once a second; FTP_PRELOAD=1); skew I 0
# puts it back
skew()
{
	local s=$2
	case $s in -*) ;; *) s="+$s" ;; esac
	echo "${s}s" >"$CL_DIR/faketime-n$1.tmp" && mv "$CL_DIR/faketime-n$1.tmp" "$CL_DIR/faketime-n$1"
	chmod 644 "$CL_DIR/faketime-n$1"
}
