#!/bin/bash
# stripe_intents.sh: the "stripe" provider (PaymentIntents) against the fake
# gateway's PaymentIntents shape (tests/fake_gateway/intents.c).
#
# succeeded -> paid; processing -> stays pending with the intent id in
# orders.payment_id, re-checked with GET /v1/payment_intents/{id} (never a
# second POST) until succeeded -> paid; requires_action -> action_required
# (next_action, client_secret), looked up by id after action_timeout;
# processing that ends in requires_payment_method -> declined; 402 card_error -> declined;
# Stripe-Should-Retry: false on a 503 -> failed at once; Stripe-Should-Retry:
# true on a 400 -> retried, then paid.  Reconciliation (1.3): an order whose
# reply was lost is found by a search on its metadata[payment_key] (or, for
# an intent created without one, metadata[order_id] with the order's amount
# and currency), one not found is created once.  Cancel (1.3): cancel_order() of an action_required
# order cancels its intent (POST /v1/payment_intents/{id}/cancel): canceled,
# never charged; if the customer completed first, Stripe refuses the cancel
# (payment_intent_unexpected_state, the intent succeeded): paid, then the
# automatic refund is requested.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.gateway_provider = 'stripe'" \
	"ft_orders.gateway_token = 'sk_test_intents'" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '100ms'" "ft_orders.backoff_max = '400ms'" \
	"ft_orders.action_timeout = '1s'" ||
	bail_out "the fake gateway or the server did not start"

intents() { curl -fsS "$GW_URL/v1/_intents" | jq -r ".$1"; }
place()
{
	psql_q "SELECT order_id FROM ft_orders.place_order('$1', 'cust-$1', $2, 'EUR', '[]', '$3')"
}
col() { psql_q "SELECT $2 FROM ft_orders.orders WHERE order_id = $1"; }
attempts_of()
{
	psql_q "SELECT string_agg(outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY attempt)
	          FROM ft_orders.payment_attempts WHERE order_id = $1"
}

is "$(psql_q "SHOW ft_orders.gateway_provider")" "stripe" "provider stripe is accepted"

o_visa=$(place visa 1000 pm_card_visa)
o_proc=$(place proc 1100 pm_processing)
o_act=$(place act 1200 pm_requires_action)
o_pfail=$(place pfail 1300 pm_processing_fails)
o_dec=$(place dec 1400 pm_card_chargeDeclined)
o_noretry=$(place noretry 1500 pm_503_noretry)
o_retry=$(place retry 1600 pm_400_retry_once)

wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status IN ('pending', 'action_required')" 30
ok $? "every order is settled"

is "$(col "$o_visa" "status || ' ' || attempts")" "paid 1" "succeeded: paid at once"
pi=$(col "$o_visa" payment_id)
like "$pi" '^pi_fake[0-9]+$' "payment_id is the intent id"
req=$(curl -fsS "$GW_URL/v1/_intents/$pi")
is "$(echo "$req" | jq -r .content_type)" "application/x-www-form-urlencoded" "form-encoded request"
is "$(echo "$req" | jq -r .key)" "$(col "$o_visa" payment_key)" "Idempotency-Key is the order's payment_key"
is "$(echo "$req" | jq -r .body)" \
	"amount=1000&currency=eur&metadata%5Border_id%5D=$o_visa&metadata%5Bcustomer_id%5D=cust-visa&metadata%5Bpayment_key%5D=$(col "$o_visa" payment_key)&payment_method=pm_card_visa&confirm=true&automatic_payment_methods%5Benabled%5D=true&automatic_payment_methods%5Ballow_redirects%5D=never" \
	"body: amount, lower-case currency, metadata (order_id, customer_id, payment_key), payment_method, confirm=true"
is "$(intents stripe_version)" "2024-06-20" "Stripe-Version: the pinned API version (the default of stripe_api_version)"

is "$(col "$o_proc" "status")" "paid" "processing: paid after the re-check"
like "$(col "$o_proc" "payment_id")" '^pi_fake[0-9]+$' "processing: payment_id is the intent id"
is "$(attempts_of "$o_proc")" "retry:200,retry:200,paid:200" \
	"processing: POST (processing), GET (processing), GET (succeeded)"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events WHERE order_id = $o_proc AND status = 'paid'")" "1" \
	"processing: one paid event"
