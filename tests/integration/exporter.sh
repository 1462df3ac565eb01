#!/bin/bash
# exporter.sh: contrib/postgres_exporter/ft_orders_queries.yaml, for real.
#
# Runs Debian's prometheus-postgres-exporter on 127.0.0.1 against a test
# server with that queries file, logged in as a read-only role that is a
# member of ft_orders_app and pg_monitor (no superuser), and scrapes
# /metrics while orders flow: the queue metric shows the orders pending
# while the gateway is down and the circuit metric shows it open; both go
# back (queue 0, circuit closed) when the gateway returns; the outcome
# counters move by exactly the paid/declined/failed amounts; every figure
# equals what the monitoring views say; the exporter logs no query error.
# A second exporter logged in as a role without ft_orders_app shows that
# the error checks do catch failing queries; a third one with
# --auto-discover-databases, that "master: true" keeps our queries on the
# DSN's database.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

source "$(dirname "$0")/../lib/exporter.sh"

N=10

if [ -z "$EXPORTER_BIN" ] || [ ! -x "$EXPORTER_BIN" ]; then
	bail_out "prometheus-postgres-exporter is not installed (tests/setup/deps.sh installs it)"
fi
[ -r "$EXPORTER_QUERIES" ] || bail_out "no queries file at $EXPORTER_QUERIES"

# scrape: GET /metrics into $SCRAPE
scrape()
{
	SCRAPE=$(curl -fsS --max-time 20 "$EXP_URL/metrics")
}

# mraw NAME [LABEL="VALUE"...]: the value, as printed, of the first sample
# of NAME in $SCRAPE that carries all these labels (empty if none)
mraw()
{
	msamples "$@" | head -n 1
}

