#!/bin/bash
# webhooks.sh: webhooks end to end (docs/reference.md, "Webhooks"): the fake
# gateway signs and sends them, the Node.js example service checks the
# signature and calls ft_orders.apply_gateway_event.
#
# 1. Live: orders charged by the workers while the gateway also sends each
#    outcome as a webhook, twice and out of order: every order settled once
#    (one order_events row each, one charge each), each event recorded once;
#    with the generic provider, then with stripe (PaymentIntents).
# 2. Ordered by hand (gateway down for charges, so only webhooks settle):
#    generic and Stripe succeeded / failed / canceled / refunded events,
#    each delivered twice and in reverse order: the right final status, a
#    failure after a success kept as history, the expected order_events rows.
# 3. Bad signatures (from the gateway and by hand): 400, nothing written.
# 4. The service's own database tests (test/webhooks.test.js).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

EXAMPLE=$FT_ROOT/examples/node-order-service
command -v node >/dev/null 2>&1 || bail_out "node is missing: run tests/setup/deps.sh"
if [ ! -f "$EXAMPLE/node_modules/pg/package.json" ]; then
	(cd "$EXAMPLE" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		bail_out "npm ci in examples/node-order-service failed"
fi

STRIPE_SECRET=whsec_webhooks_sh
GENERIC_SECRET=whgen_webhooks_sh

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" ||
	bail_out "the fake gateway or the server did not start"

# the service's role: the application's, plus the one GRANT webhooks need
psql_q "CREATE ROLE wh_app LOGIN IN ROLE ft_orders_app;
        GRANT EXECUTE ON FUNCTION ft_orders.apply_gateway_event(text, jsonb) TO wh_app" >/dev/null ||
	bail_out "could not create role wh_app"

SVC_PORT=$(free_port)
FT_WRITE_PORT=$PGPORT FT_DATABASE=ftdb FT_USER=wh_app FT_LISTEN_PORT=$SVC_PORT \
	FT_STRIPE_WEBHOOK_SECRET=$STRIPE_SECRET FT_WEBHOOK_SECRET=$GENERIC_SECRET \
	node "$EXAMPLE/server.js" >"$FT_TMP/service.log" 2>&1 &
FT_PIDS+=("$!")
for _ in $(seq 1 100); do
	grep -q '"event":"started"' "$FT_TMP/service.log" && break
	sleep 0.1
done
grep -q '"event":"started"' "$FT_TMP/service.log" || { cat "$FT_TMP/service.log" >&2; bail_out "the node service did not start"; }
SVC=http://127.0.0.1:$SVC_PORT

# wh FIELD: one number from the gateway's GET /webhooks
wh() { curl -fsS "$GW_URL/webhooks" | jq -r ".$1"; }
# wh_wait JQ SECONDS: until GET /webhooks satisfies JQ
wh_wait()
{
	local deadline=$(($(date +%s) + ${2:-20}))
	while [ "$(date +%s)" -le "$deadline" ]; do
		[ "$(curl -fsS "$GW_URL/webhooks" | jq "$1")" = true ] && return 0
		sleep 0.1
	done
	return 1
}
# send PROVIDER EVENTS_JSON [BAD]: queue events at the gateway (one batch)
send()
{
	curl -fsS -X POST -H 'Content-Type: application/json' \
		-d "{\"provider\":\"$1\",\"events\":$2,\"bad_signature\":${3:-false}}" "$GW_URL/webhooks/send" >/dev/null
}
# place KEY AMOUNT: place an order, print its id
place() { psql_q "SELECT order_id FROM ft_orders.place_order('$1', 'cust-wh', $2, 'EUR', '[]', 'pm_card_visa')"; }
pk() { psql_q "SELECT payment_key FROM ft_orders.orders WHERE order_id = $1"; }
st() { psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $1"; }
nev() { psql_q "SELECT count(*) FROM ft_orders.order_events WHERE order_id = $1"; }

#------------------------------------------------------------------------------
# 1. live: worker replies and webhooks race, each webhook twice, reversed
#------------------------------------------------------------------------------
gw_faults "{\"webhook_url\":\"$SVC/webhooks/generic\",\"webhook_secret\":\"$GENERIC_SECRET\",
            \"webhook_duplicates\":1,\"webhook_reorder\":true,\"webhook_delay_ms\":100,
            \"decline_amount_minor\":[13]}"
ok $? "gateway: webhooks to the service, each twice, reordered"
psql_q "SELECT count(*) FROM generate_series(1, 6) g,
        LATERAL ft_orders.place_order('live-' || g, 'cust-wh', CASE WHEN g = 6 THEN 13 ELSE 100 + g END,
                                      'EUR', '[]', 'pm_card_visa')" >/dev/null
ok $? "placed 6 orders (one to be declined)"
wait_until "SELECT count(*) FILTER (WHERE status = 'paid') = 5 AND count(*) FILTER (WHERE status = 'declined') = 1
              FROM ft_orders.orders WHERE idempotency_key LIKE 'live-%'" 30
ok $? "5 orders paid, 1 declined"
wh_wait '.delivered == 12' 60
ok $? "the gateway delivered 12 webhooks (6 events, twice each), all answered 2xx"
is "$(wh rejected)/$(wh failed)" "0/0" "no webhook rejected or failed"
is "$(psql_q "SELECT count(*) || '/' || count(DISTINCT event_id) || '/' || count(DISTINCT order_id)
                FROM ft_orders.gateway_events WHERE provider = 'generic'")" "6/6/6" \
	"6 events recorded, once each, one per order"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events e JOIN ft_orders.orders o USING (order_id)
               WHERE o.idempotency_key LIKE 'live-%'")" "6" \
	"one order_events row per order: worker reply and webhook did not both apply"
is "$(psql_q "SELECT count(*) FROM ft_orders.gateway_events g JOIN ft_orders.orders o USING (order_id)
               WHERE g.type = 'payment.succeeded' AND o.status = 'paid'
                 AND (g.applied OR g.detail = 'repeat: order already paid')")" "5" \
	"each success event was applied or found its order already paid"
is "$(gw_ledger charges)/$(gw_ledger duplicates)" "5/0" "ledger: 5 charges, no duplicate"

# the same with the stripe provider: PaymentIntents, Stripe-signed events
curl -fsS -X DELETE "$GW_URL/webhooks" >/dev/null
pg_set ft_orders.gateway_provider stripe && pg_set ft_orders.gateway_token sk_test_webhooks
gw_faults "{\"webhook_url\":\"$SVC/webhooks/stripe\",\"webhook_secret\":\"$STRIPE_SECRET\"}"
ok $? "provider stripe; the gateway's Stripe events go to /webhooks/stripe"
psql_q "SELECT count(*) FROM generate_series(1, 4) g,
        LATERAL ft_orders.place_order('live-pi-' || g, 'cust-wh', 300 + g, 'EUR', '[]',
                                      CASE WHEN g = 4 THEN 'pm_card_chargeDeclined' ELSE 'pm_card_visa' END)" >/dev/null
wait_until "SELECT count(*) FILTER (WHERE status = 'paid') = 3 AND count(*) FILTER (WHERE status = 'declined') = 1
              FROM ft_orders.orders WHERE idempotency_key LIKE 'live-pi-%'" 30
ok $? "PaymentIntents: 3 orders paid, 1 declined"
wh_wait '.delivered == 8' 60
ok $? "the gateway delivered 8 Stripe events (4, twice each)"
is "$(psql_q "SELECT string_agg(g.type || ':' || (g.order_id = o.order_id), ' ' ORDER BY o.idempotency_key)
                FROM ft_orders.gateway_events g JOIN ft_orders.orders o ON o.order_id = g.order_id
               WHERE g.provider = 'stripe' AND o.idempotency_key LIKE 'live-pi-%'")" \
	"payment_intent.succeeded:true payment_intent.succeeded:true payment_intent.succeeded:true payment_intent.payment_failed:true" \
	"each PaymentIntent's event recorded once and matched to its order (metadata.order_id)"
is "$(psql_q "SELECT count(*) FROM ft_orders.order_events e JOIN ft_orders.orders o USING (order_id)
               WHERE o.idempotency_key LIKE 'live-pi-%'")" "4" "one order_events row per order"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'live-pi-%' AND status = 'paid' AND payment_id LIKE 'pi_fake%'")" \
	"3" "the paid orders carry their PaymentIntent id"
is "$(curl -fsS "$GW_URL/v1/_intents" | jq -r .creates)" "4" "4 PaymentIntents created, none twice"
pg_set ft_orders.gateway_provider generic

#------------------------------------------------------------------------------
# 2. by hand: the gateway refuses charges, only webhooks settle
#------------------------------------------------------------------------------
curl -fsS -X DELETE "$GW_URL/webhooks" >/dev/null
gw_faults "{\"down\":true,\"webhook_delay_ms\":300,
            \"webhook_url\":\"$SVC/webhooks/generic\",\"webhook_secret\":\"$GENERIC_SECRET\"}"
P1=$(place wh-p1 1001); P2=$(place wh-p2 1002); P3=$(place wh-p3 1003); P4=$(place wh-p4 1004)
P5=$(place wh-p5 1005)
S1=$(place wh-s1 2001); S2=$(place wh-s2 2002); S3=$(place wh-s3 2003); S4=$(place wh-s4 2004)
ok $? "placed 9 orders with the gateway down"
gev() { printf '{"event_id":"%s","type":"%s","payment_key":"%s"%s}' "$1" "$2" "$(pk "$3")" "${4:-}"; }

# one batch, delivered twice each, last first
send generic "[$(gev p1-failed payment.failed "$P1" ',"status":"declined","decline_code":"insufficient_funds"'),
               $(gev p1-succeeded payment.succeeded "$P1" ',"payment_id":"pay_p1"'),
               $(gev p2-succeeded payment.succeeded "$P2" ',"payment_id":"pay_p2"'),
               $(gev p2-failed payment.failed "$P2"),
               $(gev p3-canceled payment.canceled "$P3"),
               $(gev p4-succeeded payment.succeeded "$P4" ',"payment_id":"pay_p4","amount_minor":1004,"currency":"EUR"')]"
wh_wait '.delivered == 12' 60
ok $? "generic batch: 6 events delivered twice each, last first"
is "$(st "$P1")/$(nev "$P1")" "paid/1" "P1: success delivered before its failure: paid, one order_events row"
is "$(psql_q "SELECT applied || ' ' || detail FROM ft_orders.gateway_events WHERE event_id = 'p1-failed'")" \
	"false history: order already paid" "P1: the late failure is recorded as history, not applied"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $P2")" \
	"declined,paid" "P2: failure delivered first (declined), then its success (paid)"
is "$(st "$P3")/$(nev "$P3")" "canceled/1" "P3: canceled"
is "$(st "$P4")/$(nev "$P4")" "paid/1" "P4: paid"
is "$(psql_q "SELECT count(*) FROM ft_orders.outbox WHERE order_id IN ($P1, $P2, $P3, $P4)")" "0" \
	"the settled orders' queued charges are gone (the workers will not charge them)"

# refunds of P4 (rows as refund_order writes them), then their events
psql_q "INSERT INTO ft_orders.refunds (order_id, amount_minor, currency, idempotency_key, refund_key)
        VALUES ($P4, 300, 'EUR', 'r1', '11111111-1111-4111-8111-111111111111'),
               ($P4, 704, 'EUR', 'r2', '22222222-2222-4222-8222-222222222222')" >/dev/null
curl -fsS -X DELETE "$GW_URL/webhooks" >/dev/null
send generic "[$(gev r1-failed refund.failed "$P4" ',"refund_key":"11111111-1111-4111-8111-111111111111"'),
               $(gev r1-succeeded refund.succeeded "$P4" ',"refund_key":"11111111-1111-4111-8111-111111111111","refund_id":"rf_1"'),
               $(gev r2-succeeded refund.succeeded "$P4" ',"refund_key":"22222222-2222-4222-8222-222222222222","refund_id":"rf_2"')]"
