#!/bin/bash
# poison_record.sh: one bad job never takes its batch or its worker down
# (docs/reference.md, "Guarantees").  Each part places a batch of orders
# in one commit, so that one worker claims and records them together:
#
# - a next_action with bytes that are not UTF-8: never stored raw (a
#   marker instead), the rest of the batch paid, and a pg_dump of the
#   database restores;
# - a next_action with \u0000 (jsonb refuses it): the same;
# - a requires_action reply whose next_action is a 9 kB QR code (too large
#   for a NOTIFY payload): the order is action_required with a marker in
#   next_action, the rest of the batch is paid, the worker lives on;
# - a job whose record fails whatever its data (a trigger refuses it): it
#   is isolated, retried, then dead-lettered with the error after
#   max_attempts; the rest of its batch is recorded at once, and the
#   worker's pid never changes.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start "ft_orders.database = 'ftdb, restored'" "ft_orders.workers = 1" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '20ms'" "ft_orders.backoff_max = '100ms'" \
	"ft_orders.max_attempts = 3" "ft_orders.action_timeout = '1h'" ||
	bail_out "the fake gateway or the server did not start"
gw_faults '{"requires_action_amount_minor":[4242]}' || bail_out "could not set faults"
wait_until "SELECT count(*) = 1 FROM ft_orders.worker_status WHERE pid IS NOT NULL" 20 ||
	bail_out "no payment worker"
pid=$(psql_q "SELECT pid FROM ft_orders.worker_status")
hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }

# a batch: orders PREFIX-1..4 to be paid and PREFIX-5 (4242) requires_action
batch()
{
	psql_q "SELECT count(*) FROM generate_series(1, 5) g,
	        LATERAL ft_orders.place_order('$1-' || g, '${2:-cust}', CASE WHEN g = 5 THEN 4242 ELSE 100 + g END, 'EUR')" >/dev/null
}
status_of() { psql_q "SELECT string_agg(status::text, ' ' ORDER BY idempotency_key) FROM ft_orders.orders WHERE idempotency_key LIKE '$1-%'"; }

# 1. a next_action that is not UTF-8: never stored raw, the database dumps and restores
gw_faults "{\"reply_extra_hex\":\"$(hex '"next_action":{"type":"redirect_to_url","redirect_to_url":{"url":"https://bank.example/')fffe$(hex '"}}')\"}" ||
	bail_out "could not set faults"
batch utf
wait_until "SELECT count(*) = 5 FROM ft_orders.orders WHERE idempotency_key LIKE 'utf-%' AND status <> 'pending'" 20
is "$(status_of utf)" "paid paid paid paid action_required" "invalid UTF-8 in next_action: action_required, its batch paid"
is "$(psql_q "SELECT next_action->>'type' FROM ft_orders.orders WHERE idempotency_key = 'utf-5'")" "unavailable" \
	"the next_action that is not UTF-8 is replaced by a marker"
gw_faults '{"reply_extra_hex":null}'
is "$(psql_q "SELECT count(*) FROM ft_orders.orders WHERE NOT (next_action::text ~ '^[ -~]*\$')")" "0" \
	"every stored next_action is printable ASCII"
as_pg pg_dump -h "$PGHOST" -p "$PGPORT" -U postgres -Fc -f "$FT_TMP/ftdb.dump" ftdb 2>"$FT_TMP/dump.err"
ok $? "pg_dump of the database works"
psql_q "CREATE DATABASE restored" >/dev/null
as_pg pg_restore -h "$PGHOST" -p "$PGPORT" -U postgres -d restored --exit-on-error "$FT_TMP/ftdb.dump" 2>"$FT_TMP/restore.err"
ok $? "and it restores" || diag "$(head -5 "$FT_TMP/restore.err")"
is "$(psql -XAtq -d restored -c "SELECT count(*) FROM ft_orders.orders")" "$(psql_q "SELECT count(*) FROM ft_orders.orders")" \
	"with every order"

# 2. a next_action with \u0000 (jsonb refuses it)
gw_faults "{\"reply_extra_hex\":\"$(hex '"next_action":{"type":"x\u0000"}')\"}" || bail_out "could not set faults"
batch nul
wait_until "SELECT count(*) = 5 FROM ft_orders.orders WHERE idempotency_key LIKE 'nul-%' AND status <> 'pending'" 20
is "$(status_of nul)" "paid paid paid paid action_required" "\\u0000 in next_action: action_required, its batch paid"
gw_faults '{"reply_extra_hex":null}'

# 3. a next_action of 9 kB
qr=$(head -c 9000 /dev/zero | tr '\0' 'A')
gw_faults "{\"reply_extra_hex\":\"$(hex "\"next_action\":{\"type\":\"display_qr_code\",\"display_qr_code\":{\"image_data_url\":\"data:image/png;base64,$qr\"}}")\"}" ||
	bail_out "could not set faults"
batch big
wait_until "SELECT count(*) = 5 FROM ft_orders.orders WHERE idempotency_key LIKE 'big-%' AND status <> 'pending'" 20
is "$(status_of big)" "paid paid paid paid action_required" "a 9 kB next_action: its order is action_required, its batch paid"
is "$(psql_q "SELECT next_action->>'type' FROM ft_orders.orders WHERE idempotency_key = 'big-5'")" "unavailable" \
	"the oversized next_action is replaced by a marker"
like "$(psql_q "SELECT next_action->>'reason' FROM ft_orders.orders WHERE idempotency_key = 'big-5'")" "too large" \
	"the marker says why"
is "$(psql_q "SELECT client_secret IS NOT NULL AND payment_id IS NOT NULL FROM ft_orders.orders WHERE idempotency_key = 'big-5'")" "t" \
	"client_secret and the payment reference are kept"
is "$(psql_q "SELECT pid FROM ft_orders.worker_status")" "$pid" "the worker lives on"

gw_faults '{"reply_extra_hex":null}'

# 4. a job whose record always fails: a trigger refuses its order's payment
psql_q "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF NEW.status = 'paid' AND NEW.customer_id = 'poison' THEN
		RAISE EXCEPTION 'order % is poison', NEW.order_id;
	END IF;
	RETURN NEW;
END \$\$" >/dev/null
psql_q "CREATE TRIGGER refuse_poison BEFORE UPDATE ON ft_orders.orders FOR EACH ROW EXECUTE FUNCTION public.refuse_poison()" >/dev/null
psql_q "SELECT count(*) FROM generate_series(1, 10) g,
        LATERAL ft_orders.place_order('job-' || g, CASE WHEN g = 3 THEN 'poison' ELSE 'cust' END, 100 + g, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 9 FROM ft_orders.orders WHERE idempotency_key LIKE 'job-%' AND status = 'paid'" 10
ok $? "the nine other orders of the batch are paid"
wait_until "SELECT status = 'failed' FROM ft_orders.orders WHERE idempotency_key = 'job-3'" 30
ok $? "the poison order is given up"
is "$(psql_q "SELECT d.attempts || ' ' || (d.last_error LIKE '%order % is poison%') FROM ft_orders.dead_letters d JOIN ft_orders.orders o USING (order_id) WHERE o.idempotency_key = 'job-3'")" \
	"3 true" "it is dead-lettered after max_attempts with its error"
is "$(psql_q "SELECT pid FROM ft_orders.worker_status")" "$pid" "the worker's pid never changed"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -c 'ft_orders payment worker.*exited with exit code' "$PG_LOG")" "0" "no payment worker exited"
cmp_ok "$(grep -c 'could not record the outcome of order' "$PG_LOG")" -ge 1 "the log names the poison job"

done_testing