is "$(col "$o_act" "status")" "paid" "requires_action: paid after the look-up"
is "$(attempts_of "$o_act")" "action_required:200,action_required:200,paid:200" \
	"requires_action: parked, looked up after action_timeout (still requires_action), then paid"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $o_act")" \
	"action_required,paid" "requires_action: one action_required event, then paid"
is "$(col "$o_act" "coalesce(next_action::text, 'none') || ' ' || coalesce(client_secret, 'none')")" "none none" \
	"requires_action: next_action and client_secret are cleared once paid"

is "$(col "$o_pfail" "status || ' ' || last_error")" "declined declined: requires_payment_method" \
	"processing that fails: declined"
like "$(col "$o_pfail" "payment_id")" '^pi_fake[0-9]+$' "the failed intent's id is kept"

is "$(col "$o_dec" "status || ' ' || last_error")" "declined declined: card_declined (generic_decline)" \
	"402 card_error: declined"
is "$(attempts_of "$o_dec")" "declined:402" "402: one request"

is "$(col "$o_noretry" "status")" "failed" "503 with Stripe-Should-Retry: false: failed"
is "$(attempts_of "$o_noretry")" "failed:503" "503 with Stripe-Should-Retry: false: not retried"
like "$(psql_q "SELECT last_error FROM ft_orders.dead_letters WHERE order_id = $o_noretry")" \
	'Stripe-Should-Retry: false' "the dead letter says why"

is "$(col "$o_retry" "status")" "paid" "400 with Stripe-Should-Retry: true: retried, then paid"
is "$(attempts_of "$o_retry")" "retry:400,paid:200" "400 retried because the header said so"

# no second charge: one create per order that reached the gateway's table
is "$(intents creates)" "6" "6 intents created (one per order; the 503 and the first 400 store nothing)"
is "$(intents replays)" "0" "re-checks never re-POSTed"
is "$(intents gets)" "6" "6 GETs: two re-checks for each of the three intents under way"
is "$(intents succeeded)" "4" "4 intents succeeded, 4 orders paid"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'")" "4" "4 paid orders"
is "$(gw_ledger requests)" "0" "nothing went to the generic /payments endpoint"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox")" "0" "outbox is empty"

# --- reconciliation by search (1.3) ---------------------------------------------------
# Two orders sent while the gateway cannot be reached; one of them did
# reach Stripe (made here by hand: its reply was lost, the order has no
# intent id; made without metadata[payment_key], as sent before it was part
# of the request, so found by its order_id, amount and currency).  Once
# gateway_key_ttl has passed, each is looked up by a search: the one found
# is settled from the intent, without a POST; the other is created once.
pg_set ft_orders.max_attempts 100
pg_set ft_orders.circuit_failure_threshold 1000
pg_set ft_orders.gateway_url "http://127.0.0.1:$(free_port)"
sleep 1
o_lost=$(place lost 1700 pm_card_visa)
o_none=$(place none 1800 pm_card_visa)
wait_until "SELECT count(DISTINCT order_id) = 2 FROM ft_orders.payment_attempts WHERE order_id IN ($o_lost, $o_none)" 20
ok $? "search: both orders were tried while the gateway could not be reached"
pi_lost=$(curl -fsS -H "Authorization: Bearer sk_test_intents" -H "Idempotency-Key: $(col "$o_lost" payment_key)" \
	-d "amount=1700&currency=eur&metadata%5Border_id%5D=$o_lost&payment_method=pm_card_visa&confirm=true" \
	"$GW_URL/v1/payment_intents" | jq -r .id)
like "$pi_lost" '^pi_fake[0-9]+$' "search: the lost order's intent exists at the gateway ($pi_lost)"
# the lost order stands for one placed before 1.4 (first sent without its
# payment_key): only such an order is searched and matched by its order_id
psql_q "UPDATE ft_orders.orders SET match_by_order_id = true WHERE order_id = $o_lost" >/dev/null
creates_before=$(intents creates)
pg_set ft_orders.gateway_key_ttl '1s'
sleep 1
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = 2 FROM ft_orders.orders WHERE order_id IN ($o_lost, $o_none) AND status = 'paid'" 30
ok $? "search: both orders are paid"
is "$(col "$o_lost" payment_id)" "$pi_lost" "search: the lost order carries the intent found"
like "$(psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_lost")" \
	'^charge:retry(,(charge|lookup):retry)*,lookup:paid$' "search: found by the look-up, no POST"
