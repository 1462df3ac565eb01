#!/bin/bash
# reload.sh: settings change live on SIGHUP (pg_reload_conf).
#
#  - a wrong gateway_url: orders stay pending (connection errors are
#    retried); switching gateway_url with a reload gets them paid;
#  - an empty gateway_url leaves the workers idle with a LOG hint;
#  - a gateway that wants a token answers 401: WARNING, orders pending, the
#    token never appears in the log; setting gateway_token gets them paid;
#  - commits do not wake workers that have no gateway_url; setting it gets
#    what was placed meanwhile paid.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_start || bail_out "fake gateway did not start"
wrong_port=$(free_port)
pg_start "ft_orders.gateway_url = 'http://127.0.0.1:$wrong_port'" \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.circuit_open_time = '1s'" ||
	bail_out "server did not start"

# --- wrong URL, then the right one ------------------------------------------
place_orders url 10
wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts WHERE error LIKE '%connect%'" 10
ok $? "requests to the wrong port fail with a connection error"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "10" "orders stay pending"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = 10 FROM ft_orders.orders WHERE status = 'paid'" 20
ok $? "after the reload to the right URL every order is paid"
is "$(gw_ledger charges)" "10" "ledger: 10 charges"

# --- empty URL: idle ----------------------------------------------------------
pg_set ft_orders.gateway_url ""
sleep 1
psql_q "SELECT order_id FROM ft_orders.place_order('idle-1', 'cust', 100, 'EUR')" >/dev/null
sleep 1
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'idle-1'")" "pending" \
	"with an empty gateway_url the order waits"
is "$(psql_q "SELECT count(*) FROM ft_orders.payment_attempts a JOIN ft_orders.orders o USING (order_id)
              WHERE o.idempotency_key = 'idle-1'")" "0" "and nothing is sent"
like "$(grep -c 'gateway_url is not set' "$PG_LOG")" '^[1-9]' "the workers log a hint"
is "$(psql_q "SELECT count(*) FROM ft_orders.worker_status WHERE state = 'idle'")" "2" "the workers are idle"

# --- token ------------------------------------------------------------------
gw_faults '{"require_token":"s3cr3t-T0ken"}' || bail_out "could not set faults"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) > 0 FROM ft_orders.payment_attempts a JOIN ft_orders.orders o USING (order_id)
            WHERE o.idempotency_key = 'idle-1' AND a.http_status = 401" 10
ok $? "without the token the gateway answers 401"
is "$(psql_q "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'idle-1'")" "pending" \
	"a 401 keeps the order pending"
like "$(grep -c 'refused the credentials' "$PG_LOG")" '^[1-9]' "a 401 is a WARNING in the log"
pg_set ft_orders.gateway_token "s3cr3t-T0ken"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'idle-1'" 20
ok $? "after setting gateway_token the order is paid"
# (PostgreSQL's own postmaster logs 'parameter "..." changed to "..."' for
# every reloaded setting, the secret included: not ours to suppress)
is "$(grep 's3cr3t-T0ken' "$PG_LOG" | grep -vc 'parameter "ft_orders.gateway_token" changed to')" "0" \
	"the workers never log the token"

# --- no wake-ups for idle workers -------------------------------------------
pg_set ft_orders.gateway_url ""
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'" 10
sleep 1
# an idle worker (no URL) could do nothing with a commit's wake-up, so
# place_order's commits leave it asleep: 1000 commits, and the workers'
# voluntary context switches (one per wake-up; without URL they wait up to
# a second) stay near zero instead of rising with the commits
ctxsw() {
	local t=0 p
	for p in $(psql_q "SELECT string_agg(pid::text, ' ') FROM ft_orders.worker_status WHERE pid > 0"); do
		t=$((t + $(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$p/status")))
	done
	echo "$t"
}
sw0=$(ctxsw)
psql_q "DO \$\$ BEGIN
          FOR i IN 1..1000 LOOP
            PERFORM ft_orders.place_order('idle-burst-' || i, 'cust', 100, 'EUR');
            COMMIT;
          END LOOP;
        END \$\$" >/dev/null
sw=$(($(ctxsw) - sw0))
diag "idle workers: $sw voluntary context switches during 1000 commits"
cmp_ok "$sw" -lt 100 "1000 commits do not wake workers that have no gateway_url"
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE idempotency_key LIKE 'idle-burst-%' AND status = 'pending'")" "1000" \
	"the 1000 orders are committed and wait"
pg_set ft_orders.gateway_url "$GW_URL"
wait_until "SELECT count(*) = 1000 FROM ft_orders.orders WHERE idempotency_key LIKE 'idle-burst-%' AND status = 'paid'" 30
ok $? "once gateway_url is set again they are all paid"

is "$(gw_ledger duplicates)" "0" "ledger: no duplicates"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
