# tap.sh: a few TAP helpers for bash test scripts (run by `prove`).
# Every assertion prints "ok N - desc" or "not ok N - desc" plus what was
# expected and what was seen.  Call done_testing at the end.

TAP_N=0
TAP_FAILED=0

ok()
{
	# ok CONDITION_EXIT_STATUS DESC   e.g.  ok $? "it worked"  or  [ x = y ]; ok $? "..."
	local rc=$1; shift
	TAP_N=$((TAP_N + 1))
	if [ "$rc" -eq 0 ]; then
		echo "ok $TAP_N - $*"
	else
		echo "not ok $TAP_N - $*"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

is()
{
	# is GOT EXPECTED DESC
	local got=$1 expected=$2; shift 2
	TAP_N=$((TAP_N + 1))
	if [ "$got" = "$expected" ]; then
		echo "ok $TAP_N - $*"
	else
		echo "not ok $TAP_N - $*"
		echo "#   expected: '$expected'"
		echo "#        got: '$got'"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

cmp_ok()
{
	# cmp_ok GOT OP EXPECTED DESC   (OP: -eq -ne -lt -le -gt -ge)
	local got=$1 op=$2 expected=$3; shift 3
	TAP_N=$((TAP_N + 1))
	if [ "$got" "$op" "$expected" ] 2>/dev/null; then
		echo "ok $TAP_N - $*"
	else
		echo "not ok $TAP_N - $*"
		echo "#   expected: $op $expected"
		echo "#        got: '$got'"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

like()
{
	# like GOT EXTENDED_REGEX DESC
	local got=$1 re=$2; shift 2
	TAP_N=$((TAP_N + 1))
	if [[ $got =~ $re ]]; then
		echo "ok $TAP_N - $*"
	else
		echo "not ok $TAP_N - $*"
		echo "#   expected to match: $re"
		echo "#                got: '$got'"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

diag()
{
	echo "# $*"
}

bail_out()
{
	echo "Bail out! $*"
	exit 255
}

done_testing()
{
	echo "1..$TAP_N"
	[ "$TAP_FAILED" -eq 0 ]
}