wh_wait '.delivered == 6' 60
ok $? "refund batch: 3 events delivered twice each, last first"
is "$(psql_q "SELECT string_agg(status::text, ',' ORDER BY id) FROM ft_orders.order_events WHERE order_id = $P4")" \
	"paid,partially_refunded,refunded" "P4: paid, partially_refunded (704), refunded (1004)"
is "$(psql_q "SELECT string_agg(idempotency_key || ':' || status || ':' || gateway_refund_id, ',' ORDER BY refund_id)
               FROM ft_orders.refunds WHERE order_id = $P4")" "r1:succeeded:rf_1,r2:succeeded:rf_2" \
	"both refunds succeeded, with the gateway's refund ids; the late refund.failed was not applied"
is "$(psql_q "SELECT refunded_minor FROM ft_orders.orders WHERE order_id = $P4")" "1004" "P4: refunded_minor 1004"

# Stripe-shaped events to /webhooks/stripe
curl -fsS -X DELETE "$GW_URL/webhooks" >/dev/null
gw_faults "{\"webhook_url\":\"$SVC/webhooks/stripe\",\"webhook_secret\":\"$STRIPE_SECRET\"}"
psql_q "INSERT INTO ft_orders.refunds (order_id, amount_minor, currency, idempotency_key, refund_key, gateway_refund_id)
        VALUES ($S4, 2004, 'EUR', 'rs4', '44444444-4444-4444-8444-444444444444', 're_s4')" >/dev/null
