# chroot.sh: throwaway Debian systems for `make test-pg17` and the package
# tests, sourced by tests/pg17/run.sh and tests/packaging/*.sh (root only).
#
# A system is layers, cached under /var/tmp/ft_orders-SUITE/ between runs:
#   base/           debootstrap --variant=minbase SUITE (+ ca-certificates),
#                   apt sources of this machine's mirror; made once
#   layer-NAME-KEY/ what a set-up command added on top of base (an overlay
#                   upper folder), remade when KEY (e.g. a hash of deps.sh)
#                   changes
# Each run mounts a fresh overlay over the layers (or copies them where
# overlayfs is unavailable), so every run starts from the same clean system
# and the cache is never modified.  /proc, /sys, /dev, /dev/pts, /dev/shm
# and /run/netns (network namespaces of the partition drills) are mounted in
# the system; ftc_cleanup (an EXIT trap) kills what still runs inside it,
# by pid, and unmounts everything.
#
#   ftc_base SUITE               make/cache the base system of SUITE
#   ftc_layer SUITE NAME KEY CMD make/cache a layer: CMD runs in the chroot
#   ftc_up SUITE ROOT [LAYER...] mount a system at ROOT (layers top first)
#   ftc_deps_layer SUITE SRC     the layer "deps": SRC's tests/setup/deps.sh run
#   ftc_run ROOT CMD             run a shell command in it, as root
#   ftc_cleanup                  kill its processes, unmount, remove ROOT

FTC_CACHE=${FTC_CACHE:-/var/tmp}
FTC_ROOTS=()

ftc_log()
{
	echo "# chroot: $*"
}