# msamples NAME [LABEL="VALUE"...]: the values of NAME's samples that carry
# these labels, one a line
msamples()
{
	local name=$1
	shift
	awk -v name="$name" -v want="$*" '
		/^#/ { next }
		{
			series = $1
			base = series; sub(/\{.*/, "", base)
			if (base != name) next
			labels = series; sub(/^[^{]*/, "", labels)
			n = split(want, w, " ")
			for (i = 1; i <= n; i++)
				if (index(labels, "{" w[i]) == 0 && index(labels, "," w[i]) == 0) next
			print $NF
		}' <<<"$SCRAPE"
}

# msum NAME [LABEL="VALUE"...]: sum of all samples of NAME with these
# labels, as an integer when it is one ("none" when there is no sample)
msum()
{
	msamples "$@" | awk 'BEGIN { found = 0; sum = 0 } { found = 1; sum += $1 }
		END { if (found) printf "%.15g\n", sum; else print "none" }'
}

# wait_metric SECONDS EXPECTED NAME [LABEL="VALUE"...]: scrape until
# msum NAME LABELS prints EXPECTED; fail after SECONDS
wait_metric()
{
	local limit=$1 expected=$2 deadline
	shift 2
	deadline=$(($(date +%s) + limit))
	while [ "$(date +%s)" -le "$deadline" ]; do
		scrape && [ "$(msum "$@")" = "$expected" ] && return 0
		sleep 0.3
	done
	return 1
}

# wait_metric_ge SECONDS MIN NAME [LABEL="VALUE"...]: scrape until the sum
# is at least MIN; fail after SECONDS
wait_metric_ge()
{
	local limit=$1 min=$2 deadline v
	shift 2
	deadline=$(($(date +%s) + limit))
	while [ "$(date +%s)" -le "$deadline" ]; do
		if scrape; then
			v=$(msum "$@")
			[ "$v" != none ] && awk -v v="$v" -v m="$min" 'BEGIN { exit !(v + 0 >= m + 0) }' && return 0
		fi
		sleep 0.3
	done
	return 1
}

exporter_pg_start || bail_out "the fake gateway or the server did not start"

# the role docs/monitoring.md recommends: login, no superuser, read-only sessions
exporter_role || bail_out "could not create the exporter role"
is "$(psql_q "SELECT rolsuper FROM pg_roles WHERE rolname = 'ft_exporter'")" "f" \
	"the exporter role is not a superuser"

exporter_start ft_exporter "$FT_TMP/exporter.log" || bail_out "the exporter did not serve /metrics"
# (Debian 13's exporter appends "; escaping=underscores")
like "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$EXP_URL/metrics")" \
	'^200 text/plain; version=0\.0\.4; charset=utf-8(; escaping=[a-z-]+)?$' "the exporter serves /metrics on 127.0.0.1:$EXP_PORT"
like "$(ss -Hltn "sport = :$EXP_PORT" | awk '{print $4}' | sort -u | tr '\n' ' ')" '^127\.0\.0\.1:[0-9]+ $' \
	"it listens on loopback only"
is "$(psql_q "SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'ft_exporter' AND datname = 'ftdb'")" "t" \
	"the exporter is connected to ftdb as ft_exporter"

# --- 1. every metric family, with its type and labels, before any order
# the launcher starts the workers after CREATE EXTENSION: wait for both
wait_metric 30 2 ft_orders_worker_state_current state=\"idle\" ||
	diag "the two workers did not show up idle within 30 s"
is "$(mraw pg_up)" "1" "pg_up is 1"
is "$(mraw pg_exporter_user_queries_load_error)" "0" "the queries file loaded without error"
is "$(mraw pg_exporter_last_scrape_error)" "0" "the scrape ran without error"

types="ft_orders_queue_pending gauge
ft_orders_queue_due_now gauge
ft_orders_queue_in_flight gauge
ft_orders_queue_scheduled_retries gauge
ft_orders_queue_dead_letters gauge
ft_orders_queue_oldest_pending_age_seconds gauge
ft_orders_orders gauge
ft_orders_orders_amount_minor gauge
ft_orders_orders_oldest_age_seconds gauge
ft_orders_worker_in_flight gauge
ft_orders_worker_processed_total counter
ft_orders_worker_last_activity_age_seconds gauge
ft_orders_worker_outcomes_total counter
ft_orders_worker_state_current gauge
ft_orders_gateway_circuit gauge
ft_orders_gateway_circuit_state_current gauge
ft_orders_gateway_consecutive_failures gauge
ft_orders_gateway_requests_total counter
ft_orders_gateway_errors_total counter
ft_orders_gateway_latency_p50_seconds gauge
ft_orders_gateway_latency_p99_seconds gauge
ft_orders_gateway_last_http_status gauge
ft_orders_gateway_failure_rate gauge
ft_orders_gateway_rate_limit gauge
ft_orders_gateway_concurrency_limit gauge
ft_orders_gateway_throttled_total counter
ft_orders_gateway_paused_until_timestamp_seconds gauge"
missing=""
while read -r name type; do
	grep -qxF "# TYPE $name $type" <<<"$SCRAPE" || missing+=" $name($type)"
	grep -qE "^# HELP $name [A-Za-z0-9]" <<<"$SCRAPE" || missing+=" $name(HELP)"
done <<<"$types"
is "$missing" "" "all 27 ft_orders metric families have their TYPE and a HELP text"
is "$(grep -cE '^ft_orders_' <<<"$SCRAPE")" \
	"$((6 + 3 * 8 + 3 * 2 + 4 * 2 + 7 * 2 + 12 + 3))" \
	"ft_orders series: 6 queue, 3x8 per status (4 of them from 1.3), 3x2 per worker, 4x2 outcomes, 7x2 worker states, 12 gateway, 3 circuit states"
is "$(grep -oE '^ft_orders_orders\{[^}]*\}' <<<"$SCRAPE" | grep -oE 'status="[a-z_]+"' | LC_ALL=C sort | tr '\n' ' ')" \
	'status="action_required" status="canceled" status="declined" status="failed" status="paid" status="partially_refunded" status="pending" status="refunded" ' \
	"ft_orders_orders has one series per order status"
is "$(grep -oE '^ft_orders_worker_outcomes_total\{[^}]*\}' <<<"$SCRAPE" | grep -oE 'outcome="[a-z]+",.*worker="[0-9]+"' |
	sed -E 's/,server="[^"]*"//' | sort | tr '\n' ' ')" \
	'outcome="declined",worker="1" outcome="declined",worker="2" outcome="failed",worker="1" outcome="failed",worker="2" outcome="paid",worker="1" outcome="paid",worker="2" outcome="retried",worker="1" outcome="retried",worker="2" ' \
	"ft_orders_worker_outcomes_total is labelled by worker and outcome"
