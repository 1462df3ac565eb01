#!/bin/bash
# planted_overloads.sh: no overload of a function or operator the extension
# calls can capture one of its calls (PostgreSQL's "Security Considerations
# for Extensions").
#
# harness/plant_overloads.sql plants, in schema ft_orders (where, before
# 1.5, the owner of a schema created ahead of CREATE EXTENSION could), in
# public (where a database owner can) and in pg_temp of every session that
# calls the extension, the overloads an inexact call would prefer: for each
# function of the extension and each argument, text there (untyped literals
# and NULLs prefer it), integer for bigint (integer literals), integer[]
# for bigint[], all-text; built-ins that pg_catalog has only polymorphic
# (json_build_object of the NOTIFY payload, format, unnest, array_fill,
# convert_to with an untyped encoding name); = and <> on order_status.
# Each records its call in public.planted_calls.
#
# Then every entry point runs, with the caller's search_path set to
# public, ft_orders, pg_catalog: place_order, get_order, cancel_order
# (never sent; in flight, so that the worker refunds the charge through
# _refund_canceled), refund_order, apply_gateway_event (generic and Stripe,
# payment and refund events), reconcile, retry_dead_letter(s), purge_*,
# metrics, reset_stats and the views, and the payment workers pay, refund,
# look up and dead-letter.  Every entry point does its job and no planted
# function ever runs.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

HARNESS=$(cd "$(dirname "$0")/harness" && pwd)
# the test's own queries (psql_q, wait_until) resolve in pg_catalog only:
# the overloads planted in public would capture them too (that is
# PostgreSQL's rule for any session whose search_path holds a schema others
# can write, not the extension's)
export PGOPTIONS="-c search_path=pg_catalog"
gw_pg_start "ft_orders.request_timeout = '3s'" "ft_orders.lease_timeout = '6s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = 2" "ft_orders.circuit_failure_threshold = 100000" ||
	bail_out "server or gateway did not start"
chmod a+r "$HARNESS/plant_overloads.sql" 2>/dev/null

psql -XAtq -v ON_ERROR_STOP=1 -f "$HARNESS/plant_overloads.sql" >/dev/null ||
	bail_out "could not load plant_overloads.sql"