# the Debian mirror of this machine's apt sources (deb.debian.org by default)
ftc_mirror()
{
	local m
	m=$(sed -n 's/^URIs: *\(.*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
	[ -n "$m" ] || m=$(sed -n 's/^deb \(http[^ ]*\/debian\) .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
	echo "${m:-http://deb.debian.org/debian}"
}

# mount the kernel file systems a test needs in ROOT
ftc_mount_sys()
{
	local root=$1
	mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
	mountpoint -q "$root/sys" || mount -t sysfs sysfs "$root/sys" 2>/dev/null ||
		mount --rbind /sys "$root/sys"
	# private: where / is a shared mount, what is mounted below the bind
	# mount of /dev would otherwise appear in the host's /dev as well
	mountpoint -q "$root/dev" || { mount --bind /dev "$root/dev" && mount --make-private "$root/dev"; }
	mountpoint -q "$root/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null || true
	mountpoint -q "$root/dev/shm" || mount -t tmpfs shm "$root/dev/shm"
	mkdir -p "$root/run/netns"
	mountpoint -q "$root/run/netns" || mount -t tmpfs netns "$root/run/netns"
	cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}

# kill every process whose root is ROOT (started by this run), then unmount
# every mount point below ROOT, deepest first
ftc_umount_all()
{
	local root=$1 p r pids=() alive i m
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		[ "$r" = "$root" ] && pids+=("${p#/proc/}")
	done
	if [ ${#pids[@]} -gt 0 ]; then
		ftc_log "killing ${#pids[@]} leftover process(es) in $root: ${pids[*]}"
		kill -TERM "${pids[@]}" 2>/dev/null
		for i in 1 2 3 4 5; do
			sleep 1
			alive=()
			for p in "${pids[@]}"; do
				kill -0 "$p" 2>/dev/null && alive+=("$p")
			done
			pids=("${alive[@]}")
			[ ${#pids[@]} -eq 0 ] && break
		done
		[ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null
	fi
	# network namespaces left behind: their bind mounts live in run/netns
	for m in $(findmnt -rn -o TARGET | grep -F "$root/" | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
}

# ftc_base SUITE: /var/tmp/ft_orders-SUITE/base, made once
ftc_base()
{
	local suite=$1 dir=$FTC_CACHE/ft_orders-$1 mirror t0
	[ -f "$dir/base/.ft_complete" ] && return 0
	command -v debootstrap >/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || return 1
	[ -f "/usr/share/debootstrap/scripts/$suite" ] ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	mirror=$(ftc_mirror)
	mkdir -p "$dir"
	ftc_umount_all "$dir/base.tmp"
	ftc_rm "$dir/base.tmp"
	t0=$(date +%s)
	ftc_log "debootstrap $suite from $mirror into $dir/base (once; log $dir/debootstrap.log)"
	debootstrap --variant=minbase "$suite" "$dir/base.tmp" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
		{ ftc_log "debootstrap failed: tail of $dir/debootstrap.log"; tail -5 "$dir/debootstrap.log"; return 1; }
	rm -f "$dir/base.tmp/etc/apt/sources.list"
	cat >"$dir/base.tmp/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	# this machine's apt settings (proxy/mirror) and the npm registry's CA,
	# as fresh-machine gives them to its system
	cp /etc/apt/apt.conf.d/99artifact-registry "$dir/base.tmp/etc/apt/apt.conf.d/" 2>/dev/null || true
	mkdir -p "$dir/base.tmp/usr/local/share/host-ca"
	cp /etc/ssl/certs/ca-certificates.crt "$dir/base.tmp/usr/local/share/host-ca/bundle.crt"
	[ -f /root/.npmrc ] && mkdir -p "$dir/base.tmp/root" && cp /root/.npmrc "$dir/base.tmp/root/.npmrc"
	cp /etc/resolv.conf "$dir/base.tmp/etc/resolv.conf"
	# no "main" cluster on 5432 when a postgresql package is installed
	mkdir -p "$dir/base.tmp/etc/postgresql-common"
	echo "create_main_cluster = false" >"$dir/base.tmp/etc/postgresql-common/createcluster.conf"
	# no daemon starts at package installation in a chroot
	printf '#!/bin/sh\nexit 101\n' >"$dir/base.tmp/usr/sbin/policy-rc.d"
	chmod 755 "$dir/base.tmp/usr/sbin/policy-rc.d"
	ftc_mount_sys "$dir/base.tmp"
	chroot "$dir/base.tmp" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null && apt-get clean'
	local rc=$?
	ftc_umount_all "$dir/base.tmp"
	[ $rc -eq 0 ] || { ftc_log "apt-get in the new $suite system failed"; return 1; }
	touch "$dir/base.tmp/.ft_complete"
	mv "$dir/base.tmp" "$dir/base"
	ftc_log "base $suite ready in $(( $(date +%s) - t0 )) s"
}

# ftc_overlay ROOT LOWER... : mount an overlay of LOWER (top first) at ROOT
# with a fresh upper folder ROOT.upper; 1 when overlayfs is unavailable
ftc_overlay()
{
	local root=$1 lower
	shift
	lower=$(IFS=:; echo "$*")
	mkdir -p "$root" "$root.upper/u" "$root.upper/w"
	mount -t overlay overlay -o "lowerdir=$lower,upperdir=$root.upper/u,workdir=$root.upper/w" "$root" 2>/dev/null
}

# ftc_layer SUITE NAME KEY CMD: layer-NAME-KEY made by running CMD (a shell
# command) in a system made of base; older layer-NAME-* are removed.  With
# FTC_LAYER_TREE=DIR, CMD finds that working tree in /work/p (not kept).
ftc_layer()
{
	local suite=$1 name=$2 key=$3 cmd=$4 dir=$FTC_CACHE/ft_orders-$1 root t0 rc
	[ -f "$dir/layer-$name-$key/.ft_layer_complete" ] && return 0
	ftc_base "$suite" || return 1
	root=$dir/mk-$name
	ftc_umount_all "$root"
	umount "$root" 2>/dev/null
	ftc_rm "$root" "$root.upper"
	t0=$(date +%s)
	ftc_log "making layer $name ($key) of $suite"
	ftc_overlay "$root" "$dir/base" ||
		{ ftc_log "overlayfs unavailable: layers need it"; rm -rf "$root" "$root.upper"; return 1; }
	ftc_mount_sys "$root"
	[ -n "${FTC_LAYER_TREE:-}" ] && ftc_copy_tree "$FTC_LAYER_TREE" "$root/work/p"
	ftc_run "$root" "$cmd"
	rc=$?
	[ $rc -eq 0 ] && chroot "$root" apt-get clean
	ftc_umount_all "$root"
	umount "$root"
	if [ $rc -ne 0 ]; then
		ftc_log "layer $name failed (exit $rc)"
		ftc_rm "$root" "$root.upper"
		return 1
	fi
	ftc_rm "$root"
	# what the command left in /tmp, /run, /work is not part of the layer
	rm -rf "$root.upper/u/tmp" "$root.upper/u/run" "$root.upper/u/work" "$root.upper/u/var/tmp"
	touch "$root.upper/u/.ft_layer_complete"
	rm -rf "$dir"/layer-"$name"-*
	mv "$root.upper/u" "$dir/layer-$name-$key"
	rm -rf "$root.upper"
	ftc_log "layer $name ready in $(( $(date +%s) - t0 )) s"
}

# ftc_deps_layer SUITE SRC: the layer "deps" of SUITE: the packages that
# SRC/tests/setup/deps.sh installs there (PostgreSQL's major from the
# release), remade when deps.sh or pg_major.sh change
ftc_deps_layer()
{
	local key
	key=$(cat "$2/tests/setup/deps.sh" "$2/tests/lib/pg_major.sh" | sha256sum | cut -c1-12)
	[ -f "$FTC_CACHE/ft_orders-$1/layer-deps-$key/.ft_layer_complete" ] && return 0
	FTC_LAYER_TREE=$2 ftc_layer "$1" deps "$key" "cd /work/p && bash tests/setup/deps.sh"
}

# ftc_up SUITE ROOT [LAYER...]: a fresh system at ROOT: an overlay of the
# named layers (top first) over base, else a copy of them
ftc_up()
{
	local suite=$1 root=$2 dir=$FTC_CACHE/ft_orders-$1 lowers=() l
	shift 2
	ftc_base "$suite" || return 1
	for l in "$@"; do
		lowers+=("$(ls -d "$dir"/layer-"$l"-* | head -1)")
	done
	lowers+=("$dir/base")
	FTC_ROOTS+=("$root")
	if ! ftc_overlay "$root" "${lowers[@]}"; then
		ftc_log "overlayfs unavailable: copying the system (slower)"
		rm -rf "$root.upper"
		for ((l = ${#lowers[@]} - 1; l >= 0; l--)); do
			cp -a "${lowers[$l]}/." "$root/"
		done
	fi
	ftc_mount_sys "$root"
}

# ftc_run ROOT CMD: CMD (shell) as root in ROOT, with the npm CA of the host
ftc_run()
{
	chroot "$1" /usr/bin/env NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca/bundle.crt \
		HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/bash -c "$2" </dev/null
}

# ftc_rm DIR...: remove DIRs, unless something is still mounted below one
# (a bind mount of /dev would take the host's /dev with it)
ftc_rm()
{
	local d
	for d in "$@"; do
		[ -e "$d" ] || continue
		if findmnt -rn -o TARGET | grep -qF "$d"; then
			ftc_log "not removing $d: still mounted below it"
			continue
		fi
		rm -rf "$d"
	done
}

ftc_cleanup()
{
	local r
	for r in "${FTC_ROOTS[@]}"; do
		[ -d "$r" ] || continue
		ftc_umount_all "$r"
		mountpoint -q "$r" && { umount "$r" 2>/dev/null || umount -l "$r"; }
		if [ -n "${FT_KEEP_TMP:-}" ]; then
			ftc_log "kept $r"
		else
			ftc_rm "$r" "$r.upper"
		fi
	done
	FTC_ROOTS=()
}

# ftc_copy_tree SRC DEST: the working tree of SRC (tracked and untracked
# files, not ignored ones: no build products) into DEST
ftc_copy_tree()
{
	mkdir -p "$2"
	(cd "$1" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$2" -xf -
}
