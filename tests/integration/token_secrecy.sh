#!/bin/bash
# token_secrecy.sh: the gateway token reaches the gateway and nothing else.
#
# PostgreSQL's postmaster logs 'parameter "..." changed to "<value>"' on
# every reload, so a literal ft_orders.gateway_token would land in the
# server log.  ft_orders.gateway_token = 'file:/path' makes the workers
# read the token from that file (at start and on every reload): only the
# path is ever logged.  The fake gateway's require_token fault answers 401
# to any other bearer.  Checks: the right token pays orders; a wrong one
# gets 401s that are retried with a WARNING; rotating the file's content
# plus a reload takes effect; a missing file is a WARNING naming the path;
# the token string is in no log line and no table; a non-superuser cannot
# read the setting; a literal token still works (and, as a control for
# the grep, is logged on reload: the reason for the file form); members of
# pg_monitor and pg_read_all_settings, who may read superuser-only
# settings, see it masked (SHOW, current_setting, pg_settings, SHOW ALL,
# pg_file_settings).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

SECRET="tok_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')_s3cr3t"
WRONG="tok_wrong_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TOKEN_FILE=$FT_TMP/gateway.token

write_token()
{
	printf '  %s\n\n' "$1" >"$TOKEN_FILE"
	chmod 600 "$TOKEN_FILE"
	[ "$(id -u)" -eq 0 ] && chown "$FT_PG_USER" "$TOKEN_FILE"
	return 0
}

write_token "$SECRET"
gw_start || bail_out "fake gateway did not start"
gw_faults "{\"require_token\":\"$SECRET\"}" || bail_out "could not set faults"
pg_start "ft_orders.gateway_url = '$GW_URL'" \
	"ft_orders.gateway_token = 'file:$TOKEN_FILE'" \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '20ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = 1000" "ft_orders.circuit_failure_threshold = 100000" ||
	bail_out "server did not start"

# 1. the right token, from the file
place_orders ok 5
wait_until "SELECT count(*) = 5 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "orders are paid with the token read from the file"
is "$(gw_ledger charges)" "5" "ledger: 5 charges"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts WHERE http_status = 401")" "0" \
	"no request was refused"

# 2. a wrong token in the same file, reload: 401, retried, WARNING
write_token "$WRONG"
pg_reload
sleep 1
place_orders wrong 3 200
wait_until "SELECT count(DISTINCT order_id) = 3 FROM ft_orders.payment_attempts a
            JOIN ft_orders.orders o USING (order_id)
            WHERE o.idempotency_key LIKE 'wrong-%' AND a.http_status = 401 AND a.attempt >= 2" 30
ok $? "with a wrong token every request gets 401 and is retried"
is "$(psql_q "SELECT string_agg(DISTINCT status::text, ',') FROM ft_orders.orders WHERE idempotency_key LIKE 'wrong-%'")" \
	"pending" "orders refused for credentials stay pending"
is "$(gw_ledger charges)" "5" "ledger: no charge with the wrong token"
grep -q 'WARNING:  payment gateway refused the credentials: HTTP 401' "$PG_LOG"
ok $? "a WARNING about the credentials is in the log"

# 3. rotate back to the right token: same path, only a reload
write_token "$SECRET"
pg_reload
wait_until "SELECT count(*) = 8 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "after rotating the file's content and a reload the refused orders are paid"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"

# 4. a missing file: WARNING naming the path, requests without the header
MISSING=$FT_TMP/no/such/token
pg_set ft_orders.gateway_token "file:$MISSING"
psql_q "SELECT order_id FROM ft_orders.place_order('missing-1', 'cust', 301, 'EUR')" >/dev/null
wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts a JOIN ft_orders.orders o USING (order_id)
            WHERE o.idempotency_key = 'missing-1' AND a.http_status = 401" 20
ok $? "with a missing token file the request goes out without a valid bearer (401)"
line=$(grep -F "could not open gateway token file \"$MISSING\"" "$PG_LOG" | head -1)
like "$line" "WARNING: .*could not open gateway token file .*No such file or directory" \
	"the WARNING names the path and the reason"
pg_set ft_orders.gateway_token "file:$TOKEN_FILE"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'missing-1'" 20
ok $? "pointing the setting back at the file pays the order"

# 5. a relative path is refused by the check hook
out=$(psql -XAtq -c "ALTER SYSTEM SET ft_orders.gateway_token = 'file:relative/token'" 2>&1)
like "$out" "token file must be given as .file:. followed by an absolute path" \
	"file: with a relative path is refused"