like "$(psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_none")" \
	'^charge:retry(,(charge|lookup):retry)*,lookup:unknown,charge:paid$' "search: nothing found, then one POST"
is "$(( $(intents creates) - creates_before ))" "1" "search: one intent created (the other order's)"
cmp_ok "$(intents searches)" -ge 2 "search: the gateway was searched"
is "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer x' "$GW_URL/v1/payment_intents/search?query=status:'x'")" \
	"400" "(the fake's search supports only the queries the look-up sends)"

# --- cancel of an unconfirmed intent (1.3) --------------------------------------------
pg_set ft_orders.action_timeout '1h'
sleep 1		# the workers reload on their next wake-up
o_ab=$(place abandon 1900 pm_requires_action)
o_done=$(place done 2000 pm_requires_action)
wait_until "SELECT count(*) = 2 FROM ft_orders.orders WHERE order_id IN ($o_ab, $o_done) AND status = 'action_required'" 20
ok $? "cancel: both orders are action_required"
pi_ab=$(col "$o_ab" payment_id)
pi_done=$(col "$o_done" payment_id)
cancels_before=$(intents cancels)

# the customer abandons 3-D Secure: the intent is canceled at the gateway
is "$(psql_q "SELECT ft_orders.cancel_order($o_ab, 'customer gave up')")" "action_required" \
	"cancel: cancel_order() of an action_required order is honoured by the worker"
wait_until "SELECT status = 'canceled' FROM ft_orders.orders WHERE order_id = $o_ab" 20
ok $? "cancel: the abandoned order is canceled"
is "$(psql_q "SELECT string_agg(request || ':' || outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_ab")" \
	"charge:action_required:200,cancel:canceled:200" "cancel: one POST, then the cancel, no look-up"
ab=$(curl -fsS "$GW_URL/v1/_intents/$pi_ab")
is "$(echo "$ab" | jq -r .status)" "canceled" "cancel: the intent is canceled at the gateway"
is "$(echo "$ab" | jq -r .cancel_key)" "$(col "$o_ab" payment_key):cancel" \
	"cancel: Idempotency-Key of the cancel is payment_key:cancel"
is "$(( $(intents cancels) - cancels_before ))" "1" "cancel: one cancel at the gateway"
is "$(col "$o_ab" "coalesce(refunded_minor, 0) || ' ' || coalesce(next_action::text, 'none') || ' ' || coalesce(client_secret, 'none')")" \
	"0 none none" "cancel: nothing refunded, next_action and client_secret cleared"
is "$(psql_q "SELECT count(*) FROM ft_orders.refunds WHERE order_id = $o_ab")" "0" "cancel: no refund"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox WHERE order_id = $o_ab")" "0" "cancel: nothing left in the outbox"

# the customer completed before the cancel arrived: Stripe refuses the
# cancel (the intent succeeded), the order is paid and refunded
curl -fsS -H "Authorization: Bearer x" "$GW_URL/v1/payment_intents/$pi_done" >/dev/null &&
	curl -fsS -H "Authorization: Bearer x" "$GW_URL/v1/payment_intents/$pi_done" >/dev/null
is "$(curl -fsS "$GW_URL/v1/_intents/$pi_done" | jq -r .status)" "succeeded" \
	"cancel: the second customer completed 3-D Secure first"
psql_q "SELECT ft_orders.cancel_order($o_done)" >/dev/null
wait_until "SELECT count(*) = 1 FROM ft_orders.refunds WHERE order_id = $o_done" 20
ok $? "cancel: the completed order was paid and its automatic refund requested"
is "$(psql_q "SELECT string_agg(request || ':' || outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o_done AND refund_id IS NULL")" \
	"charge:action_required:200,cancel:paid:400" "cancel: refused by Stripe (the intent succeeded): paid"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $o_done")" \
	"action_required,action_required,paid,paid" \
	"cancel: events action_required, cancel requested, paid, refund requested"
is "$(psql_q "SELECT amount_minor FROM ft_orders.refunds WHERE order_id = $o_done")" "2000" "cancel: the refund is of the whole amount"
is "$(curl -fsS "$GW_URL/v1/_intents/$pi_done" | jq -r '.status + " " + .cancel_key')" "succeeded " \
	"cancel: the succeeded intent was not canceled"
# --- livemode: a test-mode event never settles what a live key charges, nor the reverse
is "$(psql_q "SELECT ft_orders._gateway_key_mode()")" "test" "livemode: sk_test_ is a test-mode key"
pg_set ft_orders.gateway_url ''
wait_until "SELECT setting = '' FROM pg_settings WHERE name = 'ft_orders.gateway_url'" 10
sleep 1		# the workers go idle on their next wake-up
o_lm=$(place livemode 2100 pm_card_visa)
lm_event()	# ID LIVEMODE: payment_intent.succeeded for o_lm
{
	psql_q "SELECT ft_orders.apply_gateway_event('stripe', jsonb_build_object(
	          'id', '$1', 'type', 'payment_intent.succeeded', 'livemode', $2,
	          'data', jsonb_build_object('object', jsonb_build_object('id', 'pi_lm', 'object', 'payment_intent',
	            'status', 'succeeded', 'amount', 2100, 'currency', 'eur',
	            'metadata', jsonb_build_object('payment_key', '$(col "$o_lm" payment_key)')))))"
}
is "$(lm_event evt_lm_live true)" "f" "livemode: a live-mode event is not applied with a test key"
is "$(psql_q "SELECT detail FROM ft_orders.gateway_events WHERE event_id = 'evt_lm_live'")" \
	"not applied: a live-mode event, and ft_orders.gateway_token is a test-mode key" "livemode: gateway_events says why"
