#!/usr/bin/env bash
# build.sh: build and install the extension, build the fake gateway.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/pg_major.sh
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
# warnings are errors here (the Makefile leaves them warnings for packagers)
make -s WERROR=1 PG_CONFIG="$PG_CONFIG" >/dev/null
if [ "$(id -u)" -eq 0 ]; then
	make -s WERROR=1 PG_CONFIG="$PG_CONFIG" install >/dev/null
else
	sudo make -s WERROR=1 PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
make -s -C tests/fake_gateway >/dev/null
