#!/usr/bin/env bash
# bench/ab.sh A B: `make bench-ab`, two commits of this repository side by
# side (bench/README.md, "Side by side").  Each commit is checked out in a
# temporary worktree, its extension built and installed into a private,
# relocated copy of this machine's PostgreSQL (so neither touches the
# system's), and measured by THIS tree's bench/run.sh, fake gateway and
# test library (one instrument for both), interleaved A B A B ... so that
# drift of the machine falls on both.  Then one table of the chosen
# figures, round by round.
#
#   FT_AB_ROUNDS (2)  rounds of A then B
#   FT_AB_PARTS ("intake drain")  FT_BENCH for each run; the drain part
#       runs without its fault drains (FT_BENCH_DRAIN_FAULTS=0) unless
#       FT_AB_FAULTS=1
#   FT_BENCH_SCALE, FT_BENCH_DRAIN_N, ... are passed on to bench/run.sh
#
# Output: bench/results/ab_A_B/{A1,B1,A2,B2,...}.{json,log}.  Root, like
# `make bench`; the worktrees and PostgreSQL copies are removed at exit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/lib/pg_major.sh"
[ $# -eq 2 ] || { echo "usage: bench/ab.sh A B (two commits)" >&2; exit 2; }
ROUNDS=${FT_AB_ROUNDS:-2}
PARTS=${FT_AB_PARTS:-intake drain}
FAULTS=${FT_AB_FAULTS:-0}
M=$FT_PG_MAJOR
declare -A REF
REF[A]=$(git -C "$ROOT" rev-parse --short "$1") || exit 2
REF[B]=$(git -C "$ROOT" rev-parse --short "$2") || exit 2
OUT=$ROOT/bench/results/ab_${REF[A]}_${REF[B]}
WORK=$(mktemp -d /var/tmp/ft_orders-ab.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$OUT"

cleanup()
{
	for n in A B; do
		git -C "$ROOT" worktree remove --force "$WORK/tree-$n" >/dev/null 2>&1
	done
	git -C "$ROOT" worktree prune
	rm -rf "$WORK"
}
trap cleanup EXIT

for n in A B; do
	tree=$WORK/tree-$n pg=$WORK/pg-$n
	git -C "$ROOT" worktree add --detach "$tree" "${REF[$n]}" >/dev/null 2>&1 ||
		{ echo "ab: cannot check out ${REF[$n]}" >&2; exit 1; }
	# the instrument: this tree's
	for d in bench tests/fake_gateway tests/lib tests/setup tests/integration/harness; do
		rm -rf "${tree:?}/$d"
		cp -r "$ROOT/$d" "$tree/$d"
	done
	make -s -C "$tree/tests/fake_gateway" clean >/dev/null 2>&1
	# the subject: a relocated PostgreSQL of its own (binaries, share,
	# server headers), so that `make install` writes only there
	mkdir -p "$pg/usr/lib/postgresql" "$pg/usr/share/postgresql" "$pg/usr/include/postgresql"
	cp -a "/usr/lib/postgresql/$M" "$pg/usr/lib/postgresql/"
	cp -a "/usr/share/postgresql/$M" "$pg/usr/share/postgresql/"
	cp -a "/usr/include/postgresql/$M" "$pg/usr/include/postgresql/"
	rm -f "$pg/usr/share/postgresql/$M/extension/"ft_orders*
	chmod 755 "$pg"
done

for round in $(seq 1 "$ROUNDS"); do
	for n in A B; do
		echo "# ab: round $round, $n = ${REF[$n]}, $(date +%T)"
		(
			cd "$WORK/tree-$n" &&
			PG_CONFIG=$WORK/pg-$n/usr/lib/postgresql/$M/bin/pg_config \
			FT_PG_BIN=$WORK/pg-$n/usr/lib/postgresql/$M/bin \
			FT_BENCH="$PARTS" FT_BENCH_DRAIN_FAULTS=$FAULTS \
			FT_BENCH_OUT=$OUT/$n$round.json \
			bash bench/run.sh >"$OUT/$n$round.log" 2>&1
		) || { echo "ab: the run of $n in round $round failed: $OUT/$n$round.log" >&2; exit 1; }
	done
done

python3 - "$OUT" "$ROUNDS" "${REF[A]}" "${REF[B]}" <<'EOF'
import json, re, sys
out, rounds, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {}
for n in 'AB':
    for r in range(1, rounds + 1):
        text = open(f'{out}/{n}{r}.log').read()
        runs[n, r] = {m.group(1): m.group(2) for m in
                      re.finditer(r'^\| (\w+)\s*\|\s*([0-9.]+)\s*\|', text, re.M)}
names = [k for k in runs['A', 1] if k in runs['B', 1]]
print(f'| figure | A = {a}, rounds 1..{rounds} | B = {b}, rounds 1..{rounds} |')
print('|---|---|---|')
for k in names:
    row = [' / '.join(runs[n, r].get(k, '-') for r in range(1, rounds + 1)) for n in 'AB']
    print(f'| `{k}` | {row[0]} | {row[1]} |')
EOF