# sev ID TYPE ORDER AMOUNT [EXTRA_OBJECT_JSON]: a Stripe event for a PaymentIntent
# carrying the order's metadata (order_id and payment_key, as the stripe
# providers send them from 1.4 on: an object without the payment_key only
# matches an order placed before)
sev()
{
	jq -cn --arg id "$1" --arg type "$2" --arg oid "$3" --arg pk "$(pk "$3")" --argjson amount "$4" --argjson extra "${5:-{\}}" \
		'{id: $id, object: "event", type: $type,
		  data: {object: ({id: ("pi_wh_" + $oid), object: "payment_intent", amount: $amount, currency: "eur",
		                   metadata: {order_id: $oid, payment_key: $pk}} + $extra)}}'
}
send stripe "[$(sev evt_s1_succeeded payment_intent.succeeded "$S1" 2001 '{"status":"succeeded"}'),
              $(sev evt_s1_refunded charge.refunded "$S1" 2001 "{\"id\":\"ch_wh_$S1\",\"object\":\"charge\",\"payment_intent\":\"pi_wh_$S1\",\"amount_refunded\":500}"),
              $(sev evt_s2_failed payment_intent.payment_failed "$S2" 2002 '{"last_payment_error":{"code":"card_declined","decline_code":"do_not_honor"}}'),
              $(sev evt_s3_canceled payment_intent.canceled "$S3" 2003 '{"cancellation_reason":"abandoned"}'),
              $(sev evt_s4_succeeded payment_intent.succeeded "$S4" 2004),
              $(sev evt_s4_refund refund.updated "$S4" 2004 "{\"id\":\"re_s4\",\"object\":\"refund\",\"status\":\"succeeded\",\"payment_intent\":\"pi_wh_$S4\"}")]"