planted=$(psql_q "SELECT public.ft_plant('ft_orders') + public.ft_plant('public')
                  + public.ft_plant_builtins('ft_orders') + public.ft_plant_builtins('public')")
cmp_ok "$planted" -gt 100 "overloads planted in ft_orders and public ($planted)"

# sql SQL: run SQL in a session that plants its own pg_temp overloads first
# and searches public and ft_orders before pg_catalog; prints the result.
# The calls below name exact argument types (bigint, text, jsonb,
# interval), as an application must wherever others may create functions
# in its search_path: what is tested is the extension's calls of its own
# functions.
sql()
{
	psql -XAtq -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
SELECT public.ft_plant('pg_temp') + public.ft_plant_builtins('pg_temp') > 50 AS planted \gset
\if :planted
\else
\echo 'no pg_temp overloads planted'
\quit
\endif
SET search_path = public, ft_orders, pg_catalog;
$1
SQL
}
key_of() { psql_q "SELECT payment_key FROM ft_orders.orders WHERE order_id = $1"; }
status_of() { psql_q "SELECT status FROM ft_orders.orders WHERE order_id = $1"; }

# --- intake, reads, monitoring ------------------------------------------------------
is "$(sql "SELECT count(*) FROM generate_series(1, 3) g, LATERAL ft_orders.place_order('po-' || g, 'cust'::text, (1000 + g)::bigint, 'EUR'::text)")" \
	"3" "place_order takes three orders"
is "$(sql "SELECT replayed FROM ft_orders.place_order('po-1'::text, 'cust'::text, 1001::bigint, 'EUR'::text)")" "t" "place_order replays a key"
a=$(psql_q "SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'po-1'")
wait_until "SELECT count(*) = 3 FROM ft_orders.orders WHERE idempotency_key LIKE 'po-%' AND status = 'paid'" 30
ok $? "the workers pay them"
is "$(sql "SELECT (ft_orders.get_order($a::bigint)).status")" "paid" "get_order reads an order"
like "$(sql "SELECT ft_orders.metrics()")" "ft_orders_orders" "metrics() answers"
is "$(sql "SELECT count(*) FROM ft_orders.queue_status, ft_orders.gateway_status; SELECT count(*) > 0 FROM ft_orders.order_summary, ft_orders.worker_status")" \
	"1"$'\n'"t" "the views answer"
is "$(sql "SELECT ft_orders.reset_stats()")" "" "reset_stats() answers"

# --- cancel: never sent, and in flight (the worker refunds it) ----------------------
is "$(sql "BEGIN; SELECT ft_orders.cancel_order(order_id, 'changed mind'::text) FROM ft_orders.place_order('po-never'::text, 'cust'::text, 1100::bigint, 'EUR'::text); COMMIT;")" \
	"canceled" "cancel_order of an order never sent: canceled"
# the reply comes 2.5 s after the request (request_timeout is 3 s): the
# wait for the lease and a session that plants its overloads first took
# 1.0 s of that under load
gw_faults '{"latency_ms":2500}' || bail_out "could not set faults"
f=$(psql_q "SELECT order_id FROM ft_orders.place_order('po-inflight', 'cust', 1200, 'EUR')")
wait_until "SELECT lease_until > now() FROM ft_orders.outbox WHERE order_id = $f" 10
ok $? "an order in flight"
is "$(sql "SELECT ft_orders.cancel_order($f::bigint, 'too slow'::text)")" "pending" "cancel_order in flight: recorded"
wait_until "SELECT status = 'refunded' FROM ft_orders.orders WHERE order_id = $f" 30
ok $? "the charge went through and the worker refunded it (_refund_canceled)"
gw_faults reset

# --- refund_order, then the refund's webhook ----------------------------------------
b=$(psql_q "SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'po-2'")
r=$(sql "SELECT ft_orders.refund_order($b::bigint, 500::bigint)")
like "$r" '^[0-9]+$' "refund_order queues a partial refund"
wait_until "SELECT status = 'succeeded' FROM ft_orders.refunds WHERE refund_id = $r" 30
ok $? "the worker refunds it"
is "$(status_of "$b")" "partially_refunded" "the order is partially refunded"
rk=$(psql_q "SELECT refund_key FROM ft_orders.refunds WHERE refund_id = $r")
is "$(sql "SELECT ft_orders.apply_gateway_event('generic'::text, '{\"event_id\":\"po-ev-1\",\"type\":\"refund.succeeded\",\"payment_key\":\"$(key_of "$b")\",\"refund_key\":\"$rk\",\"refund_id\":\"re_x\"}'::jsonb)")" \
	"f" "apply_gateway_event: a refund event repeated is recorded, not applied"

# --- webhooks: generic and Stripe ---------------------------------------------------
gw_faults '{"latency_ms":3000}' || bail_out "could not set faults"
w=$(psql_q "SELECT order_id FROM ft_orders.place_order('po-webhook', 'cust', 1300, 'EUR')")
is "$(sql "SELECT ft_orders.apply_gateway_event('generic'::text, '{\"event_id\":\"po-ev-2\",\"type\":\"payment.succeeded\",\"payment_key\":\"$(key_of "$w")\",\"payment_id\":\"pay_w\",\"amount_minor\":1300,\"currency\":\"EUR\"}'::jsonb)")" \
	"t" "apply_gateway_event (generic) settles a pending order"
s=$(psql_q "SELECT order_id FROM ft_orders.place_order('po-stripe', 'cust', 1400, 'EUR')")
is "$(sql "SELECT ft_orders.apply_gateway_event('stripe'::text, '{\"id\":\"evt_po_1\",\"type\":\"payment_intent.succeeded\",\"data\":{\"object\":{\"id\":\"pi_po\",\"amount\":1400,\"currency\":\"eur\",\"metadata\":{\"order_id\":\"$s\",\"payment_key\":\"$(key_of "$s")\"}}}}'::jsonb)")" \
	"t" "apply_gateway_event (Stripe) settles a pending order by its payment_key"
c=$(psql_q "SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'po-3'")
psql_q "UPDATE ft_orders.orders SET payment_id = 'ch_po3' WHERE order_id = $c" >/dev/null
is "$(sql "SELECT ft_orders.apply_gateway_event('stripe'::text, '{\"id\":\"evt_po_2\",\"type\":\"charge.refunded\",\"data\":{\"object\":{\"id\":\"ch_po3\",\"amount\":1003,\"amount_refunded\":1003,\"currency\":\"eur\"}}}'::jsonb)")" \
	"t" "apply_gateway_event (Stripe charge.refunded) refunds a paid order"
is "$(status_of "$c")" "refunded" "... refunded"
gw_faults reset
wait_until "SELECT count(*) = 0 FROM ft_orders.outbox" 30
ok $? "the outbox drains"

# --- look-ups, dead letters, purges ------------------------------------------------
gw_faults '{"latency_ms":1500}' || bail_out "could not set faults"
l=$(psql_q "SELECT order_id FROM ft_orders.place_order('po-lookup', 'cust', 1500, 'EUR')")
wait_until "SELECT lease_until > now() FROM ft_orders.outbox WHERE order_id = $l" 10
like "$(sql "SELECT ft_orders.reconcile('0 s'::interval)")" '^[0-9]+$' "reconcile schedules look-ups"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $l" 30
ok $? "the looked-up order is paid"
gw_faults '{"status_script":[500,500,500,500]}' || bail_out "could not set faults"
d=$(psql_q "SELECT order_id FROM ft_orders.place_order('po-dead', 'cust', 1600, 'EUR')")
wait_until "SELECT status = 'failed' FROM ft_orders.orders WHERE order_id = $d" 30
ok $? "an order given up on is a dead letter"
gw_faults reset
is "$(sql "SELECT ft_orders.retry_dead_letter(event_id::bigint) FROM ft_orders.dead_letters WHERE order_id = $d")" "t" \
	"retry_dead_letter requeues it"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $d" 30
ok $? "... and it is paid"
is "$(sql "SELECT ft_orders.retry_dead_letters()")" "0" "retry_dead_letters answers"
like "$(sql "SELECT ft_orders.purge_expired_keys(), ft_orders.purge_history()")" '^[0-9]+\|[0-9]+$' \
	"purge_expired_keys and purge_history answer"

# --- none of the planted functions ran ---------------------------------------------
calls=$(psql_q "SELECT count(*) || coalesce(': ' || string_agg(DISTINCT fn, ', '), '') FROM public.planted_calls")
is "$calls" "0" "no planted overload ever ran"
is "$(grep -c 'ERROR' "$PG_LOG")" "0" "no ERROR in the server log"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
done_testing
