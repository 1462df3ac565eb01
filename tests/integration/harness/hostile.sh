# hostile.sh: start harness/hostile_gateway.py from a test script.
#
#   source "$(dirname "$0")/harness/hostile.sh"    (after ../lib/common.sh)
#   hostile_start MODE [LIFETIME_SECONDS [blackhole]] || bail_out "..."
#
# MODE is replies, network or circuit (see hostile_gateway.py).  Sets
# good_url (the hostile responder) and, with "blackhole", hole_url (a
# listener that never accepts).  The responder is stopped by the EXIT
# trap and exits by itself after LIFETIME_SECONDS (default 100); its
# output goes to $FT_TMP/hostile.log.

hostile_start()
{
	local mode=$1 lifetime=${2:-100} portfile=$FT_TMP/hostile.port holefile=""
	local args=("$portfile" "$mode")

	if [ "${3:-}" = blackhole ]; then
		holefile=$FT_TMP/blackhole.port
		args+=("$holefile")
	fi
	FT_HOSTILE_LIFETIME=$lifetime python3 "$(dirname "${BASH_SOURCE[0]}")/hostile_gateway.py" \
		"${args[@]}" >"$FT_TMP/hostile.log" 2>&1 &
	FT_PIDS+=("$!")
	for _ in $(seq 1 100); do
		[ -s "$portfile" ] && { [ -z "$holefile" ] || [ -s "$holefile" ]; } && break
		sleep 0.05
	done
	[ -s "$portfile" ] && { [ -z "$holefile" ] || [ -s "$holefile" ]; } || return 1
	good_url="http://127.0.0.1:$(cat "$portfile")"
	[ -z "$holefile" ] || hole_url="http://127.0.0.1:$(cat "$holefile")"
}