wh_wait '.delivered == 12' 60
ok $? "Stripe batch: 6 events delivered twice each, last first"
is "$(psql_q "SELECT status || '/' || refunded_minor || '/' || payment_id FROM ft_orders.orders WHERE order_id = $S1")/$(nev "$S1")" \
	"partially_refunded/500/pi_wh_$S1/1" "S1: charge.refunded before payment_intent.succeeded: charged and partially_refunded, once"
is "$(psql_q "SELECT status || ' ' || last_error FROM ft_orders.orders WHERE order_id = $S2")" "declined declined: do_not_honor" \
	"S2: payment_intent.payment_failed: declined with the decline code"
is "$(psql_q "SELECT status || ' ' || last_error FROM ft_orders.orders WHERE order_id = $S3")" "canceled canceled at the gateway: abandoned" \
	"S3: payment_intent.canceled: canceled"
is "$(st "$S4")/$(nev "$S4")" "refunded/1" "S4: refund.updated before the success: refunded once settled"

#------------------------------------------------------------------------------
# 3. bad signatures: 400, nothing written
#------------------------------------------------------------------------------
curl -fsS -X DELETE "$GW_URL/webhooks" >/dev/null
gw_faults "{\"webhook_url\":\"$SVC/webhooks/generic\",\"webhook_secret\":\"$GENERIC_SECRET\"}"
before=$(psql_q "SELECT count(*) FROM ft_orders.gateway_events")
send generic "[$(gev p5-succeeded payment.succeeded "$P5")]" true
wh_wait '.rejected == 2' 60
ok $? "a badly signed event (twice) is rejected by the service with 4xx"
is "$(curl -fsS "$GW_URL/webhooks" | jq -r .last_status)" "400" "... 400"
body=$(gev p5-by-hand payment.succeeded "$P5")
t=$(date +%s)
mac=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$GENERIC_SECRET" | sed 's/^.*= //')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Webhook-Signature: t=$t,v1=$mac" -H 'Content-Type: application/json' \
	--data-binary "${body/p5-by-hand/p5-forged}" "$SVC/webhooks/generic")
