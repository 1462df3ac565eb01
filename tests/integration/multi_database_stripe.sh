#!/bin/bash
# multi_database_stripe.sh: two databases of one server on one Stripe
# account (gateway_provider = 'stripe', the fake gateway's PaymentIntents
# shape): an order is only ever settled from its own PaymentIntent.
#
# Order ids are numbered per database, so order 1 of shop_a and order 1 of
# shop_b both reach Stripe as metadata[order_id] = 1; what tells them apart
# is metadata[payment_key] (docs/providers.md, "Reconciliation and
# refunds").  shop_a's order 1 is paid; shop_b's order 1 (another customer,
# another amount) is sent while the gateway cannot be reached, so its
# outcome is unknown and, once gateway_key_ttl has passed, it is looked up
# by a search on its payment_key (or its order_id without a payment_key).
# The search must not settle it from shop_a's intent: it must end charged
# under its own intent, for its own amount.
#
# Then an order whose first request went out without metadata[payment_key]
# (as sent before the payment_key was part of the request; made here by
# hand under the order's key): the worker's request under the same key is
# refused by the gateway (idempotency_error, parameters differ), and the
# order is re-sent exactly as first sent and settled from that intent, with
# no second charge.  And that old intent, which carries only an order_id,
# is not taken for the other database's order of the same id and another
# amount.  Last, another system's intent carrying an order's id, amount and
# currency (no payment_key) does not settle an order placed from 1.4 on:
# its look-up searches only its payment_key.
# About 30 s.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

TOKEN=sk_test_mdb

