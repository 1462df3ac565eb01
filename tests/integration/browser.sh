#!/bin/bash
# browser.sh: the Node.js example's checkout page and operator console in a
# real browser (Debian's chromium, driven by playwright-core), against one
# server, its payment workers, the fake gateway and the service
# (examples/node-order-service/test/browser.test.js):
#
# 1. checkout: paid without a reload; a double click and a reload during the
#    request make one order (one row, one charge)
# 2. gateway down: the page says "delayed", never an error; back: paid by itself
# 4. action_required: the 3-D Secure page, then paid
# 5. console: charts draw and update, a 422 dead letter with its error,
#    requeued after the cause is fixed -> paid, a refund with confirmation
#    in the order's history and in the gateway's ledger, an operator role
#    without the grant refused
# 6. without the operator's credential the console and the all-orders
#    stream answer 401; an order without its access token 401, with another
#    order's token 404
# (3, a failover with the page open, is in tests/cluster/node_service.sh.)
# Each is asserted from the page and from the database or the ledger.
# Screenshots go to $FT_BROWSER_OUT (default log/browser/).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

EXAMPLE=$FT_ROOT/examples/node-order-service
CHROMIUM=${FT_CHROMIUM:-/usr/bin/chromium}
OUT=${FT_BROWSER_OUT:-$FT_ROOT/log/browser}
command -v node >/dev/null 2>&1 || bail_out "node is missing: run tests/setup/deps.sh"
[ -x "$CHROMIUM" ] || bail_out "chromium is missing ($CHROMIUM): run tests/setup/deps.sh"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1
if [ ! -f "$EXAMPLE/node_modules/playwright-core/package.json" ]; then
	(cd "$EXAMPLE" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		bail_out "npm ci in examples/node-order-service failed"
fi
mkdir -p "$OUT" && rm -f "$OUT"/*.png

gw_pg_start \
	"ft_orders.request_timeout = '1s'" "ft_orders.lease_timeout = '3s'" \
	"ft_orders.backoff_base = '100ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.max_attempts = 100" "ft_orders.circuit_open_time = '500ms'" \
	"ft_orders.action_timeout = '1s'" ||
	bail_out "the fake gateway or the server did not start"

# the roles: the service's, the webhook endpoint's, two operators (one who
# may act, one who may only look); passwords checked (scram), not trusted
psql_q "CREATE ROLE shop_app LOGIN PASSWORD 'app-pw' IN ROLE ft_orders_app;
        CREATE ROLE shop_webhooks LOGIN PASSWORD 'wh-pw';
        GRANT USAGE ON SCHEMA ft_orders TO shop_webhooks;
        GRANT EXECUTE ON FUNCTION ft_orders.apply_gateway_event(text, jsonb) TO shop_webhooks;
        CREATE ROLE ops_viewer LOGIN PASSWORD 'viewer-pw' IN ROLE ft_orders_app;
        GRANT SELECT ON ALL TABLES IN SCHEMA ft_orders TO ops_viewer;
        CREATE ROLE ops_alice LOGIN PASSWORD 'alice-pw'" >/dev/null &&
	psql -XAtq -v ON_ERROR_STOP=1 -v operator=ops_alice -f "$EXAMPLE/operator_grants.sql" >/dev/null ||
	bail_out "could not create the roles"
as_pg sh -c "{ echo 'host all shop_app,shop_webhooks,ops_viewer,ops_alice 127.0.0.1/32 scram-sha-256'; cat '$PGDATA/pg_hba.conf'; } >'$PGDATA/pg_hba.new' && mv '$PGDATA/pg_hba.new' '$PGDATA/pg_hba.conf'" &&
	pg_reload || bail_out "could not require passwords"
# the postmaster reads pg_hba.conf when it gets to the reload: wait for it
# (up to 10 s) rather than assume it within a set time
for _ in $(seq 1 50); do
	PGPASSWORD=wrong psql -XAtq -U ops_alice -c 'SELECT 1' >/dev/null 2>&1
	refused=$?
	[ "$refused" = 2 ] && break
	sleep 0.2
done
is "$refused" "2" "a wrong password is refused by the server (the console's sign-in relies on it)"

# the browser runs with its temporary profiles under FT_TMP, in a process
# group of its own: at exit every chromium process of this test is ended
BROWSER_TMP=$FT_TMP/browser-tmp
mkdir -p "$BROWSER_TMP"
NODE_PGID=""
# browser_pids: the processes whose command line names BROWSER_TMP (read
# by bash itself: a grep for it would find its own command line)
browser_pids()
{
	local f a
	for f in /proc/[0-9]*/cmdline; do
		mapfile -d '' a 2>/dev/null <"$f" || continue
		[[ "${a[*]}" == *"$BROWSER_TMP"* ]] || continue
		f=${f#/proc/}
		echo "${f%/cmdline}"
	done
}
browser_cleanup()
{
	local pid
	[ -s "$FT_TMP/node.pgid" ] && NODE_PGID=$(cat "$FT_TMP/node.pgid")
	[ -n "$NODE_PGID" ] && kill -TERM -- "-$NODE_PGID" 2>/dev/null
	sleep 0.5
	[ -n "$NODE_PGID" ] && kill -KILL -- "-$NODE_PGID" 2>/dev/null
	# a chromium helper that left the group: found by its profile folder
	for pid in $(browser_pids); do
		kill -KILL "$pid" 2>/dev/null
	done
	ft_cleanup
}
trap browser_cleanup EXIT

NS_EXAMPLE=$EXAMPLE
NS_PGID_FILE=$FT_TMP/node.pgid
. "$FT_ROOT/tests/cluster/node_service_tap.sh"
TMPDIR=$BROWSER_TMP FT_CHROMIUM=$CHROMIUM FT_BROWSER_OUT=$OUT FT_GATEWAY_URL=$GW_URL \
	FT_WRITE_PORT=$PGPORT FT_DATABASE=ftdb FT_USER=shop_app FT_PASSWORD=app-pw \
	FT_WEBHOOK_USER=shop_webhooks FT_WEBHOOK_PASSWORD=wh-pw FT_CHECK_USER=postgres FT_CHECK_PASSWORD=unused \
	FT_SERVICE_LOG=$FT_TMP/service.log NS_PGID_FILE=$NS_PGID_FILE node_tap browser.test.js
# nothing of the browser is left
# a browser that was closed may take a moment to exit: up to 5 s
for _ in $(seq 1 25); do
	left=$(browser_pids | wc -l)
	[ "$left" = 0 ] && break
	sleep 0.2
done
is "$left" "0" "no chromium process of this test is left running"
! grep -q '"event":"internal_error"' "$FT_TMP/service.log"
ok $? "the service logged no internal_error"
diag "screenshots: $(cd "$OUT" && ls *.png 2>/dev/null | tr '\n' ' ')"
done_testing
