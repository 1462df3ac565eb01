#!/bin/bash
# latency.sh: a commit of place_order wakes a worker at once.
#
# The workers are idle (their fallback poll is up to a second); each order
# must reach the gateway well before that: we compare the gateway's
# first_received_us for the order's key with a timestamp taken right after
# the commit.  The bound is loose (500 ms) on purpose; the figures are
# printed.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
	bail_out "workers did not become idle"

worst=-1000000
all=""
for i in $(seq 1 10); do
	sleep 0.3
	# one session: the order commits, then the clock is read
	out=$(psql -XAtq -v ON_ERROR_STOP=1 \
		-c "SELECT order_id FROM ft_orders.place_order('lat-$i', 'cust', 100, 'EUR')" \
		-c "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, payment_key
		      FROM ft_orders.orders WHERE idempotency_key = 'lat-$i'")
	line=$(echo "$out" | sed -n 2p)
	committed_us=${line%%|*}
	key=${line#*|}
	received_us=""
	for _ in $(seq 1 50); do
		received_us=$(curl -fsS "$GW_URL/ledger/$key" 2>/dev/null | jq -r '.first_received_us // empty')
		[ -n "$received_us" ] && break
		sleep 0.05
	done
	[ -n "$received_us" ] || received_us=$((committed_us + 10000000))
	d=$(((received_us - committed_us) / 1000))
	all="$all $d"
	[ "$d" -gt "$worst" ] && worst=$d
done
diag "commit -> gateway (ms):$all"
cmp_ok "$worst" -lt 500 "every order reached the gateway within 500 ms of its commit (worst $worst ms)"
wait_until "SELECT count(*) = 10 FROM ft_orders.orders WHERE status = 'paid'" 10
ok $? "all orders are paid"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