q()
{
	psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

intents() { curl -fsS "$GW_URL/v1/_intents" | jq -r ".$1"; }

# orders placed now reach no gateway: their outcome is unknown
gateway_unreachable()
{
	pg_set ft_orders.gateway_url "http://127.0.0.1:$(free_port)"
	sleep 1
}

# let gateway_key_ttl pass and bring the gateway back: an order whose
# outcome is unknown is then looked up (a search) before it is sent again
lookup_after_ttl()
{
	pg_set ft_orders.gateway_key_ttl '1s'
	sleep 1.5
	pg_set ft_orders.gateway_url "$GW_URL"
}

# paid_under_own DB ORDER OTHER_PI LABEL: once gateway_key_ttl has passed
# and the gateway is back, ORDER of DB is settled, paid, under an intent
# that is not OTHER_PI, and one intent was created for it (four tests)
paid_under_own()
{
	local db=$1 o=$2 other=$3 label=$4 pi before
	before=$(intents creates)
	lookup_after_ttl
	PGDATABASE=$db wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $o" 30
	ok $? "$label: $db's order $o is settled"
	pi=$(q "$db" "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o")
	is "$(q "$db" "SELECT status FROM ft_orders.orders WHERE order_id = $o")" "paid" "$label: $db's order $o is paid"
	ok "$([ -n "$pi" ] && [ "$pi" != "$other" ]; echo $?)" "$label: under an intent of its own ($pi), not $other"
	is "$(( $(intents creates) - before ))" "1" "$label: one intent created for $db's order $o"
}

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

# shop_a's order 1: paid, its intent carries metadata[order_id] = 1 and its
# payment_key
o_a=$(q shop_a "SELECT order_id FROM ft_orders.place_order('a-1', 'cust-a', 1700, 'EUR', '[]', 'pm_card_visa')")
PGDATABASE=shop_a wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o_a" 20
ok $? "shop_a: order $o_a paid"
pi_a=$(q shop_a "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o_a")
like "$pi_a" '^pi_' "shop_a: order $o_a carries its intent ($pi_a)"

# shop_b's order 1, sent while the gateway cannot be reached: outcome unknown
gateway_unreachable
o_b=$(q shop_b "SELECT order_id FROM ft_orders.place_order('b-1', 'cust-b', 999, 'EUR', '[]', 'pm_card_visa')")
is "$o_b" "$o_a" "shop_b's order has the same order_id ($o_b) as shop_a's"
PGDATABASE=shop_b wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE order_id = $o_b" 20
ok $? "shop_b: order $o_b was tried while the gateway could not be reached"
creates_before=$(intents creates)

# once gateway_key_ttl has passed, it is looked up by a search
lookup_after_ttl
PGDATABASE=shop_b wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $o_b" 30
ok $? "shop_b: order $o_b is settled"
is "$(q shop_b "SELECT status FROM ft_orders.orders WHERE order_id = $o_b")" "paid" "shop_b: order $o_b is paid"
pi_b=$(q shop_b "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o_b")
isnt=$([ -n "$pi_b" ] && [ "$pi_b" != "$pi_a" ]; echo $?)
ok "$isnt" "shop_b: order $o_b is paid under an intent of its own ($pi_b), not shop_a's ($pi_a)"
is "$(( $(intents creates) - creates_before ))" "1" "shop_b: one intent was created for it (its charge)"
diag "shop_b's attempts: $(q shop_b "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_b")"


# --- an order first sent without metadata[payment_key] ------------------------------
pg_set ft_orders.gateway_key_ttl '1d'
pg_set ft_orders.gateway_url "http://127.0.0.1:$(free_port)"
sleep 1
o_l=$(q shop_a "SELECT order_id FROM ft_orders.place_order('a-legacy', 'cust-l', 2100, 'EUR', '[]', 'pm_card_visa')")
PGDATABASE=shop_a wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE order_id = $o_l" 20
ok $? "legacy: shop_a's order $o_l was tried while the gateway could not be reached"
key_l=$(q shop_a "SELECT payment_key FROM ft_orders.orders WHERE order_id = $o_l")
# what the library sent before metadata[payment_key]: it reached the
# gateway, its reply was lost
legacy_body="amount=2100&currency=eur&metadata%5Border_id%5D=$o_l&metadata%5Bcustomer_id%5D=cust-l&payment_method=pm_card_visa&confirm=true&automatic_payment_methods%5Benabled%5D=true&automatic_payment_methods%5Ballow_redirects%5D=never"
pi_l=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $key_l" \
	-d "$legacy_body" "$GW_URL/v1/payment_intents" | jq -r .id)
like "$pi_l" '^pi_' "legacy: the order's intent exists at the gateway without metadata[payment_key] ($pi_l)"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $key_l" \
	-d "$legacy_body&metadata%5Bpayment_key%5D=$key_l" "$GW_URL/v1/payment_intents")" "400" \
	"legacy: (the gateway refuses the key with other parameters)"
creates_before=$(intents creates)
replays_before=$(intents replays)
pg_set ft_orders.gateway_url "$GW_URL"
PGDATABASE=shop_a wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $o_l" 30
ok $? "legacy: order $o_l is settled"
is "$(q shop_a "SELECT status || ' ' || payment_id FROM ft_orders.orders WHERE order_id = $o_l")" "paid $pi_l" \
	"legacy: order $o_l is paid under the intent of its first request"
like "$(q shop_a "SELECT string_agg(request || ':' || outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_l")" \
	'^(charge:retry:-,)+charge:retry:400,charge:paid:200$' \
	"legacy: refused once with the payment_key, then re-sent as first sent and replayed"
is "$(q shop_a "SELECT count(*) FROM ft_orders.payment_attempts WHERE order_id = $o_l AND starts_with(error, 'idempotency_error: the first request of this order went out without its payment_key')")" "1" \
	"legacy: the refusal is recorded as the mark of an order first sent without its payment_key"
is "$(( $(intents creates) - creates_before )) $(( $(intents replays) - replays_before ))" "0 1" \
	"legacy: no intent created, the first request replayed"
is "$(grep -c "order $o_l's first request went out without its payment_key; re-sending it in that form" "$PG_LOG")" "1" \
	"legacy: the worker says so in the log"

# --- that intent is not the other database's order of the same id ---------------------
gateway_unreachable
o_b2=$(q shop_b "SELECT order_id FROM ft_orders.place_order('b-2', 'cust-b2', 999, 'EUR', '[]', 'pm_card_visa')")
is "$o_b2" "$o_l" "legacy: shop_b's order $o_b2 has the id of shop_a's order first sent without a payment_key"
PGDATABASE=shop_b wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE order_id = $o_b2" 20
ok $? "legacy: shop_b's order $o_b2 was tried while the gateway could not be reached"
# it stands for an order placed before 1.4: only such an order's look-up
# also searches its order_id (orders.match_by_order_id)
q shop_b "UPDATE ft_orders.orders SET match_by_order_id = true WHERE order_id = $o_b2" >/dev/null
paid_under_own shop_b "$o_b2" "$pi_l" legacy
like "$(q shop_b "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_b2")" \
	'lookup:unknown,charge:paid$' "legacy: looked up (nothing of its own), then charged"
is "$(grep -c "e.g. $pi_l (2100 eur, another amount or currency than the order's)" "$PG_LOG")" "1" \
	"legacy: the look-up logged the intent it ignored and why"

# --- another system's intent with our order's id, amount and currency ---------------
# Any system on the account may create an intent whose metadata[order_id]
# is one of our order ids.  An order placed from 1.4 on carried its
# payment_key from its first request: its look-up does not search the
# order_id, and such an intent never settles it.
gateway_unreachable
o_f=$(q shop_a "SELECT order_id FROM ft_orders.place_order('a-foreign', 'cust-f', 3100, 'EUR', '[]', 'pm_card_visa')")
PGDATABASE=shop_a wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE order_id = $o_f" 20
ok $? "foreign: shop_a's order $o_f was tried while the gateway could not be reached"
pi_f=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: other-system-$o_f" \
	-d "amount=3100&currency=eur&metadata%5Border_id%5D=$o_f&payment_method=pm_card_visa&confirm=true" \
	"$GW_URL/v1/payment_intents" | jq -r .id)
like "$pi_f" '^pi_' "foreign: another system's intent $pi_f carries order_id $o_f, 3100 EUR, no payment_key"
paid_under_own shop_a "$o_f" "$pi_f" foreign

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
done_testing
