#!/usr/bin/env bash
# demo.sh: what `make demo` does.  Sets everything up, starts a throwaway
# PostgreSQL with ft_orders and the fake gateway injecting faults, places
# orders (with a replay and a rejected key reuse), and shows the monitoring
# views while the payment workers drain the outbox.  Cleans up at exit.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tests/setup/deps.sh --demo || exit 1	# the build, the fake gateway, the example service: not the test stack
bash tests/setup/build.sh || exit 1
source tests/lib/common.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { echo "ftdb=# $1"; psql -X -P pager=off -c "$1"; }

gw_start || exit 1
say "fake gateway on $GW_URL: 20% HTTP 503 (Retry-After 1s), 2% lost replies, 2% garbage bodies, 20 ms latency, amount 1300 declined, amount 4220 rejected"
gw_faults '{"fail_rate":0.2,"fail_status":503,"retry_after_s":1,"timeout_rate":0.02,"garbage_rate":0.02,"latency_ms":20,"decline_amount_minor":[1300],"reject_amount_minor":[4220]}'

pg_start "ft_orders.gateway_url = '$GW_URL'" \
	"ft_orders.request_timeout = '2s'" \
	"ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '200ms'" \
	"ft_orders.backoff_max = '3s'" \
	"ft_orders.max_attempts = 8" \
	"ft_orders.circuit_failure_threshold = 50" || exit 1
say "PostgreSQL 15 on 127.0.0.1:$PGPORT, database ftdb, ft_orders preloaded"

# the example service's pages: roles with passwords (the console signs in
# as the operator's own role), then the service on a free port
svc=examples/node-order-service
psql_q "CREATE ROLE demo_app LOGIN PASSWORD 'demo-app' IN ROLE ft_orders_app;
        CREATE ROLE demo_ops LOGIN PASSWORD 'demo-ops'" >/dev/null &&
	psql -XAtq -v ON_ERROR_STOP=1 -v operator=demo_ops -f "$svc/operator_grants.sql" >/dev/null &&
	as_pg sh -c "{ echo 'host all demo_app,demo_ops 127.0.0.1/32 scram-sha-256'; cat '$PGDATA/pg_hba.conf'; } >'$PGDATA/pg_hba.new' && mv '$PGDATA/pg_hba.new' '$PGDATA/pg_hba.conf'" &&
	pg_reload || exit 1
svc_port=$(free_port)
FT_WRITE_PORT=$PGPORT FT_USER=demo_app FT_PASSWORD=demo-app FT_LISTEN_PORT=$svc_port \
	FT_FAKE_GATEWAY_URL=$GW_URL node "$svc/server.js" >"$FT_TMP/service.log" 2>&1 &
FT_PIDS+=("$!")
for _ in $(seq 1 50); do
	grep -q '"event":"started"' "$FT_TMP/service.log" && break
	sleep 0.1
done
grep -q '"event":"started"' "$FT_TMP/service.log" || { cat "$FT_TMP/service.log" >&2; exit 1; }
say "example service: checkout http://127.0.0.1:$svc_port/  console http://127.0.0.1:$svc_port/console (role demo_ops, password demo-ops)"

say "place an order, then the same request again (a replay), then the same key with another amount"
show "SELECT * FROM ft_orders.place_order('demo-first', 'alice', 2500, 'eur', '[{\"sku\":\"book\",\"qty\":1}]', 'pm_card_visa')"
show "SELECT * FROM ft_orders.place_order('demo-first', 'alice', 2500, 'EUR', '[{\"qty\":1,\"sku\":\"book\"}]', 'pm_card_visa')"
show "SELECT * FROM ft_orders.place_order('demo-first', 'alice', 9900, 'EUR', '[{\"sku\":\"book\",\"qty\":1}]', 'pm_card_visa')"
show "SELECT * FROM ft_orders.place_order('demo-bad', 'bob', -5, 'EUR')"

say "200 more orders in one transaction (one of 1300 gets declined, one of 4220 rejected)"
show "SELECT count(*) AS placed FROM generate_series(1, 200) AS g,
      LATERAL ft_orders.place_order('demo-' || g, 'cust-' || (g % 17),
              CASE g WHEN 50 THEN 1300 WHEN 100 THEN 4220 ELSE 1000 + g END, 'EUR',
              jsonb_build_array(jsonb_build_object('sku', 'item-' || g, 'qty', 1)), 'pm_card_visa')"

for i in $(seq 1 60); do
	say "t = ${i}s"
	show "SELECT * FROM ft_orders.queue_status"
	show "SELECT * FROM ft_orders.order_summary"
	show "SELECT worker_id, pid, state, in_flight, processed, succeeded, declined, retried, failed FROM ft_orders.worker_status"
	show "SELECT * FROM ft_orders.gateway_status"
	[ "$(psql_q 'SELECT pending FROM ft_orders.queue_status')" = "0" ] && break
	sleep 1
done

say "drained: the dead letter, a few attempts of a retried order, the event history, the gateway's ledger"
show "SELECT event_id, order_id, attempts, last_error FROM ft_orders.dead_letters"
show "SELECT order_id, attempt, http_status, outcome, error, round(latency_ms::numeric, 1) AS latency_ms
        FROM ft_orders.payment_attempts
       WHERE order_id = (SELECT order_id FROM ft_orders.payment_attempts WHERE outcome = 'retry' ORDER BY order_id LIMIT 1)
       ORDER BY attempt"
show "SELECT status, count(*) FROM ft_orders.order_events GROUP BY status ORDER BY status"
echo "GET $GW_URL/ledger"
curl -fsS "$GW_URL/ledger" | jq .
echo
echo "Every paid order was charged exactly once: ledger charges = paid orders, duplicates = 0."
show "SELECT (SELECT count(*) FROM ft_orders.orders WHERE status = 'paid') AS paid_orders"
if [ -t 0 ]; then
	say "the pages stay up: checkout http://127.0.0.1:$svc_port/  console http://127.0.0.1:$svc_port/console (demo_ops / demo-ops); press Enter to stop everything"
	read -r _
fi
