#!/bin/bash
# fuzz/run.sh (`make fuzz`): build the libFuzzer target over the reply
# classification (classify_fuzzer.c) with ASan + UBSan, replay every
# regression input in fuzz/regressions/, then fuzz for FT_FUZZ_SECONDS
# (default 600) from the seed corpus in fuzz/corpus/; then fuzz the whole
# record path through real workers (tests/integration/record_fuzz.sh,
# see step 3 below).
#
# Environment: FT_FUZZ_SECONDS, FT_FUZZ_JOBS (parallel workers, default 1),
# FT_FUZZ_OUT (work dir, default a temp dir: grown corpus, crash files, log).
# A crash is copied to fuzz/regressions/ so it replays on every later run.
# Exit status: 0 when no crash, 1 otherwise.

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$ROOT/tests/lib/pg_major.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$FT_PG_MAJOR/bin/pg_config}
SECONDS_TO_RUN=${FT_FUZZ_SECONDS:-600}
JOBS=${FT_FUZZ_JOBS:-1}
OUT=${FT_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ft_fuzz.XXXXXX")}
mkdir -p "$OUT/corpus" "$OUT/crashes"

if ! command -v clang >/dev/null 2>&1 || \
	! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
	bash "$ROOT/tests/setup/deps.sh" --fuzz || exit 1
fi
BIN="$OUT/classify_fuzzer"

echo "# building $BIN"
source "$HERE/classify_build.sh"
ft_classify_build "$BIN" "$HERE/classify_fuzzer.c" clang \
	-fsanitize=fuzzer,address,undefined -Wno-ignored-attributes -Wno-unused-command-line-argument ||
	{ echo "fuzz: build failed" >&2; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# 1. regressions: every input that ever crashed must pass now
shopt -s nullglob
regs=("$HERE"/regressions/*)
if [ ${#regs[@]} -gt 0 ]; then
	echo "# replaying ${#regs[@]} regression input(s)"
	if ! "$BIN" "${regs[@]}" >"$OUT/regressions.log" 2>&1; then
		cat "$OUT/regressions.log" >&2
		echo "fuzz: a regression input fails again" >&2
		exit 1
	fi
fi

# 2. fuzz.  -max_len bounds JSON nesting: the frontend parser has no stack
# depth check (the backend's has, see the integration tests).
echo "# fuzzing for ${SECONDS_TO_RUN}s (jobs=$JOBS), work dir $OUT"
args=(-max_total_time="$SECONDS_TO_RUN" -max_len=8192 -timeout=10 -rss_limit_mb=2048
	-print_final_stats=1 -artifact_prefix="$OUT/crashes/"
	-dict="$HERE/reply.dict")
if [ "$JOBS" -gt 1 ]; then
	args+=(-fork="$JOBS" -ignore_crashes=0)
fi
"$BIN" "${args[@]}" "$OUT/corpus" "$HERE/corpus" 2>&1 | tee "$OUT/fuzz.log" | \
	grep --line-buffered -E '^#[0-9]+ +(pulse|REDUCE|NEW|DONE)|^stat::|ERROR|SUMMARY|^==' | \
	awk '(NR % 50 == 1 || /DONE|stat::|ERROR|SUMMARY|==/) { print; fflush() }'
rc=${PIPESTATUS[0]}

crashes=("$OUT"/crashes/*)
for c in "${crashes[@]}"; do
	name="$HERE/regressions/$(basename "$c")"
	cp "$c" "$name"
	echo "fuzz: crash saved as regression input $name" >&2
done
echo "# last status line:"
grep --line-buffered -E '^#[0-9]+' "$OUT/fuzz.log" | tail -1
if [ "$rc" -ne 0 ] || [ ${#crashes[@]} -gt 0 ]; then
	echo "fuzz: FAILED (exit $rc, ${#crashes[@]} crash file(s)); log: $OUT/fuzz.log" >&2
	exit 1
fi
echo "fuzz: no crash in ${SECONDS_TO_RUN}s"

# 3. the whole record path: hostile replies through real workers into a
# UTF8 and a LATIN1 database, both providers, checked against the fake
# gateway's books (tests/integration/record_fuzz.sh, longer than in
# `make test`).  FT_RECORD_FUZZ_ROUNDS (default 5) rounds of
# FT_RECORD_FUZZ_ORDERS (default 200) orders per database and provider;
# FT_RECORD_FUZZ_ROUNDS=0 skips it.
if [ "${FT_RECORD_FUZZ_ROUNDS:-5}" -gt 0 ]; then
	echo "# record path: ${FT_RECORD_FUZZ_ROUNDS:-5} round(s) of ${FT_RECORD_FUZZ_ORDERS:-200} orders per database and provider"
	make -s -C "$ROOT/tests/fake_gateway" >/dev/null || { echo "fuzz: the fake gateway does not build" >&2; exit 1; }
	if ! FT_RECORD_FUZZ_ROUNDS=${FT_RECORD_FUZZ_ROUNDS:-5} FT_RECORD_FUZZ_ORDERS=${FT_RECORD_FUZZ_ORDERS:-200} \
		FT_RECORD_FUZZ_WAIT=${FT_RECORD_FUZZ_WAIT:-300} \
		prove -v --exec bash "$ROOT/tests/integration/record_fuzz.sh" >"$OUT/record_fuzz.log" 2>&1; then
		grep -E '^not ok|^#' "$OUT/record_fuzz.log" | head -40 >&2
		echo "fuzz: the record path broke an invariant; log: $OUT/record_fuzz.log" >&2
		exit 1
	fi
	grep -E '^# [0-9]+ orders' "$OUT/record_fuzz.log"
	echo "fuzz: the record path kept every invariant"
fi
