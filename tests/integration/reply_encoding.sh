#!/bin/bash
# reply_encoding.sh: a reply is judged the same in every server encoding
# (docs/reference.md, "Wire protocol"): the fields the workers read are
# ASCII, anything else in the body is ignored.  The fake gateway adds a
# "message" with \u escapes that LATIN1 cannot hold, a \u0000, and
# (Stripe) a "description" of the same to every reply; each order must
# end paid at its first request, in a UTF8 and in a LATIN1 database, for
# both providers, although the gateway charged it.  A 2xx reply that
# cannot be read is an answer (the gateway is up): it never reopens the
# circuit, and after max_attempts the order is looked up, never failed.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start "ft_orders.database = 'ftdb, latin'" "ft_orders.workers = 1" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '20ms'" "ft_orders.backoff_max = '100ms'" \
	"ft_orders.max_attempts = 3" ||
	bail_out "the fake gateway or the server did not start"
latin1_db latin || bail_out "could not create the LATIN1 database"
is "$(psql -XAtq -d latin -c "SHOW server_encoding")" "LATIN1" "database latin is LATIN1"

# "message":"\u4e2d\u6587 \u00e9 \u0000 \ud800" added to every reply
hex=$(printf '%s' '"message":"\u4e2d\u6587 \u00e9 \u0000 \ud800","description":"\u4e2d"' | od -An -tx1 -v | tr -d ' \n')
gw_faults "{\"reply_extra_hex\":\"$hex\"}" || bail_out "could not set faults"

for db in ftdb latin; do
	id=$(psql -XAtq -d "$db" -c "SELECT order_id FROM ft_orders.place_order('enc-$db', 'cust', 1234, 'EUR')")
	PGDATABASE=$db wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $id" 20
	is "$(psql -XAtq -d "$db" -c "SELECT status || ' ' || attempts || ' ' || (payment_id ~ '^pay_[0-9]+$') FROM ft_orders.orders WHERE order_id = $id")" \
		"paid 1 true" "$db: a 200 succeeded with a \\u4e2d message is paid at once"
	key=$(psql -XAtq -d "$db" -c "SELECT payment_key FROM ft_orders.orders WHERE order_id = $id")
	is "$(curl -fsS "$GW_URL/ledger/$key" | jq -r '.charges')" "1" "$db: the gateway charged it once"
done
cmp_ok "$(gw_ledger extra_replies)" -ge 2 "the gateway added the escapes to its replies"

# a 2xx reply that cannot be read (the POST's: the look-up's is not
# spoiled): retried under the same key, then looked up, never failed
gw_faults '{"reply_extra_hex":"2c2c2c"}' || bail_out "could not set faults"
for db in ftdb latin; do
	id=$(psql -XAtq -d "$db" -c "SELECT order_id FROM ft_orders.place_order('unreadable-$db', 'cust', 1300, 'EUR')")
	PGDATABASE=$db wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $id" 20
	is "$(psql -XAtq -d "$db" -c "SELECT status FROM ft_orders.orders WHERE order_id = $id")" "paid" \
		"$db: charged behind unreadable replies: paid, not failed"
	is "$(psql -XAtq -d "$db" -c "SELECT string_agg(request || ':' || outcome, ' ' ORDER BY attempt, started_at) FROM ft_orders.payment_attempts WHERE order_id = $id")" \
		"charge:retry charge:retry charge:retry lookup:paid" \
		"$db: three unreadable replies, then a look-up instead of giving up"
	is "$(psql -XAtq -d "$db" -c "SELECT count(*) FROM ft_orders.dead_letters")" "0" "$db: no dead letter"
done
gw_faults '{"reply_extra_hex":null}'

# the circuit: opened by a gateway that is down; its probes then get 2xx
# replies that cannot be read: answers, so the circuit closes
psql_q "ALTER SYSTEM SET ft_orders.circuit_failure_threshold = 3" >/dev/null
psql_q "ALTER SYSTEM SET ft_orders.circuit_open_time = '1s'" >/dev/null
psql_q "ALTER SYSTEM SET ft_orders.max_attempts = 100" >/dev/null
pg_reload
sleep 0.5
gw_faults '{"down":true}'
place_orders circuit 5 2000
wait_until "SELECT circuit = 'open' FROM ft_orders.gateway_status" 20
ok $? "the circuit opens while the gateway is down"
gw_faults '{"down":false,"reply_extra_hex":"2c2c2c"}'
wait_until "SELECT circuit = 'closed' FROM ft_orders.gateway_status" 20
ok $? "probes answered with unreadable 2xx replies close the circuit"
# the 5 orders go on getting unreadable 2xx replies (max_attempts 100,
# backoff at most 100 ms): dozens in 2 s, none of them a failure
sleep 2
is "$(psql_q "SELECT circuit FROM ft_orders.gateway_status")" "closed" \
	"... and the unreadable replies that follow never open it again"
gw_faults '{"reply_extra_hex":null}'
wait_until "SELECT count(*) = 5 FROM ft_orders.orders WHERE idempotency_key LIKE 'circuit-%' AND status = 'paid'" 30
ok $? "the orders are paid once the replies are readable"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
done_testing
