#!/bin/bash
# happy_path.sh: orders placed with a healthy gateway are all paid once.
#
# Asserts: every order ends 'paid' with the gateway's payment_id; the ledger
# holds one charge per order and no duplicates; each order has one
# payment_attempts row and one order_events row; a LISTEN session sees the
# NOTIFY; worker_status shows the workers with their counters;
# gateway_status counts the requests; the outbox is empty.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=200

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" ||
	bail_out "the fake gateway or the server did not start"

wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20
ok $? "two payment workers are running"

# a LISTEN session that stays open while orders are paid
psql -XAtq >"$FT_TMP/listen.out" 2>&1 <<SQL &
LISTEN ft_orders_events;
SELECT pg_sleep(4);
SELECT 1;
SQL
LISTEN_PID=$!
sleep 0.5

psql_q "SELECT count(*) FROM generate_series(1, $N) g,
        LATERAL ft_orders.place_order('happy-' || g, 'cust-' || (g % 7), 100 + g, 'eur',
                                      jsonb_build_array(jsonb_build_object('sku', 'A' || g, 'qty', 1)),
                                      'pm_card_visa')" >/dev/null
ok $? "placed $N orders"

wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "all $N orders are paid"

is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid' AND payment_id LIKE 'pay_%' AND attempts = 1")" "$N" \
	"each paid order carries the gateway's payment_id and one attempt"
is "$(gw_ledger charges)" "$N" "ledger: one charge per order"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicate charges"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox is empty"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE outcome = 'paid' AND http_status = 200")" "$N" \
	"one payment_attempts row per order"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE status = 'paid' AND detail = 'paid'")" "$N" \
	"one order_events row per order"

# the request body carried the order as docs/reference.md, "Wire protocol" describes
key=$(psql_q "SELECT payment_key FROM ft_orders.orders ORDER BY order_id LIMIT 1")
entry=$(curl -fsS "$GW_URL/ledger/$key")
like "$entry" '"charges": *1|"charges":1|"status": *200|"payment_id"' "ledger entry for one key: $entry"

wait "$LISTEN_PID"
like "$(cat "$FT_TMP/listen.out")" 'Asynchronous notification "ft_orders_events" with payload "\{"order_id" ?: ?[0-9]+, ?"status" ?: ?"paid"' \
	"LISTEN ft_orders_events sees the status change"
# the workers write the status change in their own statement (outbox.c);
# its payload must be the one ft_orders._change_status sends
first=$(psql_q "SELECT min(order_id) FROM ft_orders.orders")
want=$(psql_q "SELECT json_build_object('order_id', $first, 'status', 'paid'::ft_orders.order_status, 'attempts', 1)::text")
is "$(grep -c -F "payload \"$want\"" "$FT_TMP/listen.out")" "1" \
	"the workers' NOTIFY payload has _change_status's exact format: $want"

wait_until "SELECT sum(succeeded) = $N AND sum(processed) = $N FROM ft_orders.worker_status" 5
ok $? "worker_status counts $N payments"
is "$(psql_q "SELECT count(*) FROM ft_orders.worker_status WHERE worker_id IN (1, 2) AND pid IS NOT NULL")" "2" \
	"worker_status shows workers 1 and 2"
is "$(psql_q "SELECT circuit || ' ' || (requests >= $N) || ' ' || last_http_status || ' ' || (latency_p50_ms IS NOT NULL) FROM ft_orders.gateway_status")" \
	"closed true 200 true" "gateway_status: circuit closed, requests counted, latency known"
is "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker'")" "2" \
	"pg_stat_activity shows the payment workers by type"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