# 6. secrecy: nowhere in the log or the tables, even after reloads
pg_reload
sleep 1
is "$(grep -c -F -- "$SECRET" "$PG_LOG")" "0" "the token is not in the server log"
like "$(grep -F 'parameter "ft_orders.gateway_token" changed to' "$PG_LOG" | tail -1)" "changed to \"file:/" \
	"the log shows only the file path for the setting"
is "$(psql_q "SELECT (SELECT count(*) FROM ft_orders.payment_attempts WHERE payment_attempts::text LIKE '%$SECRET%')
              || ' ' || (SELECT count(*) FROM ft_orders.order_events WHERE order_events::text LIKE '%$SECRET%')
              || ' ' || (SELECT count(*) FROM ft_orders.orders WHERE orders::text LIKE '%$SECRET%')
              || ' ' || (SELECT count(*) FROM ft_orders.dead_letters WHERE dead_letters::text LIKE '%$SECRET%')
              || ' ' || (SELECT count(*) FROM ft_orders.worker_status WHERE worker_status::text LIKE '%$SECRET%')")" \
	"0 0 0 0 0" "the token is in no row of payment_attempts, order_events, orders, dead_letters, worker_status"
is "$(psql_q "SELECT current_setting('ft_orders.gateway_token')")" "file:$TOKEN_FILE" \
	"a superuser sees only the path"

# 7. a non-superuser cannot read the setting at all
psql_q "CREATE ROLE token_reader LOGIN; GRANT ft_orders_app TO token_reader" >/dev/null
out=$(psql -XAtq -U token_reader -c "SHOW ft_orders.gateway_token" 2>&1)
like "$out" "permission denied|must be superuser|pg_read_all_settings" "non-superuser: SHOW is refused"
out=$(psql -XAtq -U token_reader -c "SELECT current_setting('ft_orders.gateway_token')" 2>&1)
like "$out" "permission denied|must be superuser|pg_read_all_settings" "non-superuser: current_setting is refused"
is "$(psql -XAtq -U token_reader -c "SELECT count(*) FROM pg_settings WHERE name = 'ft_orders.gateway_token'" 2>&1)" \
	"0" "non-superuser: no pg_settings row"

# 8. a literal token still works -- and is logged on reload (the control)
LITERAL="lit_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
gw_faults "{\"require_token\":\"$LITERAL\"}"
pg_set ft_orders.gateway_token "$LITERAL"
psql_q "SELECT order_id FROM ft_orders.place_order('literal-1', 'cust', 401, 'EUR')" >/dev/null
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'literal-1'" 20
ok $? "a literal token still works"
cmp_ok "$(grep -c -F -- "$LITERAL" "$PG_LOG")" -ge 1 \
	"control: a literal token is in the log after a reload (why the file form exists)"
is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"

# 9. monitoring roles (pg_monitor, the exporter's; pg_read_all_settings) may
#    read superuser-only settings: the literal token is masked for them
psql_q "CREATE ROLE token_monitor LOGIN; GRANT pg_monitor TO token_monitor;
        CREATE ROLE token_settings LOGIN; GRANT pg_read_all_settings TO token_settings" >/dev/null
for r in token_monitor token_settings; do
	is "$(psql -XAtq -U $r -c "SHOW ft_orders.gateway_token" 2>&1)" "********" \
		"$r: SHOW prints a mask"
	is "$(psql -XAtq -U $r -c "SELECT current_setting('ft_orders.gateway_token')" 2>&1)" "********" \
		"$r: current_setting() returns the mask"
	is "$(psql -XAtq -U $r -c "SELECT count(*) FROM pg_settings WHERE name = 'ft_orders.gateway_token'" 2>&1)" "0" \
		"$r: no pg_settings row (nor its reset_val)"
	is "$(psql -XAtq -U $r -c "SHOW ALL" 2>&1 | grep -c -F -- "$LITERAL")" "0" "$r: not in SHOW ALL"
	like "$(psql -XAtq -U $r -c "SELECT setting FROM pg_file_settings WHERE name = 'ft_orders.gateway_token'" 2>&1)" \
		"permission denied" "$r: pg_file_settings is refused"
done
is "$(psql_q "SHOW ft_orders.gateway_token")" "$LITERAL" "a superuser still sees the literal token"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
