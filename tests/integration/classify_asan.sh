#!/bin/bash
# classify_asan.sh: the pure parts of the payment workers under
# AddressSanitizer and UBSan (reply classification, Retry-After, request
# body, backoff), with a fuzz loop.  See harness/classify_harness.c; the
# build command and the backend stand-ins are shared with the libFuzzer
# target (fuzz/classify_build.sh, fuzz/classify_common.c).

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/ft_classify.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

LIBDIR=$($PG_CONFIG --pkglibdir)
if [ ! -f "$LIBDIR/libpgcommon.a" ] || ! command -v gcc >/dev/null; then
	echo "1..0 # SKIP needs gcc and $LIBDIR/libpgcommon.a"
	exit 0
fi
source "$ROOT/fuzz/classify_build.sh"
if ! ft_classify_build "$OUT/classify_harness" "$HERE/harness/classify_harness.c" gcc \
	-fsanitize=address,undefined -Wno-unused-label 2>"$OUT/build.log"; then
	echo "not ok 1 - the sanitizer harness builds"
	sed 's/^/# /' "$OUT/build.log"
	echo "1..1"
	exit 1
fi

ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	"$OUT/classify_harness" "${FT_FUZZ_ITERATIONS:-200000}"