is "$(col "$o_lm" status)" "pending" "livemode: the order stays pending"
printf 'sk_live_not_a_real_key\n' >"$FT_TMP/live.key"
chmod 644 "$FT_TMP/live.key"
pg_set ft_orders.gateway_token "file:$FT_TMP/live.key"
wait_until "SELECT ft_orders._gateway_key_mode() = 'live'" 10
ok $? "livemode: a token file holding sk_live_ is a live-mode key"
is "$(lm_event evt_lm_test false)" "f" "livemode: a test-mode event is not applied with a live key"
is "$(col "$o_lm" status)" "pending" "livemode: the order still stays pending"
is "$(psql -XAtq -c "SELECT ft_orders.apply_gateway_event('stripe', '{\"id\":\"evt_lm_bad\",\"type\":\"payment_intent.succeeded\",\"livemode\":\"yes\",\"data\":{\"object\":{\"id\":\"pi_lm\"}}}')" 2>&1 |
      grep -o 'must be a boolean')" "must be a boolean" "livemode: a livemode that is not a boolean is refused"
is "$(lm_event evt_lm_live2 true)" "t" "livemode: a live-mode event with the live key settles the order"
is "$(col "$o_lm" status)" "paid" "livemode: paid"
pg_set ft_orders.gateway_token 'sk_test_intents'
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT ft_orders._gateway_key_mode() = 'test'" 10

# --- the Stripe-Version header follows ft_orders.stripe_api_version -------------
version_sent()
{
	local key=$1
	pg_set ft_orders.stripe_api_version "$2"
	wait_until "SELECT setting = '$2' FROM pg_settings WHERE name = 'ft_orders.stripe_api_version'" 10
	sleep 1		# the workers reload on their next wake-up
	o=$(place "$key" 1000 pm_card_visa)
	wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o" 20 || return 1
	intents stripe_version
}
is "$(version_sent version-other 2099-01-01.test)" "2099-01-01.test" "Stripe-Version: another version, on reload"
is "$(version_sent version-none '')" "" "Stripe-Version: none when the setting is empty (the account's default)"
is "$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.stripe_api_version = '2024-06-20
X-Evil: 1'" 2>&1 | grep -o 'invalid value for parameter "ft_orders.stripe_api_version"')" \
	'invalid value for parameter "ft_orders.stripe_api_version"' "stripe_api_version: a value that could break the header is refused"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
