#!/bin/bash
# dump_restore.sh: pg_dump of a working ft_orders database and pg_restore
# into a fresh database on a fresh server.
#
# The source holds orders in every status (paid, declined, failed with a
# dead letter, pending with a scheduled retry, pending never tried, a
# requeued dead letter), their keys, outbox rows, attempts and events.
# After pg_dump -Fc and pg_restore into database shop_restored of a second
# server, asserts: every table equal row for row, sequences at the same
# position and continuing without collision, the same catalogue (objects,
# grants, comments), idempotency replays and FT409 on the restored data,
# metrics() working there.  The second server runs no payment worker and
# has no gateway URL, so nothing touches the copy (nothing is charged twice
# from two databases; the gateway ledger does not move).
# Restoring into another database of the source server is refused by the
# install script (ft_orders.database names the one database served).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/snapshot.sh"

PG2DATA=""
dump_restore_cleanup()
{
	if [ -n "$PG2DATA" ] && [ -f "$PG2DATA/postmaster.pid" ]; then
		as_pg pg_ctl -D "$PG2DATA" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
	fi
	ft_cleanup
}
trap dump_restore_cleanup EXIT

gw_pg_start \
	"ft_orders.request_timeout = '5s'" "ft_orders.lease_timeout = '10s'" \
	"ft_orders.backoff_base = '1h'" "ft_orders.backoff_max = '1h'" \
	"ft_orders.circuit_failure_threshold = 100" ||
	bail_out "the fake gateway or the server did not start"
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 20
ok $? "source: two payment workers are running"

# --- the source data -----------------------------------------------------------
gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422]}' || bail_out "could not set faults"
psql_q "SELECT count(*) FROM (SELECT 'paid-' || g AS k, 100 + g AS amount FROM generate_series(1, 10) g
                              UNION ALL SELECT 'dec-' || g, 402 FROM generate_series(1, 2) g
                              UNION ALL SELECT 'rej-' || g, 422 FROM generate_series(1, 2) g) v,
        LATERAL ft_orders.place_order(v.k, 'Jürgen ✓ \"quoted\"', v.amount, 'eur',
                                      '[{\"sku\": \"Ä-1\", \"qty\": 2, \"note\": \"tab\\there\"}]', 'pm_card_visa')" >/dev/null
ok $? "placed 14 orders (unicode, quotes and escapes in the data)"
wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE status = 'pending'" 30
ok $? "settled: paid, declined, failed"

# answered 503 (an answer counts towards max_attempts; no answer would not)
gw_faults '{"fail_rate":1,"fail_status":503}' || bail_out "could not set faults"
psql_q "SELECT count(*) FROM generate_series(1, 5) g, LATERAL ft_orders.place_order('retry-' || g, 'c', 300 + g, 'USD')" >/dev/null
wait_until "SELECT count(*) = 5 FROM ft_orders.outbox WHERE attempts > 0 AND (lease_until IS NULL OR lease_until <= now())" 30
ok $? "5 orders answered 503, retries scheduled"

# freeze the source: no gateway URL, so the workers leave the tables alone
pg_set ft_orders.gateway_url ''
wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle' AND in_flight = 0" 20
ok $? "source workers idle"
wait_until "SELECT count(*) = 0 FROM ft_orders.outbox WHERE lease_until > now()" 20
ok $? "no outbox lease is held"
psql_q "SELECT count(*) FROM generate_series(1, 3) g, LATERAL ft_orders.place_order('new-' || g, 'c', 400 + g, 'GBP', '[]', NULL)" >/dev/null
ok $? "3 orders never tried"
is "$(psql_q "SELECT ft_orders.retry_dead_letter((SELECT min(event_id) FROM ft_orders.dead_letters))")" "t" \
	"one dead letter requeued"
# a purged key: its purge generation (1.2) must survive the restore
psql_q "UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '2 days' WHERE idempotency_key = 'new-3'" >/dev/null
is "$(psql_q "SELECT ft_orders.purge_expired_keys()") $(psql_q "SELECT generation FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'new-3'")" \
	"1 1" "one key purged: its purge generation is 1"
# a webhook event (1.3), recorded as history: a failure after a success
psql_q "SELECT ft_orders.apply_gateway_event('generic', jsonb_build_object('event_id', 'dump-1',
        'type', 'payment.failed', 'payment_key', (SELECT payment_key FROM ft_orders.orders WHERE status = 'paid' LIMIT 1)))" >/dev/null
is "$(psql_q "SELECT count(*) || ' ' || bool_or(applied) FROM ft_orders.gateway_events")" "1 false" \
	"one webhook event recorded (history, not applied)"
sleep 0.5

is "$(psql_q "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
              FROM (SELECT status, count(*) n FROM ft_orders.orders GROUP BY status) s")" \
	"pending:9 paid:10 declined:2 failed:1" "source: orders in every status"
