#!/bin/bash
# url_safety.sh: ft_orders.gateway_url only ever points at an http(s) host,
# and the workers never follow a redirect.
#
# 1. file://, gopher://, dict://, ftp://, a URL with a space and URLs
#    without a host are refused by ALTER SYSTEM (check hook) and, written
#    straight into postgresql.conf, by the reload: the previous value stays
#    and the log says why.
# 2. A file:// URL naming a file that holds a valid "succeeded" reply is
#    never fetched: no request, the order stays pending.
# 3. A local server answering 302/307 (harness/redirect_server.py) to the
#    fake gateway: the redirect is not followed (ledger: 0 requests), and
#    each 3xx is a transient failure.  3xx is not in the reply table of
#    docs/reference.md, "Wire protocol"; like any unexpected status it is retried with backoff.
# 4. user:password@ in the URL is refused (22023); plain http:// only to
#    localhost, 127.0.0.0/8 or [::1], unless ft_orders.allow_insecure_http
#    (postmaster) is on.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_start || bail_out "fake gateway did not start"
pg_start "ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 100000" ||
	bail_out "server did not start"

# a "gateway" on disk: file://$FT_TMP/filegw + /payments would read this
mkdir -p "$FT_TMP/filegw"
echo '{"status":"succeeded","payment_id":"pay_from_file"}' >"$FT_TMP/filegw/payments"
chmod -R a+rX "$FT_TMP/filegw"

BAD_URLS=(
	"file://$FT_TMP/filegw"
	"gopher://127.0.0.1:$GW_PORT/"
	"dict://127.0.0.1:$GW_PORT/"
	"ftp://127.0.0.1:$GW_PORT/"
	"http://127.0.0.1:$GW_PORT/a b"
	"http://"
	"http:///payments"
	"http://:$GW_PORT"
	"https://"
)

# 1a. ALTER SYSTEM refuses each one; the setting stays empty
for url in "${BAD_URLS[@]}"; do
	out=$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_url = '$url'" 2>&1)
	like "$out" "invalid value for parameter \"ft_orders.gateway_url\"" "ALTER SYSTEM refuses '$url'"
done
like "$(psql -XAt -c "ALTER SYSTEM SET ft_orders.gateway_url = 'gopher://x/'" 2>&1)" \
	"Only http:// and https:// URLs are accepted" "the error says which schemes are accepted"
like "$(psql -XAt -c "ALTER SYSTEM SET ft_orders.gateway_url = 'http://'" 2>&1)" \
	"The URL has no host name" "the error says the host is missing"
like "$(psql -XAt -c "ALTER SYSTEM SET ft_orders.gateway_url = 'http://h/a b'" 2>&1)" \
	"contains a space" "the error says the URL has a space"
is "$(grep -c gateway_url "$PGDATA/postgresql.auto.conf")" "0" "nothing was written to postgresql.auto.conf"

# 1b. the same values written into postgresql.conf are refused at reload
psql_q "SELECT order_id FROM ft_orders.place_order('file-1', 'cust', 100, 'EUR')" >/dev/null
cp "$PGDATA/postgresql.conf" "$FT_TMP/postgresql.conf.orig"
for url in "${BAD_URLS[@]}"; do
	before=$(grep -c 'invalid value for parameter "ft_orders.gateway_url"' "$PG_LOG")
	cp "$FT_TMP/postgresql.conf.orig" "$PGDATA/postgresql.conf"
	echo "ft_orders.gateway_url = '$url'" >>"$PGDATA/postgresql.conf"
	pg_reload
	for _ in $(seq 1 50); do
		[ "$(grep -c 'invalid value for parameter "ft_orders.gateway_url"' "$PG_LOG")" -gt "$before" ] && break
		sleep 0.1
	done
	after=$(grep -c 'invalid value for parameter "ft_orders.gateway_url"' "$PG_LOG")
	cmp_ok "$after" -gt "$before" "reload of postgresql.conf with '$url' is refused in the log"
	is "$(psql_q "SHOW ft_orders.gateway_url")" "" "the setting keeps its previous (empty) value after '$url'"
done
grep -A1 'invalid value for parameter "ft_orders.gateway_url"' "$PG_LOG" | grep -q 'DETAIL:  Only http:// and https:// URLs are accepted'
ok $? "the reload's log line says why"