is "$(msum ft_orders_worker_state_current state=\"idle\")" "2" "both workers are idle"
is "$(msum ft_orders_worker_state_current)" "2" "each worker is in exactly one state"
is "$(mraw ft_orders_gateway_circuit_state_current state=\"closed\") $(mraw ft_orders_gateway_circuit)" "1 0" \
	"the circuit is closed"
is "$(mraw ft_orders_gateway_latency_p50_seconds) $(mraw ft_orders_gateway_last_http_status) $(mraw ft_orders_gateway_concurrency_limit) $(mraw ft_orders_gateway_paused_until_timestamp_seconds)" "NaN NaN 64 0" \
	"latency and last status are NaN before the first request; concurrency_limit is max_in_flight, no pause"
is "$(msum ft_orders_queue_pending) $(msum ft_orders_orders)" "0 0" "no order, nothing pending"

# --- 2. gateway down: orders pile up, the circuit opens
gw_faults '{"down":true}' || bail_out "could not set faults"
place_orders down $N 1000
ok $? "placed $N orders while the gateway is down"

wait_metric 20 1 ft_orders_gateway_circuit_state_current state=\"open\"
ok $? "ft_orders_gateway_circuit_state_current{state=\"open\"} becomes 1"
is "$(mraw ft_orders_gateway_circuit)" "1" "ft_orders_gateway_circuit is 1 (open)"
is "$(msum ft_orders_gateway_circuit_state_current)" "1" "the circuit is in exactly one state"
cmp_ok "$(msum ft_orders_gateway_consecutive_failures)" -ge 3 "consecutive_failures reached the threshold of 3"
cmp_ok "$(msum ft_orders_gateway_errors_total)" -ge 3 "gateway errors_total counted the failures"
cmp_ok "$(msum ft_orders_worker_outcomes_total outcome=\"retried\")" -ge 3 "retried outcomes counted the failures"
is "$(msum ft_orders_queue_pending)" "$N" "ft_orders_queue_pending shows the $N pending orders"
is "$(msum ft_orders_orders status=\"pending\")" "$N" "ft_orders_orders{status=\"pending\"} is $N"
is "$(msum ft_orders_orders_amount_minor status=\"pending\")" "$((N * 1000 + N * (N + 1) / 2))" \
	"ft_orders_orders_amount_minor{status=\"pending\"} adds their amounts"
cmp_ok "$(msum ft_orders_queue_oldest_pending_age_seconds | cut -d. -f1)" -ge 0 "the oldest pending age is reported"
is "$(msum ft_orders_worker_outcomes_total outcome=\"paid\") $(msum ft_orders_queue_dead_letters)" "0 0" \
	"nothing paid, nothing dead-lettered"
wait_metric_ge 10 1 ft_orders_worker_state_current state=\"circuit_open\"
ok $? "a worker shows state circuit_open"
sleep 1
scrape
cmp_ok "$(msum ft_orders_queue_oldest_pending_age_seconds | cut -d. -f1)" -ge 1 \
	"the oldest pending age grows while the gateway is down"

# --- 3. gateway back: queue drains, circuit closes, every order paid
gw_faults reset
wait_metric 40 0 ft_orders_queue_pending
ok $? "ft_orders_queue_pending drops to 0 when the gateway is back"
wait_metric 10 1 ft_orders_gateway_circuit_state_current state=\"closed\"
ok $? "ft_orders_gateway_circuit_state_current{state=\"closed\"} is 1 again"
is "$(mraw ft_orders_gateway_circuit) $(msum ft_orders_gateway_consecutive_failures)" "0 0" \
	"circuit gauge 0, no consecutive failures"
