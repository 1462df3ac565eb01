#!/usr/bin/env bash
# setup.sh: the system `make test-pg-upgrade` runs in, made once by run.sh
# as a layer of the Debian 13 chroot (and remade when this file changes):
#   - Debian 13's PostgreSQL 17, installed, with what ft_orders and the fake
#     gateway need to build;
#   - Debian 12's PostgreSQL 15 (server, client, server headers and PGXS),
#     unpacked with dpkg -x under /opt/pg15, beside the two libraries it
#     needs that Debian 13 lacks (ICU 72, OpenLDAP 2.5); the old binaries
#     run with LD_LIBRARY_PATH=/opt/pg15/usr/lib/x86_64-linux-gnu.  Its
#     pg_config gives paths relative to where it lies, so PGXS builds
#     against /opt/pg15 and installs there.
# The Debian 12 packages come from the same mirror through a private apt
# configuration (/opt/bookworm-apt, removed at the end): the system's own
# apt never sees Debian 12.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	postgresql-17 postgresql-server-dev-17 make gcc libc6-dev pkg-config ca-certificates \
	curl jq procps util-linux \
	libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev uthash-dev libssl-dev >/dev/null

B=/opt/bookworm-apt
P=/opt/pg15
mirror=$(sed -n 's/^URIs: *\(.*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources | head -1)
mkdir -p "$B/lists/partial" "$B/cache/archives/partial" "$B/debs" "$P"
: >"$B/status"
cat >"$B/sources.list" <<EOT
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOT
apt12=(apt-get -qq -o "Dir::Etc::SourceList=$B/sources.list" -o Dir::Etc::SourceParts=/nonexistent
	-o "Dir::State::Lists=$B/lists" -o "Dir::Cache=$B/cache" -o "Dir::State::Status=$B/status")
"${apt12[@]}" update
# apt-get download writes as root into the current folder
(cd "$B/debs" && "${apt12[@]}" download postgresql-15 postgresql-client-15 postgresql-server-dev-15 \
	libicu72 libldap-2.5-0 2>&1 | grep -v 'unsandboxed' || true)
for d in "$B"/debs/*.deb; do
	dpkg -x "$d" "$P"
done
rm -rf "$B"

# every old binary pg_upgrade runs must find its libraries
missing=$(for b in postgres pg_ctl pg_controldata pg_resetwal initdb psql pg_config; do
	LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu ldd "$P/usr/lib/postgresql/15/bin/$b" | grep 'not found' || true
done | sort -u)
[ -z "$missing" ] || { echo "setup.sh: PostgreSQL 15 lacks libraries: $missing" >&2; exit 1; }
echo "setup.sh: $(LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu "$P/usr/lib/postgresql/15/bin/postgres" -V) in $P;" \
	"$(/usr/lib/postgresql/17/bin/postgres -V)"