# 2. never fetched: the order stays pending, no attempt was made
sleep 2
is "$(psql_q "SELECT status || ' ' || attempts FROM ft_orders.orders WHERE idempotency_key = 'file-1'")" "pending 0" \
	"the order stays pending: the file:// 'gateway' was never read"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts")" "0" "no payment attempt was made"
cp "$FT_TMP/postgresql.conf.orig" "$PGDATA/postgresql.conf"
pg_reload

# 3. redirects are not followed
portfile=$FT_TMP/redirect.port
python3 "$(dirname "$0")/harness/redirect_server.py" "$portfile" "$GW_URL" 302 307 >"$FT_TMP/redirect.log" 2>&1 &
FT_PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$portfile" ] && break; sleep 0.05; done
[ -s "$portfile" ] || bail_out "redirect server did not start"
REDIRECT_URL="http://127.0.0.1:$(cat "$portfile")"

pg_set ft_orders.gateway_url "$REDIRECT_URL"
wait_until "SELECT count(*) FILTER (WHERE http_status = 302) >= 2 AND count(*) FILTER (WHERE http_status = 307) >= 2
            FROM ft_orders.payment_attempts" 30
ok $? "302 and 307 replies were recorded, several times each (retried)"
is "$(psql_q "SELECT string_agg(DISTINCT outcome::text, ',') FROM ft_orders.payment_attempts")" "retry" \
	"every 3xx is classified as a retry"
is "$(psql_q "SELECT string_agg(DISTINCT error, ',' ORDER BY error) FROM ft_orders.payment_attempts")" "HTTP 302,HTTP 307" \
	"the attempts say which redirect came back"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'file-1'")" "pending" \
	"the order is not paid via the redirect"
is "$(gw_ledger requests)" "0" "the redirect target (fake gateway) got 0 requests"
is "$(gw_ledger charges)" "0" "ledger: 0 charges"

# pointing at the real gateway pays it, once
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'file-1'" 20
ok $? "with the gateway's own URL the order is paid"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "1 0" "ledger: one charge, no duplicates"
# 4. no credentials in the URL; plain http only to the loopback interface
#    unless ft_orders.allow_insecure_http (a postmaster setting) is on
for url in "https://user:pass@pay.example.com" "http://tok@127.0.0.1:$GW_PORT/" "https://pay.example.com:@x/"; do
	out=$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_url = '$url'" 2>&1)
	like "$out" "ERROR:  invalid value for parameter \"ft_orders.gateway_url\".*contains credentials" \
		"credentials in '$url' are refused"
done
out=$(psql -X -c "\\set VERBOSITY verbose" -c "ALTER SYSTEM SET ft_orders.gateway_url = 'http://pay.example.com'" 2>&1)
like "$out" "ERROR:  22023: invalid value for parameter \"ft_orders.gateway_url\"" \
	"http:// to another host than loopback: 22023"
like "$out" "would send the gateway token in clear" "... the detail says why"
like "$out" "HINT:  Use https://, or set ft_orders.allow_insecure_http = on" "... the hint says how"
for url in "http://10.1.2.3:8080/x" "http://127.0.0.1.evil.example/" "http://[::2]/" "http://localhost.evil.example"; do
	like "$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_url = '$url'" 2>&1)" "token in clear" \
		"plain '$url' is refused"
done
for url in "http://localhost:$GW_PORT" "http://127.0.0.2:$GW_PORT/" "http://[::1]:$GW_PORT/" "https://pay.example.com/v1"; do
	out=$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_url = '$url'" 2>&1)
	is "$out" "" "'$url' is accepted"
done
psql_q "ALTER SYSTEM RESET ft_orders.gateway_url" >/dev/null
is "$(psql_q "SHOW ft_orders.allow_insecure_http")" "off" "ft_orders.allow_insecure_http is off by default"
like "$(psql -XAtq -c "SET ft_orders.allow_insecure_http = on" 2>&1)" "cannot be changed without restarting the server" \
	"... and only a restart changes it"
psql_q "ALTER SYSTEM SET ft_orders.allow_insecure_http = on" >/dev/null
pg_stop && pg_start_again || bail_out "restart failed"
is "$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_url = 'http://pay.example.com'" 2>&1)" "" \
	"with ft_orders.allow_insecure_http = on a plain http:// URL is accepted"
like "$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_url = 'http://u:p@pay.example.com'" 2>&1)" "contains credentials" \
	"... but never one with credentials"
psql_q "ALTER SYSTEM RESET ft_orders.gateway_url" >/dev/null

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
