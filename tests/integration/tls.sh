#!/bin/bash
# tls.sh: certificate verification of an https gateway.
#
# A self-signed certificate (CN and SAN 127.0.0.1) on a local https
# endpoint (harness/tls_proxy.py, forwarding to the fake gateway):
#   - defaults (tls_verify = on, system CA store): the handshake fails,
#     orders stay pending and last_error names the certificate problem;
#   - ft_orders.ca_file = the certificate: orders are paid;
#   - tls_verify = off (ca_file empty again): orders are paid;
#   - tls_verify back on with a CA file that is some other certificate:
#     refused again.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

command -v openssl >/dev/null || { echo "1..0 # SKIP openssl is not installed"; exit 0; }

mkcert()
{
	# mkcert NAME CN
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$2" \
		-addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$FT_TMP/$1.key" -out "$FT_TMP/$1.crt" >"$FT_TMP/openssl.log" 2>&1
}
mkcert server 127.0.0.1 || { cat "$FT_TMP/openssl.log"; bail_out "openssl could not make a certificate"; }
mkcert other 127.0.0.1 || bail_out "openssl could not make the second certificate"
chmod 644 "$FT_TMP"/*.crt

gw_start || bail_out "fake gateway did not start"
portfile=$FT_TMP/tls.port
python3 "$(dirname "$0")/harness/tls_proxy.py" "$portfile" "$FT_TMP/server.crt" "$FT_TMP/server.key" "$GW_URL" \
	>"$FT_TMP/tls_proxy.log" 2>&1 &
FT_PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$portfile" ] && break; sleep 0.05; done
[ -s "$portfile" ] || { cat "$FT_TMP/tls_proxy.log"; bail_out "https endpoint did not start"; }
HTTPS_URL="https://127.0.0.1:$(cat "$portfile")"

# the endpoint itself works (so a refusal below is the worker's doing)
like "$(curl -sS --cacert "$FT_TMP/server.crt" -X POST -H 'Content-Type: application/json' \
	-H 'Idempotency-Key: 00000000-0000-0000-0000-00000000tls0' \
	-d '{"order_id":0,"payment_key":"00000000-0000-0000-0000-00000000tls0","customer_id":"c","amount_minor":1,"currency":"EUR","payment_method":null,"items":[]}' \
	"$HTTPS_URL/payments" 2>&1)" '"status": ?"succeeded"' "the https endpoint answers curl given the certificate"
charges0=$(gw_ledger charges)

pg_start "ft_orders.gateway_url = '$HTTPS_URL'" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 100000" ||
	bail_out "server did not start"
is "$(psql_q "SHOW ft_orders.tls_verify")|$(psql_q "SHOW ft_orders.ca_file")" "on|" \
	"defaults: tls_verify on, no CA file"

# 1. defaults: refused
place_orders tls 3
wait_until "SELECT count(*) = 3 FROM ft_orders.orders WHERE attempts >= 2" 30
ok $? "with defaults every order is tried (and retried)"
is "$(psql_q "SELECT string_agg(DISTINCT status::text, ',') FROM ft_orders.orders")" "pending" \
	"with defaults the orders stay pending"
like "$(psql_q "SELECT last_error FROM ft_orders.orders ORDER BY order_id LIMIT 1")" \
	"[Cc]ertificate|SSL" "last_error names the certificate problem"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE http_status IS NOT NULL AND http_status <> 0")" "0" \
	"no HTTP reply was received over the unverified connection"
is "$(gw_ledger charges)" "$charges0" "ledger: no charge"

# 2. ca_file = the self-signed certificate: paid
pg_set ft_orders.ca_file "$FT_TMP/server.crt"
wait_until "SELECT count(*) = 3 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "with ft_orders.ca_file naming the certificate the orders are paid"

# 3. tls_verify = off (no CA file): paid
pg_set ft_orders.ca_file ""
pg_set ft_orders.tls_verify off
psql_q "SELECT count(*) FROM generate_series(4, 6) g,
        LATERAL ft_orders.place_order('tls-' || g, 'cust', 100 + g, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 6 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "with tls_verify = off the orders are paid"

# 4. verification on with the wrong CA: refused again
pg_set ft_orders.tls_verify on
pg_set ft_orders.ca_file "$FT_TMP/other.crt"
psql_q "SELECT order_id FROM ft_orders.place_order('tls-7', 'cust', 107, 'EUR')" >/dev/null
wait_until "SELECT attempts >= 2 FROM ft_orders.orders WHERE idempotency_key = 'tls-7'" 30
ok $? "with another certificate as CA file the order is retried"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'tls-7'")" "pending" \
	"... and stays pending"
like "$(psql_q "SELECT last_error FROM ft_orders.orders WHERE idempotency_key = 'tls-7'")" \
	"[Cc]ertificate|SSL" "... with a certificate error"

is "$(gw_ledger charges)" "$((charges0 + 6))" "ledger: 6 charges"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
