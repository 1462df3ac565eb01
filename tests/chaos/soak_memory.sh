#!/bin/bash
# soak_memory.sh (`make soak-memory`, not in `make test`): payment-worker memory stays
# flat across FT_SOAK_ORDERS payments (default 200,000) with 20 % faults
# (15 % HTTP 503, 5 % garbage bodies).
#
# RSS is read from /proc/PID/status of each payment worker after a warm-up
# (the first 5 % of the orders: libcurl's handle pool, connection cache,
# catalog and plan caches fill up there) and at the end, once everything
# is settled.  The figure judged is the process-private part, RssAnon +
# RssFile: VmRSS also counts the shared_buffers pages a worker has touched
# (RssShmem), which grows towards shared_buffers without any leak; it is
# printed for context.  Fails (exit 1) when a worker grew more than
# FT_SOAK_MAX_GROWTH_KB (default 2048), when a worker restarted, or when a
# payment was lost or doubled.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=${FT_SOAK_ORDERS:-200000}
BATCH=${FT_SOAK_BATCH:-10000}
MAX_KB=${FT_SOAK_MAX_GROWTH_KB:-2048}
WARMUP=$((N / 20))
[ "$WARMUP" -lt "$BATCH" ] && WARMUP=$BATCH

gw_start || bail_out "fake gateway did not start"
pg_start "ft_orders.gateway_url = '$GW_URL'" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '10ms'" "ft_orders.backoff_max = '100ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "server did not start"
gw_faults '{"fail_rate":0.15,"fail_status":503,"garbage_rate":0.05}' || bail_out "could not set faults"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20 ||
	bail_out "workers did not start"
PIDS=$(psql_q "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status")

# mem PID: "private_kB vmrss_kB"
mem()
{
	awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} /^VmRSS:/ {v=$2} END {print a+f, v}' "/proc/$1/status"
}

placed=0
place_batch()
{
	local n=$1
	psql_q "SELECT count(*) FROM generate_series($((placed + 1)), $((placed + n))) g,
	        LATERAL ft_orders.place_order('soak-' || g, 'cust-' || (g % 1000), 100 + g % 5000, 'EUR')" >/dev/null ||
		bail_out "place_order failed at $placed"
	placed=$((placed + n))
}

drain()
{
	# drain LIMIT SECONDS: wait until at most LIMIT orders are pending
	wait_until "SELECT count(*) <= $1 FROM ft_orders.orders WHERE status = 'pending'" "$2"
}

t0=$(date +%s)
while [ "$placed" -lt "$WARMUP" ]; do
	place_batch "$BATCH"
	drain 0 300 || bail_out "warm-up did not drain"
done
declare -A START
for p in $PIDS; do
	START[$p]=$(mem "$p")
	diag "worker $p after warm-up ($placed payments): private ${START[$p]% *} kB, VmRSS ${START[$p]#* } kB"
done

while [ "$placed" -lt "$N" ]; do
	place_batch $((N - placed < BATCH ? N - placed : BATCH))
	drain "$BATCH" 300 || bail_out "the queue does not drain"
	diag "$placed placed, $(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'") paid, $(( $(date +%s) - t0 ))s"
done
drain 0 600
ok $? "all $N orders settled"
sleep 2

is "$(psql_q "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status")" "$PIDS" \
	"the payment workers never restarted"
for p in $PIDS; do
	end=$(mem "$p")
	growth=$(( ${end% *} - ${START[$p]% *} ))
	diag "worker $p at the end: private ${end% *} kB, VmRSS ${end#* } kB"
	echo "# RSS growth of payment worker $p over $((N - WARMUP)) payments: ${growth} kB private (VmRSS $(( ${end#* } - ${START[$p]#* } )) kB incl. shared buffers)"
	cmp_ok "$growth" -le "$MAX_KB" "payment worker $p: private RSS growth ${growth} kB <= $MAX_KB kB"
done

is "$(psql_q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
              FROM (SELECT status, count(*) n FROM ft_orders.orders GROUP BY status) s")" \
	"paid:$N" "all $N orders are paid"
is "$(gw_ledger charges)" "$N" "ledger: one charge per order"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
cmp_ok "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'retry'")" -gt $((N / 10)) \
	"faults were injected and retried"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
diag "elapsed $(( $(date +%s) - t0 ))s; $(curl -fsS "$GW_URL/ledger" | tr -d '\n' | cut -c1-240)"

done_testing
