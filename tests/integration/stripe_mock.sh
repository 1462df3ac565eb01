#!/bin/bash
# stripe_mock.sh: the stripe_charges provider against stripe-stateful-mock,
# a third-party Stripe mock from the npm registry (tests/stripe_mock; its
# real idempotency: same key + same body replays, other body -> 400
# idempotency_error; a 429 is not stored under the key, a 500 is).
#
# Paid (tok_visa), declined (tok_chargeDeclined -> 402 card_error),
# retried-then-paid (tok_429|tok_429|tok_visa), a 500 that Stripe replays
# under the key (never charged, dead letter), no duplicate charge after a
# lost reply (the mock's reply held back past request_timeout), an
# idempotency_error surfaced after a dead letter is requeued with a changed
# amount, 401 with a bad key (retried + WARNING, paid once the key is fixed),
# form encoding of awkward metadata, the token read from a file.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/stripe_mock.sh"

stripe_pg_start "ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.max_attempts = 4" "ft_orders.circuit_failure_threshold = 100" ||
	bail_out "server did not start"

is "$(psql_q "SHOW ft_orders.gateway_provider")" "stripe_charges" "provider stripe_charges is accepted"

# place KEY AMOUNT PAYMENT_METHOD [CUSTOMER]: prints the order id
place()
{
	psql_q "SELECT order_id FROM ft_orders.place_order('$1', '${4:-cust-$1}', $2, 'EUR', '[]', '$3')"
}
status_of()
{
	psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $1"
}

# --- paid -------------------------------------------------------------------
o_paid=$(place paid-1 1999 tok_visa)
o_paid2=$(place paid-2 500 tok_visa "ACME & Söhne =?[x]")
wait_until "SELECT count(*) = 2 FROM ft_orders.orders WHERE order_id IN ($o_paid, $o_paid2) AND status = 'paid'" 20
ok $? "tok_visa: paid"
pid=$(psql_q "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o_paid")
like "$pid" '^ch_[A-Za-z0-9]+$' "payment_id is the Stripe charge id"
is "$(mock_charges_for "$o_paid" '.[0].id + " " + (.[0].amount|tostring) + " " + .[0].currency + " " + .[0].status')" \
	"$pid 1999 eur succeeded" "the mock holds that charge: amount in minor units, lower-case currency"
is "$(mock_charges_for "$o_paid2" '.[0].metadata.customer_id')" "ACME & Söhne =?[x]" \
	"form encoding: metadata[customer_id] arrives intact"
is "$(psql_q "SELECT attempts FROM ft_orders.orders WHERE order_id = $o_paid")" "1" "one request"

# --- declined ---------------------------------------------------------------
o_dec=$(place dec-1 1500 tok_chargeDeclined)
wait_until "SELECT status = 'declined' FROM ft_orders.orders WHERE order_id = $o_dec" 20
ok $? "tok_chargeDeclined: declined"
is "$(psql_q "SELECT last_error FROM ft_orders.orders WHERE order_id = $o_dec")" \
	"declined: card_declined (generic_decline)" "the decline code is kept"
is "$(psql_q "SELECT string_agg(outcome || ':' || http_status, ',') FROM ft_orders.payment_attempts WHERE order_id = $o_dec")" \
	"declined:402" "one 402, not retried"
is "$(psql_q "SELECT count(*) FROM ft_orders.dead_letters WHERE order_id = $o_dec")" "0" "a decline is no dead letter"

# --- retried then paid (429 is not stored under the key) ---------------------
o_429=$(place retry-429 2500 'tok_429|tok_429|tok_visa')
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o_429" 20
ok $? "tok_429|tok_429|tok_visa: paid after retries"
is "$(psql_q "SELECT string_agg(outcome || ':' || http_status, ',' ORDER BY attempt) FROM ft_orders.payment_attempts WHERE order_id = $o_429")" \
	"retry:429,retry:429,paid:200" "two 429s retried, then paid"
is "$(mock_charges_for "$o_429")" "1" "one charge at the mock"

# --- a 500 is stored under the key: Stripe replays it, nothing is charged -----
o_500=$(place retry-500 2600 'tok_500|tok_visa')
wait_until "SELECT status = 'failed' FROM ft_orders.orders WHERE order_id = $o_500" 20
ok $? "tok_500|tok_visa: the 500 is replayed under the key until the attempts run out"
like "$(psql_q "SELECT last_error FROM ft_orders.dead_letters WHERE order_id = $o_500")" \
	'^gave up after 4 attempts: HTTP 500 api_error' "dead letter says the gateway kept failing"
