#!/bin/bash
# crash_inflight.sh: 5,000 orders in flight against a gateway that loses
# replies (it charges, then never answers: timeout_rate), and three blows
# in a row -- SIGKILL of a payment worker, SIGKILL of the launcher, an
# immediate shutdown of the server -- then a start.  Afterwards every
# order settles exactly once: all paid, ledger duplicates 0, charges =
# paid orders, one 'paid' event per order, and at every check no outbox
# row is orphaned (each outbox row belongs to a pending order and each
# pending order has exactly one outbox row).
#
# FT_CRASH_ORDERS changes the number of orders (default 5000).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=${FT_CRASH_ORDERS:-5000}

# outbox_invariant: "orphans missing" in one snapshot -- outbox rows whose
# order is not pending, and pending orders without exactly one outbox row
outbox_invariant()
{
	psql_q "SELECT (SELECT count(*) FROM ft_orders.outbox b
	                LEFT JOIN ft_orders.orders o USING (order_id)
	                WHERE o.status IS DISTINCT FROM 'pending')
	       || ' ' ||
	       (SELECT count(*) FROM ft_orders.orders o
	        WHERE o.status = 'pending'
	          AND (SELECT count(*) FROM ft_orders.outbox b WHERE b.order_id = o.order_id) <> 1)"
}

# wait_workers: both payment workers and the launcher are up again
wait_workers()
{
	wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state NOT IN ('starting', 'stopped')" 30 &&
		wait_until "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ft_orders launcher'" 30
}

gw_start || bail_out "fake gateway did not start"
pg_start "ft_orders.gateway_url = '$GW_URL'" \
	"ft_orders.request_timeout = '400ms'" "ft_orders.connect_timeout = '200ms'" \
	"ft_orders.lease_timeout = '1s'" \
	"ft_orders.backoff_base = '20ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 1000" \
	"ft_orders.max_in_flight = 64" "restart_after_crash = on" ||
	bail_out "server did not start"
# lost replies: 5 % of the requests are charged, then hang past the
# timeout; 250 ms of latency keeps the drain slow enough (about 500/s)
# for all three blows to land mid-flight
gw_faults '{"timeout_rate":0.05,"hang_ms":600,"latency_ms":250}' || bail_out "could not set faults"
wait_workers || bail_out "workers did not start"
t0=$(date +%s)

psql_q "SELECT count(*) FROM generate_series(1, $N) g,
        LATERAL ft_orders.place_order('crash-' || g, 'cust-' || (g % 97), 100 + g, 'EUR')" >/dev/null
ok $? "placed $N orders"

# 1. SIGKILL of a payment worker with requests in flight
wait_until "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status" 10
ok $? "requests are in flight"
victim=$(psql_q "SELECT pid FROM ft_orders.worker_status WHERE in_flight > 0 ORDER BY in_flight DESC LIMIT 1")
kill -9 "$victim"
ok $? "SIGKILL payment worker $victim"
sleep 0.5
wait_workers
ok $? "the workers are back after the crash restart"
is "$(outbox_invariant)" "0 0" "after the worker's crash: no orphaned outbox row, no pending order without one"
paid1=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")
diag "paid after the worker kill: $paid1 of $N"

# 2. SIGKILL of the launcher
wait_until "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status" 10
launcher=$(psql_q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ft_orders launcher'")
[ -n "$launcher" ] && kill -9 "$launcher"
ok $? "SIGKILL launcher ${launcher:-(not found)}"
sleep 0.5
wait_workers
ok $? "launcher and workers are back"
is "$(outbox_invariant)" "0 0" "after the launcher's crash: no orphaned outbox row"
paid2=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")
diag "paid after the launcher kill: $paid2 of $N"

# 3. immediate shutdown mid-flight, then start
wait_until "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status" 10
pg_restart_immediate
ok $? "immediate shutdown and start"
wait_workers
is "$(outbox_invariant)" "0 0" "after the immediate shutdown: no orphaned outbox row"
paid3=$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")
diag "paid after the immediate restart: $paid3 of $N"
cmp_ok "$paid3" -lt "$N" "the blows landed while orders were still pending"

# settle
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 75
ok $? "every order settled"
is "$(psql_q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
              FROM (SELECT status, count(*) n FROM ft_orders.orders GROUP BY status) s")" \
	"paid:$N" "all $N orders are paid"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"
is "$(gw_ledger charges)" "$N" "ledger: charges = paid orders"
is "$(psql_q "SELECT count(*) FROM (SELECT order_id FROM ft_orders.order_events WHERE status = 'paid'
                                     GROUP BY order_id HAVING count(*) <> 1) x")" "0" \
	"exactly one 'paid' event per order"
cmp_ok "$(gw_ledger replays)" -gt 0 "lost replies and crashed requests were re-sent and replayed, not charged again"
is "$(outbox_invariant)" "0 0" "at the end: no orphaned outbox row"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox is empty"
# found by the soak: parallel workers restore settings in any order, and
# lease_timeout (1s here) was checked against the default request_timeout
# (10s) before request_timeout was restored, failing every parallel query
# (no check hook compares the two any more, see extension/guc.c; kept as a
# guard against a cross-setting check coming back)
out=$(psql -XAtq -v ON_ERROR_STOP=1 -c "SET max_parallel_workers_per_gather = 2" -c "SET parallel_setup_cost = 0" \
	-c "SET parallel_tuple_cost = 0" -c "SET min_parallel_table_scan_size = 0" \
	-c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT count(*) FROM ft_orders.orders" 2>&1)
like "$out" "Workers Launched: [1-9]" "a parallel query works with lease_timeout below the default request_timeout"
is "$(grep -c 'terminated by signal 9' "$PG_LOG")" "2" "the only crashes are the two SIGKILLs we sent"
diag "elapsed $(( $(date +%s) - t0 ))s; ledger: $(curl -fsS "$GW_URL/ledger" | tr -d '\n' | cut -c1-200)"

done_testing
