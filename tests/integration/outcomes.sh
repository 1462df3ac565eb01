#!/bin/bash
# outcomes.sh: the gateway's permanent answers settle orders at once.
#
# 402 -> declined (reason kept), 400/422 -> failed with a dead letter, all
# after one request; 2xx -> paid.  None of them counts against the circuit
# breaker, none is retried.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.circuit_open_time = '1s'" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422],"bad_request_amount_minor":[400]}' ||
	bail_out "could not set faults"

psql_q "SELECT count(*) FROM (VALUES ('ok-1', 100), ('ok-2', 101), ('ok-3', 102), ('ok-4', 103), ('ok-5', 104),
                                      ('dec-1', 402), ('dec-2', 402), ('dec-3', 402),
                                      ('rej-1', 422), ('rej-2', 422),
                                      ('bad-1', 400), ('bad-2', 400)) v(k, amount),
        LATERAL ft_orders.place_order(v.k, 'cust', v.amount, 'EUR')" >/dev/null
ok $? "placed 12 orders"

wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "every order is settled"

is "$(psql_q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
              FROM (SELECT status, count(*) n FROM ft_orders.orders GROUP BY status) s")" \
	"paid:5 declined:3 failed:4" "5 paid, 3 declined, 4 failed"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE attempts <> 1")" "0" \
	"every order took exactly one request"
is "$(psql_q "SELECT DISTINCT last_error FROM ft_orders.orders WHERE status = 'declined'")" \
	"declined: card_declined" "declined orders keep the decline reason"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE status = 'declined' AND detail = 'declined: card_declined'")" \
	"3" "order_events explain the declines"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters d JOIN ft_orders.orders o USING (order_id)
              WHERE o.status = 'failed' AND d.attempts = 1")" "4" "each failed order has a dead letter"
is "$(psql_q "SELECT string_agg(DISTINCT d.last_error, ' | ' ORDER BY d.last_error) FROM ft_orders.dead_letters d")" \
	"HTTP 400 invalid_request: amount rejected | HTTP 422 unprocessable: amount rejected" \
	"dead letters say what the gateway answered"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE status = 'failed' AND detail LIKE 'failed: HTTP 4__ %'")" \
	"4" "order_events explain the failures"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox is empty"
is "$(psql_q "SELECT string_agg(outcome || ':' || http_status || ':' || n, ' ' ORDER BY outcome, http_status)
              FROM (SELECT outcome, http_status, count(*) n FROM ft_orders.payment_attempts GROUP BY 1, 2) s")" \
	"declined:402:3 failed:400:2 failed:422:2 paid:200:5" "payment_attempts: one row per request with its status"
is "$(gw_ledger charges)" "5" "ledger: only the paid orders were charged"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
is "$(gw_ledger requests)" "12" "ledger: one request per order, no retries"
wait_until "SELECT sum(declined) = 3 AND sum(failed) = 4 AND sum(succeeded) = 5 FROM ft_orders.worker_status" 5
ok $? "worker_status counts declined and failed"
is "$(psql_q "SELECT circuit || ' ' || consecutive_failures || ' ' || errors FROM ft_orders.gateway_status")" \
	"closed 0 0" "permanent answers do not count against the circuit"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
