#!/bin/bash
# record_fuzz.sh: random hostile replies through real workers, into a UTF8
# and a LATIN1 database, for the generic and the stripe provider
# (docs/reference.md, "Guarantees").  The fake gateway decides and stores
# every reply first (charged or not) and then sends a share of them
# spoiled (fault poison_rate, tests/fake_gateway/poison.c): random bytes,
# cut off, NULs, invalid UTF-8, \u escapes, deep nesting, huge strings and
# numbers, hostile values of the fields the workers read, 0 B to 1 MB.
# Look-ups are answered truthfully (Stripe's GET by id, also a re-check,
# may be spoiled).  Invariant, order by order, against the
# gateway's own books: paid if and only if charged (with the gateway's
# payment id), never declined or failed after a charge, action_required
# only for a payment that waits for the customer, nothing still pending
# past max_attempts and its look-ups; no duplicate charge; the workers of
# both databases are the processes of the start (no restart, no crash);
# every stored next_action small enough for a NOTIFY payload.
#
# Environment: FT_RECORD_FUZZ_ORDERS (orders per database, provider and
# round, default 40), FT_RECORD_FUZZ_ROUNDS (default 1), FT_RECORD_FUZZ_RATE
# (share of replies spoiled, default 0.6), FT_RECORD_FUZZ_WAIT (seconds a
# round may take to settle, default 60).  `make test` runs the default
# (about a minute and a half); fuzz/run.sh a longer one.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N=${FT_RECORD_FUZZ_ORDERS:-40}
ROUNDS=${FT_RECORD_FUZZ_ROUNDS:-1}
RATE=${FT_RECORD_FUZZ_RATE:-0.6}
MAX_ATTEMPTS=4
started=$(date +%s)

gw_pg_start "ft_orders.database = 'ftdb, latin'" "ft_orders.workers = 2" \
	"ft_orders.gateway_token = 'sk_test_fuzz'" \
	"ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '10ms'" "ft_orders.backoff_max = '200ms'" \
	"ft_orders.max_attempts = $MAX_ATTEMPTS" "ft_orders.action_timeout = '1h'" \
	"ft_orders.circuit_open_time = '1s'" ||
	bail_out "the fake gateway or the server did not start"
latin1_db latin || bail_out "could not create the LATIN1 database"
for db in ftdb latin; do
	PGDATABASE=$db wait_until "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state <> 'starting'" 30 ||
		bail_out "the workers of $db did not start"
done
pids_of() { psql -XAtq -d "$1" -c "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status"; }
pids_ftdb=$(pids_of ftdb)
pids_latin=$(pids_of latin)
q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

gw_faults "{\"poison_rate\":$RATE,\"decline_amount_minor\":[13],\"reject_amount_minor\":[14],\"requires_action_amount_minor\":[16]}" ||
	bail_out "could not set faults"

# place N orders in each database: mostly charged, some declined (13),
# rejected (14), waiting for the customer (16); stripe by payment_method
place()
{
	local db=$1 prefix=$2 provider=$3
	if [ "$provider" = generic ]; then
		q "$db" "SELECT count(*) FROM generate_series(1, $N) g,
		         LATERAL ft_orders.place_order('$prefix-' || g, 'cust',
		                 CASE g % 10 WHEN 1 THEN 13 WHEN 2 THEN 14 WHEN 3 THEN 16 ELSE 100 + g END, 'EUR')" >/dev/null
	else
		q "$db" "SELECT count(*) FROM generate_series(1, $N) g,
		         LATERAL ft_orders.place_order('$prefix-' || g, 'cust', 100 + g, 'EUR', '[]',
		                 CASE g % 10 WHEN 1 THEN 'pm_card_chargeDeclined' WHEN 3 THEN 'pm_requires_action'
		                      ELSE 'pm_card_visa' END)" >/dev/null
	fi
}

# what the gateway's books say of an order: "<state> <payment id>", state
# charged / pending (waits for the customer) / none
gateway_state()
{
	local provider=$1 key=$2 j
	if [ "$provider" = generic ]; then
		j=$(curl -fsS "$GW_URL/ledger/$key" 2>/dev/null) || { echo "none -"; return; }
		jq -r 'if .charged then "charged " + .payment_id
		       elif .status == 200 then "pending " + (.payment_id // "-")
		       else "none -" end' <<<"$j"
	else
		j=$(curl -fsS -G -H 'Authorization: Bearer sk_test_fuzz' \
			--data-urlencode "query=metadata['payment_key']:'$key'" \
			"$GW_URL/v1/payment_intents/search" 2>/dev/null) || { echo "none -"; return; }
		jq -r '(.data | map(select(.status == "succeeded"))) as $s
		       | if ($s | length) > 1 then "charged_twice -"
		         elif ($s | length) > 0 then "charged " + $s[0].id
		         elif (.data | map(select(.status == "requires_action")) | length) > 0
		         then "pending " + (.data[0].id)
		         else "none -" end' <<<"$j"
	fi
}

attempts_of()
{
	q "$1" "SELECT string_agg(request || ':' || outcome || ':' || coalesce(http_status::text, '-') || ':' || left(coalesce(error, ''), 60), ' | ' ORDER BY attempt, started_at) FROM ft_orders.payment_attempts WHERE order_id = $2"
}

# check every order of PREFIX in DB against the gateway; prints violations
check_orders()
{
	local db=$1 prefix=$2 provider=$3 bad=0 line id key status payment_id state gid
	while IFS='|' read -r id key status payment_id; do
		read -r state gid <<<"$(gateway_state "$provider" "$key")"
		case "$status:$state" in
			paid:charged) [ "$payment_id" = "$gid" ] || { echo "order $id paid as $payment_id, the gateway charged $gid"; bad=$((bad + 1)); } ;;
			declined:none | failed:none | action_required:pending) ;;
			*) echo "order $id ($db, $provider) is $status, the gateway says $state: $(attempts_of "$db" "$id")"; bad=$((bad + 1)) ;;
		esac
	done < <(q "$db" "SELECT order_id, payment_key, status, coalesce(payment_id, '-') FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' ORDER BY order_id")
	return "$bad"
}

