#!/bin/bash
# multi_database_stripe.sh: two databases of one server on one Stripe
# account (gateway_provider = 'stripe', the fake gateway's PaymentIntents
# shape): an order is only ever settled from its own PaymentIntent.
#
# Order ids are numbered per database, so order 1 of shop_a and order 1 of
# shop_b both reach Stripe as metadata[order_id] = 1.  shop_a's order 1 is
# paid; shop_b's order 1 (another customer, another amount) is sent while
# the gateway cannot be reached, so its outcome is unknown and, once
# gateway_key_ttl has passed, it is looked up by a search on
# metadata[order_id] (docs/providers.md, "Reconciliation and refunds").
# The search must not settle it from shop_a's intent: it must end charged
# under its own intent, for its own amount.
# About 15 s.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

TOKEN=sk_test_mdb

q()
{
	psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

intents() { curl -fsS "$GW_URL/v1/_intents" | jq -r ".$1"; }

gw_start || bail_out "the fake gateway did not start"
PGDATA=$FT_TMP/pgdata
PG_LOG=$FT_TMP/postgres.log
pg_init "$PGDATA" "shared_preload_libraries = 'ft_orders'" \
	"ft_orders.database = 'shop_a, shop_b'" "ft_orders.workers = 1" \
	"max_worker_processes = 12" \
	"ft_orders.gateway_provider = 'stripe'" "ft_orders.gateway_token = '$TOKEN'" \
	"ft_orders.gateway_url = '$GW_URL'" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '100ms'" "ft_orders.backoff_max = '400ms'" \
	"ft_orders.max_attempts = 100" "ft_orders.circuit_failure_threshold = 1000" ||
	bail_out "initdb failed"
PGPORT=$PG_INIT_PORT
pg_start_again || { tail -n 30 "$PG_LOG" >&2; bail_out "the server did not start"; }
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
for db in shop_a shop_b; do
	q postgres "CREATE DATABASE $db" >/dev/null && q "$db" "CREATE EXTENSION ft_orders" >/dev/null ||
		bail_out "could not create $db with the extension"
done
for db in shop_a shop_b; do
	PGDATABASE=$db wait_until "SELECT count(*) = 1 FROM ft_orders.worker_status WHERE state = 'idle'" 20 ||
		bail_out "$db: the payment worker did not start"
done

# shop_a's order 1: paid, its intent carries metadata[order_id] = 1
o_a=$(q shop_a "SELECT order_id FROM ft_orders.place_order('a-1', 'cust-a', 1700, 'EUR', '[]', 'pm_card_visa')")
PGDATABASE=shop_a wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o_a" 20
ok $? "shop_a: order $o_a paid"
pi_a=$(q shop_a "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o_a")
like "$pi_a" '^pi_' "shop_a: order $o_a carries its intent ($pi_a)"

# shop_b's order 1, sent while the gateway cannot be reached: outcome unknown
pg_set ft_orders.gateway_url "http://127.0.0.1:$(free_port)"
sleep 1
o_b=$(q shop_b "SELECT order_id FROM ft_orders.place_order('b-1', 'cust-b', 999, 'EUR', '[]', 'pm_card_visa')")
is "$o_b" "$o_a" "shop_b's order has the same order_id ($o_b) as shop_a's"
PGDATABASE=shop_b wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE order_id = $o_b" 20
ok $? "shop_b: order $o_b was tried while the gateway could not be reached"
creates_before=$(intents creates)

# once gateway_key_ttl has passed, it is looked up by a search
pg_set ft_orders.gateway_key_ttl '1s'
sleep 1.5
pg_set ft_orders.gateway_url "$GW_URL"
PGDATABASE=shop_b wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $o_b" 30
ok $? "shop_b: order $o_b is settled"
is "$(q shop_b "SELECT status FROM ft_orders.orders WHERE order_id = $o_b")" "paid" "shop_b: order $o_b is paid"
pi_b=$(q shop_b "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o_b")
isnt=$([ -n "$pi_b" ] && [ "$pi_b" != "$pi_a" ]; echo $?)
ok "$isnt" "shop_b: order $o_b is paid under an intent of its own ($pi_b), not shop_a's ($pi_a)"
is "$(( $(intents creates) - creates_before ))" "1" "shop_b: one intent was created for it (its charge)"
diag "shop_b's attempts: $(q shop_b "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_b")"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
done_testing