wait_metric 10 "$N" ft_orders_worker_outcomes_total outcome=\"paid\"
ok $? "ft_orders_worker_outcomes_total{outcome=\"paid\"} adds up to $N"
is "$(msum ft_orders_orders status=\"paid\") $(msum ft_orders_orders status=\"pending\")" "$N 0" \
	"ft_orders_orders: $N paid, 0 pending"
is "$(msum ft_orders_queue_oldest_pending_age_seconds)" "0" "the oldest pending age is 0 with an empty queue"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$N 0" "ledger: $N charges, no duplicates"
lat=$(mraw ft_orders_gateway_latency_p50_seconds)
like "$lat" '^[0-9.e+-]+$' "latency p50 is a number now ($lat s)"
is "$(mraw ft_orders_gateway_last_http_status)" "200" "last_http_status is 200"

# the exporter says what the views say (nothing moves now)
wait_until "SELECT bool_and(state = 'idle') FROM ft_orders.worker_status" 10 >/dev/null
scrape
is "$(msum ft_orders_gateway_requests_total) $(msum ft_orders_gateway_errors_total)" \
	"$(psql_q "SELECT requests || ' ' || errors FROM ft_orders.gateway_status")" \
	"requests_total and errors_total equal gateway_status"
is "$(msum ft_orders_worker_outcomes_total outcome=\"retried\") $(msum ft_orders_worker_processed_total)" \
	"$(psql_q "SELECT sum(retried) || ' ' || sum(processed) FROM ft_orders.worker_status")" \
	"retried and processed equal worker_status"
is "$(msum ft_orders_worker_processed_total)" "$(msum ft_orders_worker_outcomes_total)" \
	"processed_total is the sum of the outcome counters"
for w in 1 2; do
	is "$(msum ft_orders_worker_outcomes_total worker=\"$w\" outcome=\"paid\")" \
		"$(psql_q "SELECT succeeded FROM ft_orders.worker_status WHERE worker_id = $w")" \
		"worker $w: outcome paid equals worker_status.succeeded"
done

