#!/usr/bin/env bash
#
# selftest.sh -- TAP self-test of the fake payment gateway (docs/reference.md, "Fake gateway").
#
# Starts tests/fake_gateway/fake_gateway on a free loopback port, drives
# every endpoint and fault with curl, checks replies with jq, and stops the
# gateway with SIGTERM.  Run:  prove -v tests/fake_gateway/selftest.sh
#
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/fake_gateway
TMP=$(mktemp -d)
PIDS=()
N=0
FAILED=0

cleanup()
{
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

# --- TAP helpers ------------------------------------------------------------

pass() { N=$((N + 1)); echo "ok $N - $1"; }
fail()
{
	N=$((N + 1)); FAILED=$((FAILED + 1))
	echo "not ok $N - $1"
	echo "#   expected: $2"
	echo "#   got:      $3"
}
# is GOT EXPECTED DESCRIPTION
is() { if [ "$1" == "$2" ]; then pass "$3"; else fail "$3" "$2" "$1"; fi; }
# like GOT REGEX DESCRIPTION
like() { if [[ "$1" =~ $2 ]]; then pass "$3"; else fail "$3" "match /$2/" "$1"; fi; }
# ge A B DESCRIPTION (floats: A >= B)
ge() { if awk "BEGIN{exit !($1 >= $2)}"; then pass "$3"; else fail "$3" ">= $2" "$1"; fi; }
# lt A B DESCRIPTION (floats: A < B)
lt() { if awk "BEGIN{exit !($1 < $2)}"; then pass "$3"; else fail "$3" "< $2" "$1"; fi; }
bail() { echo "Bail out! $*"; exit 1; }

# --- HTTP helpers -------------------------------------------------------------

# http METHOD PATH [BODY [curl args...]]: sets CODE, TIME, RC, BODY; headers in $TMP/hdrs
http()
{
	local method=$1 path=$2 body=${3-} out
	shift; shift; [ $# -gt 0 ] && shift
	: > "$TMP/hdrs"; : > "$TMP/body"
	out=$(curl -s --max-time 10 -o "$TMP/body" -D "$TMP/hdrs" \
		-w '%{http_code} %{time_total}' -X "$method" \
		${body:+--data-binary "$body"} "$@" "$URL$path")
	RC=$?
	CODE=${out% *}; TIME=${out#* }
	BODY=$(tr -d '\0' < "$TMP/body")
}
# pay KEY BODY [curl args...]
pay()
{
	local key=$1 body=$2; shift 2
	http POST /payments "$body" -H 'Content-Type: application/json' \
		-H "Idempotency-Key: $key" "$@"
}
# body ORDER_ID AMOUNT_MINOR
body()
{
	printf '{"order_id":%s,"payment_key":"pk-%s","customer_id":"c1","amount_minor":%s,"currency":"EUR","payment_method":"pm_card_visa","items":[{"sku":"A1","qty":1}]}' "$1" "$1" "$2"
}
jf() { jq -c "$1" <<<"$BODY" 2>/dev/null || echo "<not json: $BODY>"; }
header() { grep -i "^$1:" "$TMP/hdrs" | tail -n 1 | cut -d: -f2- | tr -d ' \r'; }
ledger() { curl -s "$URL/ledger" | jq -c "$1"; }
faults() { http POST /faults "$1"; }

# start_gateway NAME [env assignments...]: starts a gateway, sets PID and URL
start_gateway()
{
	local name=$1 i; shift
	env "$@" "$BIN" --port 0 --port-file "$TMP/$name.port" \
		> "$TMP/$name.out" 2> "$TMP/$name.err" &
	PID=$!
	PIDS+=("$PID")
	for i in $(seq 100); do
		[ -s "$TMP/$name.port" ] && break
		sleep 0.05
	done
	[ -s "$TMP/$name.port" ] || bail "gateway $name did not start: $(cat "$TMP/$name.err")"
	URL="http://127.0.0.1:$(cat "$TMP/$name.port")"
}

# --- start ----------------------------------------------------------------------

make -s -C "$HERE" >/dev/null || bail "build failed"
command -v jq >/dev/null || bail "jq is required"

"$BIN" --listen 0.0.0.0 --port 0 >/dev/null 2>"$TMP/refuse.err"
is "$?" 2 "refuses a non-loopback --listen address"
"$BIN" --listen 198.20.0.1 --port 0 >/dev/null 2>"$TMP/refuse.err"
is "$?" 2 "refuses an address outside 198.18.0.0/15 (tests/partition's range)"

start_gateway main
MAIN_PID=$PID
is "$(head -n 1 "$TMP/main.out")" "fake_gateway listening on 127.0.0.1:$(cat "$TMP/main.port")" \
	"prints the listening line with the port of --port-file"

http GET /health
is "$CODE $BODY" '200 {"ok":true}' "GET /health"
http GET /nowhere
is "$CODE $(jf .error)" '404 "not_found"' "unknown path is a JSON 404"

# --- success, replay, mismatch ------------------------------------------------------

pay k-ok "$(body 1 1000)"
is "$CODE $(jf .status)" '200 "succeeded"' "new key is charged"
like "$(jf .payment_id)" '^"pay_[0-9]+"$' "success carries a payment_id"
PAYID=$(jf .payment_id)
like "$(header Content-Type)" '^application/json' "JSON replies say application/json"
pay k-ok "$(body 1 1000)"
is "$CODE $(jf .payment_id) $(header Idempotent-Replayed)" "200 $PAYID true" \
	"same key and body replays the stored reply"
is "$(ledger '[.charges,.keys,.replays,.requests]')" '[1,1,1,2]' "replay is not a second charge"
pay k-ok "$(body 1 2000)"
is "$CODE $(jf .error)" '422 "idempotency_key_reused"' "same key, other body is 422"
is "$(ledger '[.charges,.mismatches]')" '[1,1]' "mismatch changes nothing"
pay k-ok "$(body 1 1000 | sed 's/"order_id":1,/"order_id":7,/')"
is "$CODE $(jf .payment_id) $(header Idempotent-Replayed)" "200 $PAYID true" \
	"same key and payment from another order_id (an order re-created after a failover) replays"
is "$(ledger '[.charges,.mismatches]')" '[1,1]' "... and is no second charge"

# --- request validation -------------------------------------------------------------

http POST /payments "$(body 2 1000)" -H 'Content-Type: application/json'
is "$CODE $BODY" '400 {"error":"missing Idempotency-Key"}' "missing Idempotency-Key is 400"
pay k-bad 'not json'
is "$CODE $(jf .error)" '400 "invalid_request"' "non-JSON body is 400"
pay k-bad '{"order_id":"x","amount_minor":5,"currency":"EUR"}'
is "$CODE $(jf .error)" '400 "invalid_request"' "order_id not an integer is 400"
pay k-bad "$(body 3 -5)"
is "$CODE $(jf .message)" '400 "amount_minor must be a positive integer"' "negative amount is 400"
pay k-bad '{"order_id":3,"amount_minor":5,"currency":7}'
is "$CODE $(jf .error)" '400 "invalid_request"' "currency not a string is 400"
head -c 1100000 /dev/zero | tr '\0' a > "$TMP/big"
pay k-big "@$TMP/big"
is "$CODE" 413 "body over 1 MB is 413"

# --- declines and rejections by amount ------------------------------------------------

faults '{"decline_amount_minor":[13],"reject_amount_minor":[14],"bad_request_amount_minor":[15]}'
is "$CODE $(jf '[.decline_amount_minor,.reject_amount_minor,.bad_request_amount_minor]')" \
	'200 [[13],[14],[15]]' "POST /faults returns the configuration"
pay k-decl "$(body 10 13)"
is "$CODE $BODY" '402 {"status":"declined","decline_code":"card_declined"}' "listed amount is declined"
pay k-decl "$(body 10 13)"
is "$CODE $(header Idempotent-Replayed)" '402 true' "decline is stored and replayed"
pay k-rej "$(body 11 14)"
is "$CODE $(jf .error)" '422 "unprocessable"' "reject_amount_minor gives 422"
pay k-400 "$(body 12 15)"
is "$CODE" 400 "bad_request_amount_minor gives 400"
is "$(ledger '[.charges,.declines,.rejects]')" '[1,1,2]' "declines and rejects are not charges"
http GET /ledger/k-decl
is "$CODE $(jf '[.charged,.status,.requests,.payment_id]')" '200 [false,402,2,null]' \
	"GET /ledger/{key} of a decline"

# --- transient faults -------------------------------------------------------------------

http DELETE /faults
is "$CODE $(jf '[.fail_rate + 0,.decline_amount_minor,.down]')" '200 [0,[],false]' "DELETE /faults resets"
faults '{"fail_rate":1,"retry_after_s":2}'
pay k-fail "$(body 20 500)"
is "$CODE $BODY $(header Retry-After)" '503 {"error":"injected"} 2' "fail_rate=1 gives 503 with Retry-After"
faults '{"fail_status":429,"retry_after_s":0}'
pay k-fail "$(body 20 500)"
is "$CODE $(header Retry-After)" '429 ' "fail_status is honoured, no Retry-After when 0"
http DELETE /faults
pay k-fail "$(body 20 500)"
is "$CODE $(jf .status) $(header Idempotent-Replayed)" '200 "succeeded" ' \
	"a failed key stays free: the retry is charged"

faults '{"status_script":[503,429]}'
is "$(jf .status_script)" '[503,429]' "status_script is accepted"
pay k-script "$(body 21 500)"; s1=$CODE
pay k-script "$(body 21 500)"; s2=$CODE
pay k-script "$(body 21 500)"; s3=$CODE
is "$s1 $s2 $s3" '503 429 200' "status_script is consumed in order"

faults '{"down":true}'
pay k-down "$(body 22 500)"
is "$CODE $RC" '000 52' "down closes the connection without a reply"
http GET /health
is "$CODE" 200 "/health still answers while down"
http DELETE /faults
pay k-down "$(body 22 500)"
is "$CODE" 200 "after down, the same key is charged"
is "$(ledger '[.faults_injected,.charges]')" '[5,4]' "injected faults are counted, not charged"

faults '{"timeout_rate":1,"hang_ms":500}'
pay k-lost "$(body 23 700)"
is "$CODE $RC" '000 52' "timeout_rate=1 gives no reply"
ge "$TIME" 0.5 "the lost reply hangs for hang_ms"
http GET /ledger/k-lost
is "$(jf '[.charged,.status]')" '[true,200]' "the lost reply was charged and stored"
pay k-lost "$(body 23 700)"
is "$CODE $(header Idempotent-Replayed) $(jf .status)" '200 true "succeeded"' \
	"retry after a lost reply gets the stored success (timeout_rate still 1)"
is "$(ledger '[.charges,.lost_replies]')" '[5,1]' "lost reply then retry is one charge"

faults '{"timeout_rate":0,"garbage_rate":1}'
pay k-garb "$(body 24 800)"
like "$CODE $BODY" '^200 <html>oops' "garbage_rate=1 gives a 200 with a non-JSON body"
pay k-garb "$(body 24 800)"
is "$CODE $(header Idempotent-Replayed) $(jf .status)" '200 true "succeeded"' \
	"retry after garbage replays the proper success"
is "$(ledger '[.charges,.garbage_replies]')" '[6,1]' "garbage then retry is one charge"
http DELETE /faults

faults '{"latency_ms":300}'
pay k-slow "$(body 25 900)"
is "$CODE" 200 "latency: request succeeds"
ge "$TIME" 0.3 "latency: request takes at least latency_ms"
pay k-slow "$(body 25 900)"
ge "$TIME" 0.3 "latency: replays are delayed too"
# one curl process, 20 transfers in parallel (-Z), each with its own key
args=()
for i in $(seq 20); do
	[ $i -gt 1 ] && args+=(--next)
	args+=(-s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST
		-H "Idempotency-Key: k-par-$i" --data-binary "$(body $((100 + i)) 900)"
		"$URL/payments")
done
start=$(date +%s.%N)
curl -Z --parallel-max 20 "${args[@]}" > "$TMP/par"
lt "$(echo "$(date +%s.%N) - $start" | bc)" 2.0 \
	"latency: 20 parallel requests of 300 ms take < 2 s in all (not serialised)"
is "$(grep -c '^200 ' "$TMP/par")" 20 "latency: all 20 parallel requests succeed"
http DELETE /faults

args=()
for i in $(seq 10); do
	[ $i -gt 1 ] && args+=(--next)
	args+=(-s -o /dev/null -w '%{http_code}\n' -X POST -H "Idempotency-Key: k-race"
		--data-binary "$(body 70 1000)" "$URL/payments")
done
before=$(ledger .charges)
curl -Z --parallel-max 10 "${args[@]}" > "$TMP/race"
is "$(grep -c '^200' "$TMP/race") $(( $(ledger .charges) - before )) $(ledger .duplicates)" \
	"10 1 0" "10 concurrent requests with one key: all 200, one charge"

# --- server-side limiter ----------------------------------------------------------------

rl0=$(ledger .rate_limited)
faults '{"rate_limit_per_s":2}'
is "$CODE $(jf .rate_limit_per_s)" "200 2" "rate_limit_per_s is set"
codes=""
for i in $(seq 1 5); do
	pay "k-rl-$i" "$(body $((200 + i)) 1000)"
	codes+="$CODE "
	[ "$CODE" = 429 ] && { ra=$(header Retry-After); rlbody=$(jf .error); }
done
# the bucket refills 2 tokens a second: on a loaded machine a later request of
# the five may find a new token, so what is exact is the third (sent right
# after the burst) and that the ledger and the log count every 429 answered
n429=$(grep -o 429 <<<"$codes" | wc -l)
is "$(cut -d' ' -f1-3 <<<"$codes")" "200 200 429" "rate_limit_per_s 2: a burst of 2 passes, then 429"
is "${ra:-} ${rlbody:-}" '1 "rate_limited"' "the 429 carries Retry-After: 1 and {\"error\":\"rate_limited\"}"
is "$(( $(ledger .rate_limited) - rl0 ))" "$n429" "ledger counts rate_limited (each 429 answered)"
http GET /ledger/k-rl-3
is "$CODE" 404 "a limited request stores nothing under its key"
http GET /ledger/limited
like "$(header Content-Type)" '^text/plain' "the limited log is text/plain"
is "$(grep -c ' k-rl-' "$TMP/body")" "$n429" "the limited log holds every 429"
like "$(grep ' k-rl-3$' "$TMP/body")" '^1[0-9]{15} k-rl-3$' "limited log line: arrival_us, key"
sleep 1.1
pay k-rl-3 "$(body 203 1000)"
is "$CODE" 200 "a second later (2 tokens at 2/s) a request passes again"
faults '{"rate_limit_per_s":0,"max_concurrency":2,"latency_ms":300}'
cpids=()
for i in $(seq 4); do
	curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Idempotency-Key: k-mc-$i" \
		--data-binary "$(body $((300 + i)) 1000)" "$URL/payments" > "$TMP/mc-$i" &
	cpids+=($!)
done
wait "${cpids[@]}"
is "$(cat "$TMP"/mc-* | sort | tr '\n' ' ')" "200 200 429 429 " "max_concurrency 2: of 4 concurrent requests 2 pass, 2 get 429"
pay k-mc-5 "$(body 305 1000)"
is "$CODE" 200 "once they are answered the next request passes"
faults '{"max_concurrency":0,"latency_ms":0}'

# --- /faults validation ----------------------------------------------------------------

faults '{"bogus":1}'
is "$CODE $(jf .message)" '400 "unknown field \"bogus\""' "unknown /faults field is 400"
faults '{"fail_rate":"high"}'
is "$CODE" 400 "wrong type in /faults is 400"
faults '{"fail_rate":1.5}'
is "$CODE" 400 "rate above 1 is 400"
faults '{"decline_amount_minor":[1,"x"]}'
is "$CODE" 400 "non-integer in an amount list is 400"
faults '[1]'
is "$CODE" 400 "non-object /faults body is 400"
faults '{"rate_limit_per_s":-1}'
is "$CODE" 400 "negative rate_limit_per_s is 400"
faults '{"max_concurrency":1.5}'
is "$CODE" 400 "non-integer max_concurrency is 400"
http GET /faults
is "$(jf '[.fail_rate + 0,.latency_ms,.hang_ms,.fail_status]')" '[0,0,30000,503]' \
	"rejected updates leave the configuration unchanged"

# --- token --------------------------------------------------------------------------

faults '{"require_token":"s3cret"}'
pay k-tok "$(body 30 1000)"
is "$CODE $(jf .error)" '401 "unauthorized"' "require_token: no token is 401"
pay k-tok "$(body 30 1000)" -H 'Authorization: Bearer wrong'
is "$CODE $(ledger .last_auth_ok)" '401 false' "require_token: wrong token is 401"
http GET /ledger/k-tok
is "$CODE" 404 "401 stores nothing under the key"
pay k-tok "$(body 30 1000)" -H 'Authorization: Bearer s3cret'
is "$CODE $(ledger '[.unauthorized,.last_auth_ok]')" '200 [2,true]' "require_token: right token is charged"
faults '{"require_token":null}'
is "$(jf .require_token)" 'null' "require_token can be cleared"

# --- ledger ---------------------------------------------------------------------------

pay k-dup-a "$(body 40 1000)"
pay k-dup-b "$(body 40 1000)"
is "$(ledger '[.duplicate_orders,.duplicate_keys,.duplicates]')" '[1,0,1]' \
	"one order charged under two keys is a duplicate_order"
http GET /ledger/k-ok
is "$CODE $(jf '[.key,.order_id,.charged,.status,.requests,.payment_id]')" \
	"200 [\"k-ok\",1,true,200,4,$PAYID]" "GET /ledger/{key}"
like "$(jf .first_received_us)" '^1[0-9]{15}$' "first_received_us is realtime microseconds"
http GET /ledger/no-such-key
is "$CODE" 404 "GET /ledger/{unknown} is 404"
http GET /ledger/receipts
like "$(header Content-Type)" '^text/plain' "receipts are text/plain"
like "$(grep '^k-ok ' "$TMP/body")" '^k-ok 1 1[0-9]{15} 1$' "receipts line of a charged key"
like "$(grep '^k-decl ' "$TMP/body")" '^k-decl 10 [0-9]+ 0$' "receipts line of a declined key"
http GET /ledger/requests
like "$(header Content-Type)" '^text/plain' "requests are text/plain"
is "$(grep -c ' k-ok ' "$TMP/body")" 4 "request log: every request of a key, replays included"
like "$(grep ' k-ok ' "$TMP/body" | head -n 1)" '^1[0-9]{15} 127\.0\.0\.1 k-ok 1 c1$' \
	"request log line: arrival_us, source address, key, order_id, customer_id"
http DELETE /ledger
is "$CODE $(ledger '[.charges,.keys,.requests,.duplicates]')" '200 [0,0,0,0]' "DELETE /ledger clears"
http GET /ledger/requests
is "$CODE ${#BODY}" "200 0" "DELETE /ledger clears the request log"
http GET /ledger/limited
is "$CODE ${#BODY}" "200 0" "DELETE /ledger clears the limited log"

# --- 1.3: look-up, key retention, requires_action, refunds --------------------------------

http DELETE /faults
pay k-look "$(body 70 700)"
is "$CODE" 200 "a charge to look up"
pid70=$(jf .payment_id)
http GET /payments/k-look
is "$CODE $(jf .status) $(jf .payment_id)" "200 \"succeeded\" $pid70" "GET /payments/{key}: the payment's reply"
http GET /payments/k-never
is "$CODE" 404 "GET /payments/{key} of an unknown key: 404"
faults '{"key_ttl_s":1}'
sleep 1.2
before=$(ledger .charges)
pay k-look "$(body 70 700)"
is "$CODE $(header Idempotent-Replayed)" "200 " "past key_ttl_s a repeated key is not replayed"
is "$(( $(ledger .charges) - before )) $(curl -s "$URL/ledger/k-look" | jq -c .charges)" "1 2" "... it is a second charge under the key"
is "$(ledger .forgotten_keys)" "1" "... counted in forgotten_keys"
http DELETE /faults
faults '{"requires_action_amount_minor":[710]}'
pay k-act "$(body 71 710)"
is "$CODE $(jf .status) $(jf .next_action.type)" '200 "requires_action" "redirect_to_url"' "requires_action with next_action"
like "$(jf .client_secret)" '^"pay_[0-9]+_secret_fake"$' "... and a client_secret"
is "$(curl -s "$URL/ledger/k-act" | jq -c .charged)" "false" "... not charged yet"
http POST /ledger/k-act/complete
is "$CODE" 200 "POST /ledger/{key}/complete"
http GET /payments/k-act
is "$CODE $(jf .status) $(curl -s "$URL/ledger/k-act" | jq -c .charged)" '200 "succeeded" true' "... now succeeded and charged"
http DELETE /faults
pay k-ref "$(body 72 1000)"
refund() { http POST /refunds "$2" -H 'Content-Type: application/json' -H "Idempotency-Key: $1"; }
refund r-1 '{"payment_key":"k-ref","refund_key":"r-1","amount_minor":600,"currency":"EUR"}'
is "$CODE $(jf .status)" '200 "succeeded"' "POST /refunds: succeeded"
rid=$(jf .refund_id)
refund r-1 '{"payment_key":"k-ref","refund_key":"r-1","amount_minor":600,"currency":"EUR"}'
is "$CODE $(jf .refund_id) $(header Idempotent-Replayed)" "200 $rid true" "the same refund key: replayed"
refund r-1 '{"payment_key":"k-ref","refund_key":"r-1","amount_minor":500,"currency":"EUR"}'
is "$CODE" 422 "the refund key with another amount: 422"
refund r-2 '{"payment_key":"k-ref","refund_key":"r-2","amount_minor":500,"currency":"EUR"}'
is "$CODE $(jf .error)" '400 "invalid_request"' "more than is left of the charge: 400"
refund r-3 '{"payment_key":"k-none","refund_key":"r-3","amount_minor":5,"currency":"EUR"}'
is "$CODE" 400 "a refund of nothing charged: 400"
http GET /refunds/r-1
is "$CODE $(jf .refund_id)" "200 $rid" "GET /refunds/{key}"
http GET /refunds/r-none
is "$CODE" 404 "GET /refunds/{key} of an unknown key: 404"
is "$(ledger '[.refunds, .refunded_minor, .refunds_refused]')" "[1,600,2]" "GET /ledger: refund figures"

# --- env token ------------------------------------------------------------------------

start_gateway envtok FAKE_GATEWAY_TOKEN=envsecret
ENV_PID=$PID
pay k-env "$(body 50 1000)"
is "$CODE" 401 "FAKE_GATEWAY_TOKEN: no token is 401"
http DELETE /faults
pay k-env "$(body 50 1000)" -H 'Authorization: Bearer envsecret'
is "$CODE" 200 "FAKE_GATEWAY_TOKEN survives DELETE /faults and is accepted"
kill -TERM "$ENV_PID"; wait "$ENV_PID"
is "$?" 0 "SIGTERM exits 0"

# --- webhooks ----------------------------------------------------------------------------

URL="http://127.0.0.1:$(cat "$TMP/main.port")"
python3 "$HERE/webhook_sink.py" "$TMP/sink.port" "$TMP/sink.log" &
PIDS+=("$!")
for i in $(seq 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
[ -s "$TMP/sink.port" ] || bail "webhook sink did not start"
SINK="http://127.0.0.1:$(cat "$TMP/sink.port")"
: > "$TMP/sink.log"
# sink_wait N: until the sink logged N events (the sender is asynchronous)
sink_wait() { local i; for i in $(seq 200); do [ "$(wc -l < "$TMP/sink.log")" -ge "$1" ] && return 0; sleep 0.05; done; return 1; }
# wh_wait JQ: until GET /webhooks satisfies the jq condition
wh_wait() { local i; for i in $(seq 200); do [ "$(curl -s "$URL/webhooks" | jq "$1")" == true ] && return 0; sleep 0.05; done; return 1; }
# sig_ok LINE SECRET: "ok" when the line's v1 is HMAC-SHA256(secret, t.body)
sig_ok()
{
	local sig body t v1 want
	sig=$(jq -r .signature <<<"$1"); body=$(jq -r .body <<<"$1")
	t=$(sed -E 's/^t=([0-9]+),v1=.*$/\1/' <<<"$sig"); v1=$(sed -E 's/^.*,v1=([0-9a-f]+)$/\1/' <<<"$sig")
	want=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$2" | sed 's/^.*= //')
	[ "$v1" == "$want" ] && echo ok || echo "mismatch"
}

http DELETE /faults
faults '{"webhook_url":"ftp://127.0.0.1/x"}'
is "$CODE" 400 "webhook_url must be http://"
faults '{"webhook_duplicates":11}'
is "$CODE" 400 "webhook_duplicates above 10 is refused"
faults "{\"webhook_url\":\"$SINK/hook\",\"webhook_secret\":\"whsec_test\"}"
is "$CODE $(jf .webhook_url) $(jf .webhook_secret_set)" "200 \"$SINK/hook\" true" \
	"POST /faults sets the webhook URL and secret (the secret is not shown)"

pay k-wh-1 "$(body 70 1234)"
is "$CODE" 200 "a charge with webhooks on"
sink_wait 1
line=$(sed -n 1p "$TMP/sink.log")
is "$(jq -r '.signature_header + " " + (.body | fromjson | .type + " " + .payment_key + " " + .status + " " + (.amount_minor|tostring) + " " + .currency)' <<<"$line")" \
	"Webhook-Signature payment.succeeded k-wh-1 succeeded 1234 EUR" "the charge is sent as a generic payment.succeeded event"
is "$(sig_ok "$line" whsec_test)" ok "the event is signed: v1 = HMAC-SHA256(secret, t.body)"
faults '{"decline_amount_minor":[13]}'
pay k-wh-2 "$(body 71 13)"
sink_wait 2
line=$(sed -n 2p "$TMP/sink.log")
is "$(jq -r '.body | fromjson | .type + " " + .status' <<<"$line")" "payment.failed declined" \
	"a decline is sent as payment.failed"
pay k-wh-1 "$(body 70 1234)"
is "$CODE $(header Idempotent-Replayed)" "200 true" "a replayed key ..."
http GET /webhooks
is "$(jf '[.queued, .delivered]')" "[2,2]" "... is no new event: 2 queued, 2 delivered"

# duplicates, reordering, hand-made events, bad signatures
: > "$TMP/sink.log"
faults '{"webhook_duplicates":1,"webhook_reorder":true,"webhook_delay_ms":200}'
http POST /webhooks/send '{"provider":"generic","events":[{"event_id":"e1","type":"payment.canceled"},{"event_id":"e2","type":"refund.succeeded"}]}'
is "$CODE $(jf .queued)" "202 4" "POST /webhooks/send queues 2 events + 1 duplicate each"
sink_wait 4
is "$(jq -r '.body | fromjson | .event_id' "$TMP/sink.log" | tr '\n' ' ')" "e2 e2 e1 e1 " \
	"webhook_reorder: the batch arrives last-in first-out, duplicates included"
http POST /webhooks/send '{"provider":"stripe","bad_signature":true,"events":[{"id":"evt_1","type":"charge.refunded"}]}'
sink_wait 6
line=$(sed -n 5p "$TMP/sink.log")
is "$(jq -r .signature_header <<<"$line") $(sig_ok "$line" whsec_test)" "Stripe-Signature mismatch" \
	"bad_signature: a Stripe event signed with another secret"
http POST /webhooks/send '{"provider":"paypal","events":[]}'
is "$CODE" 400 "POST /webhooks/send with an unknown provider: 400"

# Stripe-shaped events from the PaymentIntents endpoint
: > "$TMP/sink.log"
faults '{"webhook_duplicates":0,"webhook_reorder":false,"webhook_delay_ms":0}'
http POST /v1/payment_intents 'amount=500&currency=usd&confirm=true&payment_method=pm_card_visa&metadata%5Border_id%5D=77' \
	-H 'Authorization: Bearer sk_test' -H 'Idempotency-Key: k-wh-pi' -H 'Content-Type: application/x-www-form-urlencoded'
is "$CODE" 200 "a PaymentIntent with webhooks on"
sink_wait 1
line=$(sed -n 1p "$TMP/sink.log")
is "$(jq -r '.signature_header + " " + (.body | fromjson | .type + " " + .data.object.status + " " + .data.object.metadata.order_id)' <<<"$line")" \
	"Stripe-Signature payment_intent.succeeded succeeded 77" "... is sent as payment_intent.succeeded with metadata.order_id"
is "$(sig_ok "$line" whsec_test)" ok "... signed the Stripe way"

# a rejecting receiver, a held event, DELETE /webhooks
faults "{\"webhook_url\":\"$SINK/reject\"}"
http POST /webhooks/send '{"provider":"generic","events":[{"event_id":"e3"}]}'
wh_wait '.rejected >= 1'
http GET /webhooks
is "$(jf .rejected) $(jf .last_status)" "1 400" "a 4xx from the receiver is counted as rejected"
faults '{"webhook_delay_ms":600000}'
http POST /webhooks/send '{"provider":"generic","events":[{"event_id":"e4"}]}'
http GET /webhooks
is "$(jf .queue)" 1 "webhook_delay_ms holds the event in the queue"
http DELETE /webhooks
is "$(jf '[.queue, .sent]')" "[0,0]" "DELETE /webhooks empties the queue and the counters"
http DELETE /faults
pay k-wh-3 "$(body 72 1000)"
http GET /webhooks
is "$(jf .queued)" 0 "DELETE /faults turns webhooks off"

# --- shutdown with a hanging request ------------------------------------------------------

URL="http://127.0.0.1:$(cat "$TMP/main.port")"
faults '{"timeout_rate":1,"hang_ms":30000}'
curl -s -o /dev/null --max-time 40 -X POST -H "Idempotency-Key: k-hang" \
	--data-binary "$(body 60 1000)" "$URL/payments" &
CURL_PID=$!
sleep 0.3
start=$(date +%s.%N)
kill -TERM "$MAIN_PID"
wait "$MAIN_PID"
rc=$?
lt "$(echo "$(date +%s.%N) - $start" | bc)" 1.0 "SIGTERM with a hanging request exits within 1 s"
is "$rc" 0 "... with exit status 0"
wait "$CURL_PID" 2>/dev/null

echo "1..$N"
exit $((FAILED > 0))