# a retry is due after random(0, 1h): in the future for all but a few seconds' worth
is "$(psql_q "SELECT (SELECT count(*) FROM ft_orders.outbox WHERE attempts > 0) || ' '
                  || (SELECT count(*) > 0 FROM ft_orders.outbox WHERE attempts > 0 AND next_attempt_at > now()) || ' '
                  || (SELECT count(*) FROM ft_orders.outbox WHERE attempts = 0 AND next_attempt_at <= now()) || ' '
                  || (SELECT count(*) FROM ft_orders.dead_letters) || ' '
                  || (SELECT count(*) > 0 FROM ft_orders.payment_attempts) || ' '
                  || (SELECT count(*) > 0 FROM ft_orders.order_events)")" \
	"5 true 4 1 true true" "source: outbox 5 retried (due later), 4 due now, 1 dead letter, attempts and events"
# 1.3: a refund (pending: the workers are idle) and a canceled order
psql_q "SELECT ft_orders.refund_order((SELECT min(order_id) FROM ft_orders.orders WHERE status = 'paid'), 50, 'dump')" >/dev/null
ok $? "a refund of a paid order is queued"
is "$(psql_q "SELECT ft_orders.cancel_order((SELECT order_id FROM ft_orders.orders WHERE idempotency_key = 'new-1'), 'dump test')")" \
	"canceled" "an order never tried is canceled"
ledger_before=$(gw_ledger requests)

ft_data_digest >"$FT_TMP/source.digest" || bail_out "digest failed"
ft_catalog_snapshot >"$FT_TMP/source.catalog" || bail_out "catalogue snapshot failed"

# --- dump ----------------------------------------------------------------------
pg_dump -Fc -f "$FT_TMP/ftdb.dump" ftdb 2>"$FT_TMP/pg_dump.err"
ok $? "pg_dump -Fc"
toc=$(pg_restore -l "$FT_TMP/ftdb.dump")
like "$toc" 'EXTENSION - ft_orders' "the dump creates the extension"
for t in orders idempotency_keys outbox dead_letters payment_attempts order_events idempotency_key_generations gateway_events refunds; do
	like "$toc" "TABLE DATA ft_orders $t " "the dump holds the rows of ft_orders.$t"
done
like "$toc" 'SEQUENCE SET ft_orders orders_order_id_seq' "the dump holds the position of orders_order_id_seq"
like "$toc" 'SEQUENCE SET ft_orders refunds_refund_id_seq' "the dump holds the position of refunds_refund_id_seq"

# restoring into another database of the same server is refused
psql -XAtq -d postgres -c "CREATE DATABASE ftdb_copy" >/dev/null
pg_restore --exit-on-error -d ftdb_copy "$FT_TMP/ftdb.dump" 2>"$FT_TMP/same_server.err"
rc=$?
cmp_ok "$rc" -ne 0 "pg_restore into another database of the source server fails"
like "$(cat "$FT_TMP/same_server.err")" 'ft_orders cannot be created in database "ftdb_copy"' \
	"... with the install script's message"
like "$(cat "$FT_TMP/same_server.err")" 'ft_orders.database \("ftdb"\)' \
	"... naming the databases of ft_orders.database"

# --- a fresh server that does not charge the copy -------------------------------
# ft_orders must be preloaded to be loaded at all (otherwise _PG_init
# raises an ERROR: t/003_not_preloaded.pl), so the second
# server preloads it with no payment worker and no gateway.
PG2DATA=$FT_TMP/pgdata2
pg_init "$PG2DATA" "shared_preload_libraries = 'ft_orders'" "ft_orders.database = 'shop_restored'" \
	"ft_orders.workers = 0" "ft_orders.gateway_url = ''" || bail_out "initdb of the second server failed"
PG2PORT=$PG_INIT_PORT
as_pg pg_ctl -D "$PG2DATA" -l "$FT_TMP/postgres2.log" -w -t 60 start >/dev/null ||
	bail_out "second server did not start"
P2=(-h 127.0.0.1 -p "$PG2PORT" -U postgres)
psql -XAtq "${P2[@]}" -d postgres -c "CREATE DATABASE shop_restored TEMPLATE template0 ENCODING 'UTF8'" >/dev/null
ok $? "second server: database shop_restored"

pg_restore --exit-on-error "${P2[@]}" -d shop_restored "$FT_TMP/ftdb.dump" 2>"$FT_TMP/pg_restore.err"
ok $? "pg_restore into shop_restored"
[ -s "$FT_TMP/pg_restore.err" ] && diag "pg_restore: $(head -5 "$FT_TMP/pg_restore.err")"
is "$(psql -XAtq "${P2[@]}" -d shop_restored -c "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" \
	"1.5" "the restore created ft_orders 1.5"