total_orders=0
for round in $(seq 1 "$ROUNDS"); do
	for provider in generic stripe; do
		pg_set ft_orders.gateway_provider "$provider"
		# the orders below go out by the provider the workers read then
		wait_until "SELECT setting = '$provider' FROM pg_settings WHERE name = 'ft_orders.gateway_provider'" 10 ||
			bail_out "the server did not reload gateway_provider = $provider"
		sleep 1		# the idle workers reload on their next wake-up
		prefix="fz$round$provider"
		for db in ftdb latin; do place "$db" "$prefix" "$provider"; done
		total_orders=$((total_orders + 2 * N))
		t_placed=$(date +%s)
		for db in ftdb latin; do
			PGDATABASE=$db wait_until "SELECT count(*) = 0 FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' AND status = 'pending'" "${FT_RECORD_FUZZ_WAIT:-60}"
			rc=$?
			ok "$rc" "round $round, $provider, $db: no order left pending ($(( $(date +%s) - t_placed )) s after the placing)"
			[ "$rc" -eq 0 ] ||
				diag "$(q "$db" "SELECT order_id, attempts, last_error FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' AND status = 'pending' LIMIT 5")"
		done
		gw_faults '{"poison_rate":0}'
		for db in ftdb latin; do
			out=$(check_orders "$db" "$prefix" "$provider")
			rc=$?
			is "$rc" "0" "round $round, $provider, $db: every order ends where the gateway's books say"
			[ "$rc" -eq 0 ] || diag "$out"
			# charge requests answered about the order (no 401/403/429/5xx,
			# not unanswered: those do not count) never exceed max_attempts;
			# after them only look-ups, which go on until one is readable
			# (Stripe's GET by id is spoiled too), however many that takes
			long=$(q "$db" "SELECT string_agg(order_id::text, ' ') FROM (SELECT order_id FROM ft_orders.payment_attempts pa JOIN ft_orders.orders o USING (order_id)
			                 WHERE o.idempotency_key LIKE '$prefix-%' AND pa.request = 'charge'
			                   AND pa.http_status IS NOT NULL AND pa.http_status NOT IN (401, 403, 429) AND pa.http_status < 500
			                 GROUP BY order_id HAVING count(*) > $MAX_ATTEMPTS) x")
			is "$long" "" "round $round, $provider, $db: no order was sent more than max_attempts times, look-ups after"
			for id in $long; do diag "order $id: $(attempts_of "$db" "$id")"; done
			diag "round $round, $provider, $db: $(q "$db" "SELECT string_agg(status::text || ':' || n, ' ') FROM (SELECT status, count(*) n FROM ft_orders.orders WHERE idempotency_key LIKE '$prefix-%' GROUP BY status ORDER BY status) s")"
		done
		gw_faults "{\"poison_rate\":$RATE}"
	done
done

is "$(gw_ledger duplicate_keys)" "0" "no key charged twice at the gateway (order ids repeat across the two databases)"
for db in ftdb latin; do
	is "$(q "$db" "SELECT count(*) FROM ft_orders.orders WHERE octet_length(next_action::text) > 4500")" "0" \
		"$db: every stored next_action fits a NOTIFY payload"
	is "$(q "$db" "SELECT count(*) FROM ft_orders.payment_attempts WHERE error !~ '^[ -~]*\$'")" "0" \
		"$db: every recorded error is printable ASCII"
done
is "$(pids_of ftdb)" "$pids_ftdb" "the workers of the UTF8 database are the processes of the start"
is "$(pids_of latin)" "$pids_latin" "the workers of the LATIN1 database are the processes of the start"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -c 'ft_orders payment worker.*exited with exit code' "$PG_LOG")" "0" "no payment worker exited"
poisoned=$(gw_ledger poisoned_replies)
cmp_ok "$poisoned" -gt 0 "the gateway spoiled replies"
diag "$total_orders orders, $(gw_ledger requests) payment requests, $poisoned spoiled replies (largest $(gw_ledger poisoned_bytes_max) B): $(curl -fsS "$GW_URL/ledger" | jq -c .poison_kinds), $(( $(date +%s) - started )) s"
done_testing
