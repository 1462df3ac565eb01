#!/bin/bash
# payment_key.sh: derived payment keys against the fake gateway with real
# workers.
#
# Lost and re-created: an order is paid, then it and its key vanish (as an
# order committed on an old primary does when pg_rewind drops its
# timeline); the client retries the same key and request, the new order
# carries the same payment_key, and the gateway ledger still holds ONE
# charge for the client's key.  Purged and placed again: after
# purge_expired_keys() the same key and request is a new order under a new
# payment_key and is charged again: TWO charges for the two incarnations.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

gw_pg_start \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '5s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" ||
	bail_out "the fake gateway or the server did not start"

place()	# KEY -> "order_id replayed"
{
	psql_q "SELECT order_id || ' ' || replayed FROM ft_orders.place_order('$1', 'cust-pk', 4242, 'EUR', '[{\"sku\":\"PK\"}]', 'pm_card_visa')"
}
key_of() { psql_q "SELECT payment_key FROM ft_orders.orders WHERE order_id = $1"; }
ledger_key() { curl -fsS "$GW_URL/ledger/$1" | jq -r ".$2"; }
# charges in the ledger for the orders of one client key
charges_of_client_key()
{
	local n=0 k
	for k in $(psql_q "SELECT DISTINCT payment_key FROM ft_orders.orders WHERE idempotency_key = '$1'"); do
		[ "$(ledger_key "$k" charged 2>/dev/null)" = "true" ] && n=$((n + 1))
	done
	echo "$n"
}

# --- lost and re-created: one charge ---------------------------------------------
read -r lost_id lost_replayed <<<"$(place pk-lost)"
is "$lost_replayed" "false" "placed order pk-lost"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $lost_id" 30
ok $? "pk-lost is paid"
lost_key=$(key_of "$lost_id")
is "$(ledger_key "$lost_key" charged)" "true" "the gateway charged its payment_key"

# the order is lost with its key, as with a timeline dropped by pg_rewind
psql_q "BEGIN;
        DELETE FROM ft_orders.payment_attempts WHERE order_id = $lost_id;
        DELETE FROM ft_orders.order_events WHERE order_id = $lost_id;
        DELETE FROM ft_orders.outbox WHERE order_id = $lost_id;
        DELETE FROM ft_orders.idempotency_keys WHERE idempotency_key = 'pk-lost';
        DELETE FROM ft_orders.orders WHERE order_id = $lost_id;
        COMMIT" >/dev/null
ok $? "order pk-lost and its key are gone (simulated loss of the timeline)"
read -r again_id again_replayed <<<"$(place pk-lost)"
is "$again_replayed" "false" "the client's retry with the same key creates the order again"
isnt_id=$([ "$again_id" != "$lost_id" ] && echo new || echo same)
is "$isnt_id" "new" "... under a new order_id ($again_id, was $lost_id)"
is "$(key_of "$again_id")" "$lost_key" "... and the same payment_key"
wait_until "SELECT status <> 'pending' FROM ft_orders.orders WHERE order_id = $again_id" 30
ok $? "the re-created order is settled by the workers"
diag "re-created order: $(psql_q "SELECT status || ' ' || coalesce(last_error, '') FROM ft_orders.orders WHERE order_id = $again_id")"
cmp_ok "$(ledger_key "$lost_key" requests)" -ge 2 "the gateway saw the payment_key again (requests: $(ledger_key "$lost_key" requests))"
is "$(charges_of_client_key pk-lost)" "1" "ledger: ONE charge for client key pk-lost across both incarnations"
is "$(gw_ledger charges)" "1" "ledger: one charge in all"

# --- purged and placed again: two charges --------------------------------------------
read -r first_id _ <<<"$(place pk-purged)"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $first_id" 30
ok $? "pk-purged is paid"
first_key=$(key_of "$first_id")
psql_q "UPDATE ft_orders.idempotency_keys SET created_at = now() - interval '2 days' WHERE idempotency_key = 'pk-purged'" >/dev/null
is "$(psql_q "SELECT ft_orders.purge_expired_keys()")" "1" "purge_expired_keys() purges the expired key pk-purged"
is "$(psql_q "SELECT generation FROM ft_orders.idempotency_key_generations WHERE idempotency_key = 'pk-purged'")" "1" \
	"... its purge generation is 1"
read -r second_id second_replayed <<<"$(place pk-purged)"
is "$second_replayed" "false" "the same key and request after the purge: a new order"
second_key=$(key_of "$second_id")
cmp_ok "$second_key" != "$first_key" "... under a new payment_key"
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $second_id" 30
ok $? "the new incarnation is paid"
is "$(charges_of_client_key pk-purged)" "2" "ledger: TWO charges for client key pk-purged, one per incarnation"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "3 0" "ledger: 3 charges in all, no duplicates"

# the same key within the TTL is a replay: no third order, no third charge
read -r replay_id replay_replayed <<<"$(place pk-purged)"
is "$replay_id $replay_replayed" "$second_id true" "within the TTL the key replays the second incarnation"
psql_q "SELECT * FROM ft_orders.place_order('pk-purged', 'cust-pk', 4243, 'EUR')" >/dev/null 2>"$FT_TMP/ft409.err"
like "$(cat "$FT_TMP/ft409.err")" 'idempotency key reused with different parameters' \
	"another request under the live key still raises FT409"
sleep 0.5
is "$(gw_ledger charges)" "3" "ledger: still 3 charges"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