ft_data_digest "${P2[@]}" -d shop_restored >"$FT_TMP/restored.digest" || bail_out "digest failed"
is "$(diff "$FT_TMP/source.digest" "$FT_TMP/restored.digest")" "" \
	"every table equal row for row, sequences at the same position"
is "$(awk '$1 == "orders" { print $2 }' "$FT_TMP/restored.digest")" "22" "(22 orders compared)"
is "$(grep -c ' [0-9]* [0-9a-f]\{32\}$' "$FT_TMP/restored.digest")" "9" "(nine tables compared, the purge generations, the webhook events and refunds too)"
is "$(awk '$1 == "refunds" { print $2 }' "$FT_TMP/restored.digest")" "1" "(the refund was compared)"
ft_catalog_snapshot "${P2[@]}" -d shop_restored >"$FT_TMP/restored.catalog" || bail_out "catalogue snapshot failed"
is "$(diff "$FT_TMP/source.catalog" "$FT_TMP/restored.catalog")" "" \
	"the restored catalogue (objects, grants, comments) equals the source's"

q2()
{
	psql -XAtq -v ON_ERROR_STOP=1 "${P2[@]}" -d shop_restored -c "$1"
}
is "$(q2 "SELECT customer_id || '|' || items::text FROM ft_orders.orders WHERE idempotency_key = 'paid-1'")" \
	'Jürgen ✓ "quoted"|[{"qty": 2, "sku": "Ä-1", "note": "tab\there"}]' "unicode and escapes survive"

# idempotency on the restored data
is "$(q2 "SELECT order_id || ' ' || status || ' ' || replayed FROM ft_orders.place_order('paid-1', 'Jürgen ✓ \"quoted\"', 101, 'EUR',
                                      '[{\"qty\": 2, \"note\": \"tab\\there\", \"sku\": \"Ä-1\"}]', 'pm_card_visa')")" \
	"$(psql_q "SELECT order_id || ' paid true' FROM ft_orders.orders WHERE idempotency_key = 'paid-1'")" \
	"a key from the source replays its order on the restored database"
q2 "SELECT * FROM ft_orders.place_order('paid-1', 'x', 1, 'EUR')" >/dev/null 2>"$FT_TMP/ft409.err"
like "$(cat "$FT_TMP/ft409.err")" 'idempotency key reused with different parameters' \
	"the same key with other parameters: FT409 on the restored database"

# sequences continue
max_order=$(psql_q "SELECT max(order_id) FROM ft_orders.orders")
max_event=$(psql_q "SELECT max(event_id) FROM (SELECT event_id FROM ft_orders.outbox UNION ALL SELECT event_id FROM ft_orders.dead_letters) e")
new=$(q2 "SELECT order_id || ' ' || replayed FROM ft_orders.place_order('after-restore', 'c', 999, 'EUR')")
ok $? "a new order on the restored database"
cmp_ok "${new% *}" -gt "$max_order" "its order_id (${new% *}) follows the source's last ($max_order)"
is "${new#* }" "false" "it is a new order, not a replay"
cmp_ok "$(q2 "SELECT event_id FROM ft_orders.outbox o JOIN ft_orders.orders r USING (order_id) WHERE r.idempotency_key = 'after-restore'")" \
	-gt "$max_event" "its outbox event_id follows the source's last ($max_event)"

# metrics() on the copy
q2 "SELECT ft_orders.metrics()" | /usr/bin/python3 "$FT_ROOT/tests/lib/prom_check.py" >"$FT_TMP/m2.prom"
ok $? "metrics() on the restored database parses"
is "$(grep -c '^ft_orders_worker_' "$FT_TMP/m2.prom") $(grep '^ft_orders_gateway_requests_total' "$FT_TMP/m2.prom")" \
	"0 ft_orders_gateway_requests_total 0" "... no worker series and no gateway request on the second server"
is "$(awk '$1 == "ft_orders_orders{status=\"pending\"}" || $1 == "ft_orders_dead_letters" { printf "%s ", $2 }' "$FT_TMP/m2.prom")" \
	"1 9 " "... with the restored queue: 9 pending orders, 1 dead letter"

# nobody charges the copy
is "$(q2 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ft_orders payment worker'")" "0" \
	"no payment worker runs on the second server"
sleep 1
is "$(q2 "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" "9" "the restored pending orders stay pending"
is "$(q2 "SELECT status FROM ft_orders.refunds")" "pending" "the restored refund stays pending"
is "$(gw_ledger requests)" "$ledger_before" "the gateway saw no request since the dump"
ft_data_digest >"$FT_TMP/source2.digest"
is "$(diff "$FT_TMP/source.digest" "$FT_TMP/source2.digest")" "" "the source is unchanged"

is "$(grep -c 'terminated by signal' "$PG_LOG" "$FT_TMP/postgres2.log" | awk -F: '{ t += $2 } END { print t }')" "0" \
	"no process crashed"

done_testing
