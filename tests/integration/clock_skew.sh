#!/bin/bash
# clock_skew.sh: orders stamped by a clock that was ahead and has gone back
# are not parked until the real clock catches up.
#
# place_order stamps a new outbox event with the committing backend's now();
# a clock an hour ahead (then corrected) leaves such events an hour in the
# future.  The workers make every event scheduled further ahead than
# anything they schedule themselves (max(backoff_max, lease_timeout) + 60 s)
# due at once, with one LOG line; an event scheduled within that horizon
# (a legitimate backoff) keeps its time.  Each order is charged once.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=30

gw_start || bail_out "fake gateway did not start"
# no gateway URL yet: the orders wait in the outbox untouched
pg_start "ft_orders.gateway_url = ''" \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '2s'" ||
	bail_out "server did not start"

place_orders skew $N
ok $? "placed $N orders"
psql_q "SELECT count(*) FROM ft_orders.place_order('near', 'cust', 99, 'EUR')" >/dev/null
# as if placed while the clock was an hour ahead
psql_q "UPDATE ft_orders.outbox SET next_attempt_at = now() + interval '1 hour', created_at = now() + interval '1 hour'
         WHERE order_id IN (SELECT order_id FROM ft_orders.orders WHERE idempotency_key LIKE 'skew-%')" >/dev/null
# within the horizon (max(2 s, 3 s) + 60 s): a backoff the workers could have set
psql_q "UPDATE ft_orders.outbox SET next_attempt_at = now() + interval '45 seconds'
         WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'near')" >/dev/null
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox WHERE next_attempt_at > now() + interval '30 seconds'")" \
	"$((N + 1))" "every event is scheduled ahead"

pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE idempotency_key LIKE 'skew-%' AND status = 'paid'" 30
ok $? "the $N orders stamped an hour ahead are paid at once"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'near'")" "pending" \
	"the order scheduled 45 s ahead (within the horizon) keeps its time"
cmp_ok "$(psql_q "SELECT extract(epoch FROM next_attempt_at - now())::int FROM ft_orders.outbox WHERE order_id = (SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'near')")" -gt 20 \
	"... its next_attempt_at is unchanged"
like "$(grep -m1 'were scheduled more than' "$PG_LOG")" \
	"LOG: +payment worker: $N outbox event\(s\) were scheduled more than 63 s ahead; they are due now" \
	"one LOG line names the rescheduled events"
is "$(gw_ledger charges)" "$N" "ledger: one charge per rescheduled order"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