# --- 4. declines and rejections move their own counters by the right amounts
scrape
paid0=$(msum ft_orders_worker_outcomes_total outcome=\"paid\")
dec0=$(msum ft_orders_worker_outcomes_total outcome=\"declined\")
fail0=$(msum ft_orders_worker_outcomes_total outcome=\"failed\")
retr0=$(msum ft_orders_worker_outcomes_total outcome=\"retried\")
err0=$(msum ft_orders_gateway_errors_total)
req0=$(msum ft_orders_gateway_requests_total)
gw_faults '{"decline_amount_minor":[402],"reject_amount_minor":[422],"bad_request_amount_minor":[400]}' ||
	bail_out "could not set faults"
psql_q "SELECT count(*) FROM (VALUES ('ok-1', 100), ('ok-2', 101), ('ok-3', 102), ('ok-4', 103),
                                      ('dec-1', 402), ('dec-2', 402), ('dec-3', 402),
                                      ('rej-1', 422), ('bad-1', 400)) v(k, amount),
        LATERAL ft_orders.place_order(v.k, 'cust', v.amount, 'EUR')" >/dev/null
ok $? "placed 4 orders to pay, 3 to decline, 2 to reject"
wait_metric 30 0 ft_orders_queue_pending
ok $? "the queue drains"
wait_metric 10 "$((fail0 + 2))" ft_orders_worker_outcomes_total outcome=\"failed\"
ok $? "outcome failed moved by 2"
is "$(($(msum ft_orders_worker_outcomes_total outcome=\"paid\") - paid0))" "4" "outcome paid moved by 4"
is "$(($(msum ft_orders_worker_outcomes_total outcome=\"declined\") - dec0))" "3" "outcome declined moved by 3"
is "$(($(msum ft_orders_worker_outcomes_total outcome=\"retried\") - retr0))" "0" "outcome retried did not move"
is "$(($(msum ft_orders_gateway_requests_total) - req0)) $(($(msum ft_orders_gateway_errors_total) - err0))" "9 0" \
	"9 more requests, no more transient errors"
is "$(msum ft_orders_queue_dead_letters)" "2" "ft_orders_queue_dead_letters is 2"
is "$(msum ft_orders_orders status=\"paid\") $(msum ft_orders_orders status=\"declined\") $(msum ft_orders_orders status=\"failed\")" \
	"$((N + 4)) 3 2" "ft_orders_orders: paid, declined, failed"
is "$(msum ft_orders_orders_amount_minor status=\"declined\") $(msum ft_orders_orders_amount_minor status=\"failed\")" \
	"1206 822" "ft_orders_orders_amount_minor: declined 3x402, failed 422+400"
is "$(mraw ft_orders_gateway_circuit)" "0" "permanent answers leave the circuit closed"

# --- 5. no query error, and the role really is read-only
scrape
is "$(mraw pg_up) $(mraw pg_exporter_last_scrape_error)" "1 0" "pg_up 1, last scrape without error"
cmp_ok "$(msum pg_exporter_scrapes_total)" -ge 10 "the exporter scraped PostgreSQL $(msum pg_exporter_scrapes_total) times"
# a failing query is logged at level=info as "Error running query on
# database", the scrape as a whole at level=error
errs=$(grep -E 'level=(error|warn)|Error running query' "$FT_TMP/exporter.log" | head -n 5)
is "$errs" "" "the exporter logged no error and no failed query"
is "$(psql -XAtq -U ft_exporter -v VERBOSITY=sqlstate \
	-c "SELECT * FROM ft_orders.place_order('exp-1', 'cust', 100, 'EUR')" 2>&1)" "ERROR:  25006" \
	"the exporter role cannot place orders (read-only session)"
is "$(psql -XAtq -U ft_exporter -v VERBOSITY=sqlstate -c "SELECT count(*) FROM ft_orders.orders" 2>&1)" \
	"ERROR:  42501" "the exporter role cannot read the orders table"

# --- 6. the checks above would catch failing queries: a role without
# ft_orders_app makes every ft_orders query fail
psql_q "CREATE ROLE ft_nobody LOGIN" >/dev/null
main_url=$EXP_URL
exporter_start ft_nobody "$FT_TMP/exporter_nobody.log" || bail_out "the second exporter did not start"
scrape
is "$(mraw pg_up) $(mraw pg_exporter_last_scrape_error)" "1 1" \
	"without ft_orders_app: connected, but the scrape reports an error"
is "$(grep -c '^ft_orders_' <<<"$SCRAPE")" "0" "without ft_orders_app: no ft_orders series"
is "$(grep 'Error running query' "$FT_TMP/exporter_nobody.log" | grep 'permission denied for schema ft_orders' |
	sed -nE 's/.*": ([a-z_]+) pq: .*/\1/p' | sort -u | tr '\n' ' ')" \
	"ft_orders ft_orders_gateway ft_orders_gateway_circuit_state ft_orders_queue ft_orders_worker ft_orders_worker_outcomes ft_orders_worker_state " \
	"without ft_orders_app: the exporter logs the permission error of each of the 7 queries"
kill "$EXP_PID"

# --- 7. "master: true": with --auto-discover-databases the exporter also
# connects to postgres and template1, where ft_orders does not exist; our
# queries must run only on the DSN's database
exporter_start ft_exporter "$FT_TMP/exporter_discover.log" --auto-discover-databases ||
	bail_out "the auto-discovering exporter did not start"
scrape
is "$(mraw pg_exporter_last_scrape_error)" "0" "--auto-discover-databases: the scrape runs without error"
cmp_ok "$(grep -c '^pg_stat_database_numbackends{.*datname="template1"' <<<"$SCRAPE")" -ge 1 \
	"--auto-discover-databases: other databases are scraped too"
is "$(grep -c '^ft_orders_' <<<"$SCRAPE")" "73" "--auto-discover-databases: the same 73 ft_orders series, once"
errs=$(grep -E 'level=(error|warn)|Error running query' "$FT_TMP/exporter_discover.log" | head -n 5)
is "$errs" "" "--auto-discover-databases: no failed query"
kill "$EXP_PID"
EXP_URL=$main_url

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