is "$code" "400" "by hand: a body changed after signing: 400"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Stripe-Signature: t=$t,v1=$mac" -H 'Content-Type: application/json' \
	--data-binary "$body" "$SVC/webhooks/stripe")
is "$code" "400" "by hand: the generic secret's signature on the Stripe endpoint: 400"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Webhook-Signature: t=$((t - 600)),v1=$(printf '%s.%s' "$((t - 600))" "$body" | openssl dgst -sha256 -hmac "$GENERIC_SECRET" | sed 's/^.*= //')" \
	-H 'Content-Type: application/json' --data-binary "$body" "$SVC/webhooks/generic")
is "$code" "400" "by hand: a signature 10 minutes old: 400"
is "$(st "$P5")/$(nev "$P5")/$(psql_q "SELECT count(*) FROM ft_orders.gateway_events")" "pending/0/$before" \
	"after the bad signatures: P5 pending, no order_events row, no gateway_events row"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Webhook-Signature: t=$t,v1=$mac" -H 'Content-Type: application/json' \
	--data-binary "$body" "$SVC/webhooks/generic")
is "$code/$(st "$P5")" "200/paid" "the same event correctly signed: 200, P5 paid"

#------------------------------------------------------------------------------
# totals: every event once, nothing applied twice, metrics agree
#------------------------------------------------------------------------------
is "$(psql_q "SELECT count(*) = count(DISTINCT (provider, event_id)) FROM ft_orders.gateway_events")" "t" \
	"every event recorded once"
is "$(psql_q "SELECT count(*) FILTER (WHERE applied) || '/' || count(*) FILTER (WHERE NOT applied)
                FROM ft_orders.gateway_events WHERE event_id !~ '^evt_(gen_|fake)'")" "13/3" \
	"the hand-sent events: 13 applied, 3 not (P1's late failure, R1's late failure, S1's success after its refund)"
m=$(psql_q "SELECT ft_orders.metrics()")
is "$(grep '^ft_orders_gateway_events_total{result="applied"}' <<<"$m" | cut -d' ' -f2)/$(grep '^ft_orders_gateway_events_total{result="ignored"}' <<<"$m" | cut -d' ' -f2)" \
	"$(psql_q "SELECT count(*) FILTER (WHERE applied) || '/' || count(*) FILTER (WHERE NOT applied) FROM ft_orders.gateway_events")" \
	"metrics(): ft_orders_gateway_events_total{result} matches the table"
grep -q '"event":"internal_error"' "$FT_TMP/service.log"
ok $((! $?)) "the service logged no internal_error"

#------------------------------------------------------------------------------
# 4. the service's own database tests
#------------------------------------------------------------------------------
out=$(cd "$EXAMPLE" && FT_WRITE_PORT=$PGPORT FT_DATABASE=ftdb FT_USER=wh_app \
	FT_STRIPE_WEBHOOK_SECRET=$STRIPE_SECRET FT_WEBHOOK_SECRET=$GENERIC_SECRET \
	node --test test/webhooks.test.js 2>&1)
rc=$?
is "$rc $(grep -E '^# (pass|fail|skipped)' <<<"$out" | tr '\n' ' ')" "0 # pass 5 # fail 0 # skipped 0 " \
	"node --test test/webhooks.test.js: 5 passed" || echo "$out" | sed 's/^/# /' | tail -40

done_testing
