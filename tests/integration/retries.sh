#!/bin/bash
# retries.sh: transient answers are retried under the same key.
#
#  - 503, 429 and 409 with Retry-After: retried no sooner than Retry-After
#    says (backoff alone would be <= 100 ms here), then paid;
#  - a gateway that keeps failing: after max_attempts the order fails and
#    its event becomes a dead letter;
#  - retry_dead_letter / retry_dead_letters requeue them and they get paid
#    under their original key.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '2s'" \
	"ft_orders.max_attempts = 3" "ft_orders.circuit_failure_threshold = 100" ||
	bail_out "the fake gateway or the server did not start"

# --- Retry-After -------------------------------------------------------
gw_faults '{"status_script":[503,429],"retry_after_s":1}'
psql_q "SELECT order_id FROM ft_orders.place_order('ra-1', 'cust', 500, 'EUR')" >/dev/null
ok $? "placed an order the gateway will refuse twice"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'ra-1'" 20
ok $? "the order is paid after the transient failures"
is "$(psql_q "SELECT string_agg(coalesce(http_status::text, '-') || ':' || outcome, ' ' ORDER BY attempt)
              FROM ft_orders.payment_attempts")" "503:retry 429:retry 200:paid" \
	"payment_attempts show 503, 429, then 200"
is "$(psql_q "SELECT attempts FROM ft_orders.orders WHERE idempotency_key = 'ra-1'")" "3" \
	"orders.attempts counts the three requests"
gaps=$(psql_q "SELECT string_agg(round(extract(epoch FROM started_at - prev)::numeric, 2)::text, ' ')
               FROM (SELECT started_at, lag(started_at) OVER (ORDER BY attempt) prev
                       FROM ft_orders.payment_attempts) s WHERE prev IS NOT NULL")
is "$(psql_q "SELECT bool_and(extract(epoch FROM started_at - prev) >= 0.95)
              FROM (SELECT started_at, lag(started_at) OVER (ORDER BY attempt) prev
                      FROM ft_orders.payment_attempts) s WHERE prev IS NOT NULL")" "t" \
	"Retry-After: 1 was honoured between attempts (gaps: $gaps s)"
gw_faults '{"status_script":[409],"retry_after_s":1}'
psql_q "SELECT order_id FROM ft_orders.place_order('ra-2', 'cust', 500, 'EUR')" >/dev/null
wait_until "SELECT status = 'paid' AND attempts = 2 FROM ft_orders.orders WHERE idempotency_key = 'ra-2'" 20
ok $? "a 409 is retried too"
is "$(gw_ledger charges)" "2" "ledger: one charge per order"

# --- attempts exhausted ------------------------------------------------
gw_faults '{"fail_rate":1.0,"fail_status":503}'
psql_q "SELECT count(*) FROM generate_series(1, 3) g, LATERAL ft_orders.place_order('ex-' || g, 'cust', 700, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 3 FROM ft_orders.orders WHERE idempotency_key LIKE 'ex-%' AND status = 'failed'" 20
ok $? "orders fail once max_attempts (3) transient failures were seen"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters WHERE attempts = 3 AND last_error LIKE 'gave up after 3 attempts: HTTP 503%'")" \
	"3" "their events are dead letters saying why"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'ex-%' AND attempts = 3")" "3" \
	"each made exactly three requests"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "nothing left in the outbox"

# --- requeue -------------------------------------------------------------
gw_faults reset
one=$(psql_q "SELECT d.event_id FROM ft_orders.dead_letters d JOIN ft_orders.orders o USING (order_id)
              WHERE o.idempotency_key = 'ex-1'")
is "$(psql_q "SELECT ft_orders.retry_dead_letter($one)")" "t" "retry_dead_letter requeues one"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'ex-1'" 20
ok $? "the requeued order is paid"
is "$(psql_q "SELECT ft_orders.retry_dead_letters()")" "2" "retry_dead_letters requeues the rest"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status <> 'paid'" 20
ok $? "all orders are paid"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'ex-%' AND attempts = 4")" "3" \
	"orders.attempts keeps counting across the requeue"
is "$(gw_ledger charges)" "5" "ledger: one charge per order"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters")" "0" "no dead letters left"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
