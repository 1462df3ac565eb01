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