is "$(mock_charges_for "$o_500")" "0" "never charged"

# --- lost reply: the mock charges, its reply comes after request_timeout ------
curl -fsS -X POST "$MOCK_URL/_ft/delay_next?ms=2500&count=1" || bail_out "could not arm the delay"
o_lost=$(place lost-1 3100 tok_visa)
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o_lost" 20
ok $? "lost reply: paid on the retry"
is "$(psql_q "SELECT string_agg(outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY attempt) FROM ft_orders.payment_attempts WHERE order_id = $o_lost")" \
	"retry:-,paid:200" "first attempt timed out, second one paid"
like "$(psql_q "SELECT error FROM ft_orders.payment_attempts WHERE order_id = $o_lost AND attempt = 1")" \
	'[Tt]imeout|timed out' "the first attempt was a timeout"
sleep 2	# let the held-back reply go out
is "$(mock_charges_for "$o_lost")" "1" "the mock holds exactly one charge for the order"
is "$(mock_charges_for "$o_lost" '.[0].id')" \
	"$(psql_q "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o_lost")" \
	"payment_id is that charge (the retry was an idempotent replay)"
grep -q "delaying the reply" "$FT_TMP/stripe_mock.log"
ok $? "the mock did hold a reply back"

# --- invalid request -> failed; requeued with another body -> idempotency_error
o_idem=$(place idem-1 100000000 tok_visa)
wait_until "SELECT status = 'failed' FROM ft_orders.orders WHERE order_id = $o_idem" 20
ok $? "amount over Stripe's limit: failed at once"
like "$(psql_q "SELECT last_error FROM ft_orders.dead_letters WHERE order_id = $o_idem")" \
	'^HTTP 400 invalid_request_error amount_too_large' "dead letter names Stripe's error"
psql_q "UPDATE ft_orders.orders SET amount_minor = 1000 WHERE order_id = $o_idem" >/dev/null
is "$(psql_q "SELECT ft_orders.retry_dead_letter(event_id) FROM ft_orders.dead_letters WHERE order_id = $o_idem")" \
	"t" "dead letter requeued after the amount was changed by hand"
# refused as another body under the key; since the order had been sent
# before, that may be a first request sent without metadata[payment_key]
# (docs/providers.md): it is sent once in that form, refused too, failed
wait_until "SELECT status = 'failed' AND attempts = 3 FROM ft_orders.orders WHERE order_id = $o_idem" 20
ok $? "same Idempotency-Key, other body: failed again"
is "$(psql_q "SELECT string_agg(outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY attempt) FROM ft_orders.payment_attempts WHERE order_id = $o_idem")" \
	"failed:400,retry:400,failed:400" "refused with metadata[payment_key], then without it: failed"
like "$(psql_q "SELECT last_error FROM ft_orders.orders WHERE order_id = $o_idem")" \
	'^idempotency_error: the gateway holds a different request under this order.s Idempotency-Key' \
	"last_error explains the idempotency_error"
is "$(mock_charges_for "$o_idem")" "0" "nothing charged"

# --- 401: bad key -> retried with a WARNING; fixed key -> paid ---------------
pg_set ft_orders.max_attempts 1000	# room for the 401s until the key is fixed
echo "sk_live_wrong" >"$STRIPE_KEY_FILE"
pg_reload
sleep 0.5
o_auth=$(place auth-1 1200 tok_visa)
wait_until "SELECT count(*) >= 2 FROM ft_orders.payment_attempts WHERE order_id = $o_auth AND http_status = 401" 20
ok $? "401 is retried"
is "$(status_of "$o_auth")" "pending" "the order stays pending"
grep -q "payment gateway refused the credentials: HTTP 401" "$PG_LOG"
ok $? "WARNING about the credentials in the log"
echo "$SK" >"$STRIPE_KEY_FILE"
pg_reload	# the file is read again at every reload
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o_auth" 20
ok $? "paid once the key is fixed"
is "$(mock_charges_for "$o_auth")" "1" "one charge"

# --- overall ------------------------------------------------------------------
is "$(mock_get "/v1/charges?limit=100" | jq '[.data[] | select(.status == "succeeded")] | length')" \
	"5" "the mock holds 5 successful charges: one per paid order"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")" "5" "5 paid orders"
if grep -q "$SK" "$PG_LOG"; then ok 1 "the key never reaches the server log"; else ok 0 "the key never reaches the server log"; fi
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
