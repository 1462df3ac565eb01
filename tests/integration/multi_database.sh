#!/bin/bash
# multi_database.sh: one preload serves several databases
# (docs/reference.md, "Settings", ft_orders.database; docs/operations.md,
# "Several databases").
#
# One server with ft_orders.database = 'shop_a, shop_b' (neither exists at
# start), 2 payment workers per database, one fake gateway:
#  - the launchers of databases that do not exist yet wait, saying so once;
#  - bad lists are refused by ALTER SYSTEM (22023), which writes nothing;
#  - CREATE EXTENSION works in both listed databases and is refused (55000,
#    a hint naming the database) in an unlisted one;
#  - orders placed in both at once are all paid in their own database, one
#    charge per payment_key at the gateway; each database's views and
#    metrics() count its own workers and requests only; the same client key
#    and request in two databases are two payments;
#  - isolation, gateway down: the gateway got requests for each database's
#    own orders only (key and order_id, as its payment_attempts rows say),
#    reset_stats(), the counters and the circuit are per database;
#  - DROP DATABASE shop_b failing (another session is connected): its
#    workers come back; DROP DATABASE shop_b (plain) while its workers are
#    busy: it succeeds, shop_a keeps its workers and drains, shop_b's
#    launcher waits; a new shop_b gets its workers back without a restart;
#  - rate_limit is the account's: both databases together stay within it;
#  - ALTER SYSTEM adds shop_c (existing) and shop_d (not yet) + restart:
#    the pending orders of every database are paid, shop_d's launcher
#    waits until it is created; DROP DATABASE shop_c WITH (FORCE) while busy;
#  - shop_b taken off the list + restart: its views and metrics() show
#    nothing, place_order still works there, nothing pays its orders;
#  - per-database application roles: a role of shop_a cannot place orders
#    in shop_b (CONNECT privileges; grants in one database only).
# About 30 s.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

N_A=300
N_B=200

# q DB SQL: one query in database DB, unaligned, tuples only
q()
{
	psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

# wait_db DB SQL SECONDS: wait_until in database DB
wait_db()
{
	PGDATABASE=$1 wait_until "$2" "${3:-30}"
}

# err_of DB SQL: the error report of SQL (with its SQLSTATE), or nothing
err_of()
{
	psql -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$1" -c "$2" 2>&1 >/dev/null
}

# log_count STRING: lines of the server log holding STRING
log_count()
{
	grep -c -F -- "$1" "$PG_LOG"
}

# wait_log STRING COUNT SECONDS: until the server log holds COUNT lines with STRING
wait_log()
{
	local deadline=$(($(date +%s) + $3))
	while [ "$(date +%s)" -le "$deadline" ]; do
		[ "$(log_count "$1")" -ge "$2" ] && return 0
		sleep 0.2
	done
	return 1
}

# orders DB PREFIX N CUSTOMER: place N orders, one transaction (and one
# wake-up) each, keys PREFIX-1 .. PREFIX-N
orders_sql()
{
	local i
	for i in $(seq 1 "$3"); do
		echo "SELECT ft_orders.place_order('$2-$i', '$4', $((100 + i)), 'EUR');"
	done
}
orders()
{
	orders_sql "$@" | psql -XAtq -v ON_ERROR_STOP=1 -d "$1" >/dev/null
}

# workers_seen DB: payment workers of DB's worker_status that run, connected
# to DB, as pg_stat_activity says; and those connected elsewhere
workers_seen()
{
	q "$1" "SELECT count(*) FILTER (WHERE s.datname = current_database()
	                                AND s.backend_type = 'ft_orders payment worker') || ' ' ||
	               count(*) FILTER (WHERE s.datname IS DISTINCT FROM current_database())
	          FROM ft_orders.worker_status w JOIN pg_stat_activity s ON s.pid = w.pid"
}

# metric DB NAME: one unlabelled sample of DB's metrics()
metric()
{
	q "$1" "SELECT ft_orders.metrics()" | awk -v n="$2" '$1 == n { print $2 }'
}

# --- a server whose two databases do not exist yet -----------------------------
gw_start || bail_out "the fake gateway did not start"
PGDATA=$FT_TMP/pgdata
PG_LOG=$FT_TMP/postgres.log
pg_init "$PGDATA" "shared_preload_libraries = 'ft_orders'" \
	"ft_orders.database = 'shop_a, shop_b'" "ft_orders.workers = 2" \
	"max_worker_processes = 24" "max_connections = 60" \
	"ft_orders.gateway_url = '$GW_URL'" \
	"ft_orders.request_timeout = '3s'" "ft_orders.lease_timeout = '6s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '500ms'" \
	"ft_orders.circuit_open_time = '2s'" || bail_out "initdb failed"
PGPORT=$PG_INIT_PORT
ulimit -n 65536 2>/dev/null || true
pg_start_again || { tail -n 30 "$PG_LOG" >&2; bail_out "the server did not start"; }
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres

for db in shop_a shop_b; do
	wait_log "database \"$db\" does not exist yet" 1 15
	ok $? "$db does not exist: its launcher says it waits"
done
is "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ft_orders launcher' AND datname IS NULL")" \
	"2" "two launchers, connected to no database"
sleep 3
for db in shop_a shop_b; do
	is "$(log_count "database \"$db\" does not exist yet")" "1" "... $db's launcher said it once in 3 s"
done

# --- bad lists: 22023, postgresql.auto.conf untouched ----------------------------
auto_before=$(as_pg cat "$PGDATA/postgresql.auto.conf" | md5sum)
names17=$(seq -s ', ' -f 'db%g' 1 17)
name64=$(printf 'n%.0s' $(seq 1 64))
for bad in "" "  " "shop_a,,shop_b" "shop_a," "shop_a, \"\"" "shop_a, shop_a" "$names17" "$name64" "shop_a, $name64"; do
	like "$(err_of postgres "ALTER SYSTEM SET ft_orders.database = '$bad'")" '^ERROR:  22023: ' \
		"ALTER SYSTEM SET ft_orders.database = '${bad:0:40}': 22023"
done
is "$(as_pg cat "$PGDATA/postgresql.auto.conf" | md5sum)" "$auto_before" \
	"postgresql.auto.conf unchanged by the refused values"
# the limits themselves are accepted: 16 names, a name of 63 bytes, quotes
names16="$(seq -s ', ' -f 'db%g' 1 15), \"$(printf 'm%.0s' $(seq 1 63))\""
is "$(err_of postgres "ALTER SYSTEM SET ft_orders.database = '$names16'")" "" \
	"16 names, one of 63 bytes, are accepted"
is "$(err_of postgres "ALTER SYSTEM SET ft_orders.database = 'shop_a, \"shop b, \"\"q\"\"\"'")" "" \
	"a quoted name with a comma, a space and a quote is accepted"
q postgres "ALTER SYSTEM RESET ft_orders.database" >/dev/null
is "$(as_pg cat "$PGDATA/postgresql.auto.conf" | grep -c 'ft_orders.database')" "0" \
	"ALTER SYSTEM RESET leaves no ft_orders.database line"

# --- CREATE EXTENSION: listed databases only ------------------------------------
for db in shop_a shop_b shop_c; do
	q postgres "CREATE DATABASE $db" >/dev/null || bail_out "CREATE DATABASE $db failed"
done
for db in shop_a shop_b; do
	wait_log "extension \"ft_orders\" is not installed in database \"$db\"" 1 15
	ok $? "$db created: its launcher connects and waits for the extension"
	is "$(err_of "$db" "CREATE EXTENSION ft_orders")" "" "CREATE EXTENSION in listed database $db"
done
err=$(err_of shop_c "CREATE EXTENSION ft_orders")
like "$err" '^ERROR:  55000: ' "CREATE EXTENSION in unlisted shop_c: 55000"
like "$err" 'HINT:  [^"]*"shop_c"' "... with a hint naming shop_c"
is "$(q shop_c "SELECT count(*) FROM pg_namespace WHERE nspname = 'ft_orders'")" "0" \
	"... and nothing of the extension is left in shop_c"
for db in shop_a shop_b; do
	wait_db "$db" "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state = 'idle'" 20
	ok $? "$db: two payment workers idle, without a restart"
done

# --- both databases at once ------------------------------------------------------
orders shop_a a "$N_A" cust-a &
pid_a=$!
orders shop_b b "$N_B" cust-b &
pid_b=$!
wait "$pid_a"
ok $? "placed $N_A orders in shop_a, one transaction each ..."
wait "$pid_b"
ok $? "... while $N_B were placed in shop_b"
wait_db shop_a "SELECT count(*) = $N_A FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "shop_a: all $N_A orders paid"
wait_db shop_b "SELECT count(*) = $N_B FROM ft_orders.orders WHERE status = 'paid'" 60
ok $? "shop_b: all $N_B orders paid"
is "$(gw_ledger charges) $(gw_ledger keys) $(gw_ledger duplicate_keys)" "$((N_A + N_B)) $((N_A + N_B)) 0" \
	"ledger: $((N_A + N_B)) charges under as many keys, no key charged twice"
# every charged key is an order of exactly one database, with its order_id
{ q shop_a "SELECT payment_key || ' ' || order_id FROM ft_orders.orders"
  q shop_b "SELECT payment_key || ' ' || order_id FROM ft_orders.orders"; } | LC_ALL=C sort >"$FT_TMP/keys.db"
curl -fsS "$GW_URL/ledger/receipts" | awk '$4 == 1 { print $1 " " $2 }' | LC_ALL=C sort >"$FT_TMP/keys.gw"
is "$(wc -l <"$FT_TMP/keys.gw") $(LC_ALL=C sort -u -k1,1 "$FT_TMP/keys.db" | wc -l)" "$((N_A + N_B)) $((N_A + N_B))" \
	"$((N_A + N_B)) charged keys, $((N_A + N_B)) distinct payment keys in the two databases"
is "$(LC_ALL=C comm -3 "$FT_TMP/keys.db" "$FT_TMP/keys.gw" | wc -l)" "0" \
	"the charged keys are exactly the orders of both databases (key and order_id)"
for db in shop_a shop_b; do
	[ "$db" = shop_a ] && n=$N_A || n=$N_B
	is "$(workers_seen "$db")" "2 0" "$db: worker_status shows 2 workers, connected to $db in pg_stat_activity"
	wait_db "$db" "SELECT sum(succeeded) = $n AND sum(processed) = $n FROM ft_orders.worker_status" 5
	ok $? "$db: its workers' counters count its $n payments"
	wait_db "$db" "SELECT requests = $n FROM ft_orders.gateway_status" 5
	ok $? "$db: gateway_status counts its own $n requests ($(q "$db" "SELECT requests FROM ft_orders.gateway_status"))"
	is "$(metric "$db" ft_orders_gateway_requests_total)" "$n" \
		"$db: metrics() counts its own $n requests"
done
is "$(q postgres "SELECT string_agg(datname || ':' || n, ' ' ORDER BY datname) FROM
                  (SELECT datname, count(*) AS n FROM pg_stat_activity
                    WHERE backend_type IN ('ft_orders launcher', 'ft_orders payment worker')
                    GROUP BY datname) s")" "shop_a:3 shop_b:3" \
	"pg_stat_activity: a launcher and 2 workers per database, none elsewhere"

# the same client key and request in both databases: two payments (the
# gateway must not take the second for a replay of the first)
for db in shop_a shop_b; do
	q "$db" "SELECT ft_orders.place_order('same-key', 'cust-same', 4242, 'EUR')" >/dev/null
done
for db in shop_a shop_b; do
	wait_db "$db" "SELECT status = 'paid' FROM ft_orders.orders WHERE idempotency_key = 'same-key'" 15
	ok $? "$db: the order with the shared client key is paid"
done
key_a=$(q shop_a "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'same-key'")
key_b=$(q shop_b "SELECT payment_key FROM ft_orders.orders WHERE idempotency_key = 'same-key'")
isnt_same=$([ "$key_a" != "$key_b" ]; echo $?)
ok "$isnt_same" "the two orders go to the gateway under different payment keys ($key_a, $key_b)"
is "$(gw_ledger charges)" "$((N_A + N_B + 2))" "ledger: the two orders are two charges"

# --- isolation while the gateway is down ----------------------------------------
q shop_a "SELECT ft_orders.reset_stats()" >/dev/null
is "$(q shop_a "SELECT requests || ' ' || coalesce(sum(w.processed), 0)
                  FROM ft_orders.gateway_status, ft_orders.worker_status w GROUP BY requests")" "0 0" \
	"reset_stats() in shop_a zeroes shop_a's figures ..."
is "$(q shop_b "SELECT requests FROM ft_orders.gateway_status")" "$((N_B + 1))" \
	"... and not shop_b's"
gw_faults '{"down":true}' || bail_out "could not set faults"
errors_b=$(q shop_b "SELECT errors FROM ft_orders.gateway_status")
orders shop_a iso-a 20 iso-a
wait_db shop_a "SELECT circuit = 'open' FROM ft_orders.gateway_status" 20
ok $? "shop_a: the circuit opens"
is "$(q shop_b "SELECT circuit || ' ' || (errors - $errors_b) || ' ' || count(*) FILTER (WHERE w.state = 'idle')
                  FROM ft_orders.gateway_status, ft_orders.worker_status w GROUP BY circuit, errors")" "closed 0 2" \
	"shop_b, which sent nothing: its circuit stays closed, no error counted, its workers idle"
orders shop_b iso-b 30 iso-b
wait_db shop_b "SELECT circuit = 'open' FROM ft_orders.gateway_status" 20
ok $? "shop_b: its circuit opens once it sends"
is "$(q shop_a "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'") $(q shop_b "SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'")" \
	"20 30" "orders pending in both databases"
# every request the gateway got from customer iso-X (its request log: key
# and order_id) is for one of database shop_X's orders; and the attempts
# shop_X recorded are its own workers' (gateway_status counts them).  Not
# compared request by request: libcurl sends a request again, up to 5
# times, when pooled keep-alive connections turn out closed before any
# reply (as this gateway closes them), and a send on a connection already
# closed never reaches the gateway.
for pair in shop_a:iso-a:20 shop_b:iso-b:30; do
	IFS=: read -r db cust n <<<"$pair"
	curl -fsS "$GW_URL/ledger/requests" | awk -v c="$cust" '$5 == c { print $3 "/" $4 }' |
		LC_ALL=C sort -u >"$FT_TMP/iso.gw"
	q "$db" "SELECT payment_key || '/' || order_id FROM ft_orders.orders WHERE customer_id = '$cust'" |
		LC_ALL=C sort >"$FT_TMP/iso.db"
	is "$(LC_ALL=C comm -23 "$FT_TMP/iso.gw" "$FT_TMP/iso.db" | wc -l) $(wc -l <"$FT_TMP/iso.db")" "0 $n" \
		"$db: each request the gateway got for $cust is for one of $db's $n orders (key and order_id)"
	cmp_ok "$(wc -l <"$FT_TMP/iso.gw")" -gt 0 "... and it got requests for $(wc -l <"$FT_TMP/iso.gw") of them"
done
wait_db shop_a "SELECT requests = (SELECT count(*) FROM ft_orders.payment_attempts a
                                     JOIN ft_orders.orders o USING (order_id)
                                    WHERE o.customer_id = 'iso-a')
                  FROM ft_orders.gateway_status" 10
ok $? "shop_a: gateway_status counts its own attempts since its reset_stats()"
wait_db shop_b "SELECT requests = (SELECT count(*) FROM ft_orders.payment_attempts)
                  FROM ft_orders.gateway_status" 10
ok $? "shop_b: gateway_status counts all its own attempts, none of shop_a's"
gw_faults reset
for pair in shop_a:20 shop_b:30; do
	db=${pair%%:*}
	wait_db "$db" "SELECT count(*) = 0 FROM ft_orders.orders WHERE status <> 'paid'" 30
	ok $? "$db: the gateway is back, its ${pair#*:} pending orders are paid"
done

# --- DROP DATABASE shop_b while its workers are busy ------------------------------
pids_a=$(q shop_a "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status")
# first a DROP that fails (a session of ours is connected): the workers come back
psql -XAtq -d shop_b -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
sleeper=$!
FT_PIDS+=("$sleeper")
wait_db postgres "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'shop_b' AND backend_type = 'client backend'" 10 ||
	bail_out "the session in shop_b did not start"
like "$(err_of postgres "DROP DATABASE shop_b")" '^ERROR:  55006: ' \
	"DROP DATABASE shop_b fails (55006) while another session is connected to it"
wait_db shop_b "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state = 'idle'" 15
ok $? "shop_b: its workers are back after the failed DROP"
q postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop_b' AND backend_type = 'client backend'" >/dev/null
wait "$sleeper" 2>/dev/null
gw_faults '{"latency_ms":1500}' || bail_out "could not set faults"
orders shop_a drop-a 40 drop-a
orders shop_b drop-b 40 drop-b
wait_db shop_b "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status" 10
ok $? "shop_b: requests in flight"
err=$(err_of postgres "DROP DATABASE shop_b")
is "$err" "" "plain DROP DATABASE shop_b succeeds while its workers are busy"
is "$(q postgres "SELECT count(*) FROM pg_database WHERE datname = 'shop_b'")" "0" "shop_b is gone"
gw_faults reset
wait_db shop_a "SELECT count(*) = 40 FROM ft_orders.orders WHERE customer_id = 'drop-a' AND status = 'paid'" 30
ok $? "shop_a goes on: its 40 orders are paid"
is "$(q shop_a "SELECT string_agg(pid::text, ' ' ORDER BY worker_id) FROM ft_orders.worker_status")" "$pids_a" \
	"shop_a's payment workers were not touched"
is "$(log_count 'stopping the payment workers of database "shop_b" for DROP DATABASE')" "2" \
	"the log says shop_b's workers were stopped for DROP DATABASE, once per DROP"
cmp_ok "$(grep 'FATAL' "$PG_LOG" | grep -v 'terminating connection due to administrator command' | grep -c -F 'shop_b')" -le 1 \
	"at most one FATAL mentions shop_b"
wait_log 'database "shop_b" does not exist yet' 2 15
ok $? "shop_b's launcher waits for the database again"
sleep 2
is "$(log_count 'database "shop_b" does not exist yet')" "2" "... saying it once"
q postgres "CREATE DATABASE shop_b" >/dev/null && q shop_b "CREATE EXTENSION ft_orders" >/dev/null
ok $? "shop_b created again, with the extension"
wait_db shop_b "SELECT count(*) = 2 FROM ft_orders.worker_status WHERE pid IS NOT NULL AND state = 'idle'" 20
ok $? "shop_b: its two payment workers are back, without a restart"
orders shop_b new-b 20 new-b
wait_db shop_b "SELECT count(*) = 20 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "shop_b: its 20 new orders are paid"

# --- one account, one rate limit: both databases together ----------------------
# ft_orders.rate_limit limits the account (all databases' workers share one
# token bucket): in any second at most rate + burst requests arrive (a
# fifth of the rate allowed for the jitter between a grant and the arrival:
# one bucket per database would let up to twice rate + burst through),
# though both databases drain at once
RATE=30
curl -fsS -X DELETE "$GW_URL/ledger" >/dev/null || bail_out "could not clear the ledger"
q postgres "ALTER SYSTEM SET ft_orders.rate_limit = $RATE" >/dev/null && as_pg pg_ctl -D "$PGDATA" reload >/dev/null
wait_db shop_a "SELECT rate_limit = $RATE FROM ft_orders.gateway_status" 10
for db in shop_a shop_b; do q "$db" "SELECT ft_orders.reset_stats()" >/dev/null; done
orders shop_a rl-a 60 rl-a &
pid_a=$!
orders shop_b rl-b 60 rl-b
wait "$pid_a"
for pair in shop_a:rl-a shop_b:rl-b; do
	db=${pair%%:*}
	wait_db "$db" "SELECT count(*) = 60 FROM ft_orders.orders WHERE customer_id = '${pair#*:}' AND status = 'paid'" 60
	ok $? "rate_limit $RATE: $db's 60 orders are paid"
	cmp_ok "$(q "$db" "SELECT throttled FROM ft_orders.gateway_status")" -gt 0 \
		"rate_limit $RATE: $db's workers were made to wait (gateway_status.throttled)"
done
maxw=$("$(dirname "$0")/harness/gateway_log.py" "$GW_URL" max_window 1)
cmp_ok "$maxw" -le $((RATE + RATE + RATE / 5)) \
	"rate_limit $RATE: at most rate + burst requests in any 1 s from both databases together ($maxw)"
q postgres "ALTER SYSTEM RESET ft_orders.rate_limit" >/dev/null && as_pg pg_ctl -D "$PGDATA" reload >/dev/null

# --- ALTER SYSTEM adds shop_c (exists) and shop_d (does not) + restart -------------
gw_faults '{"down":true}' || bail_out "could not set faults"
orders shop_a restart-a 10 restart-a
orders shop_b restart-b 10 restart-b
q postgres "ALTER SYSTEM SET ft_orders.database = 'shop_a, shop_b, shop_c, shop_d'" >/dev/null
ok $? "ALTER SYSTEM SET ft_orders.database = 'shop_a, shop_b, shop_c, shop_d'"
pg_stop && pg_start_again
ok $? "restart"
gw_faults reset
is "$(err_of shop_c "CREATE EXTENSION ft_orders")" "" "CREATE EXTENSION in shop_c, listed now"
orders shop_c c 25 cust-c
for pair in shop_a:restart-a shop_b:restart-b shop_c:cust-c; do
	db=${pair%%:*}
	wait_db "$db" "SELECT count(*) > 0 AND bool_and(status = 'paid') FROM ft_orders.orders WHERE customer_id = '${pair#*:}'" 30
	ok $? "$db: its orders placed before (or after) the restart are paid"
done
wait_log 'database "shop_d" does not exist yet' 1 15
ok $? "shop_d does not exist: its launcher says it waits"
sleep 2
is "$(log_count 'database "shop_d" does not exist yet')" "1" "... once"
q postgres "CREATE DATABASE shop_d" >/dev/null && q shop_d "CREATE EXTENSION ft_orders" >/dev/null
ok $? "shop_d created, with the extension"
orders shop_d d 15 cust-d
wait_db shop_d "SELECT count(*) = 15 FROM ft_orders.orders WHERE status = 'paid'" 30
ok $? "shop_d: its 15 orders are paid, without a restart"
is "$(q postgres "SELECT string_agg(datname || ':' || n, ' ' ORDER BY datname) FROM
                  (SELECT datname, count(*) AS n FROM pg_stat_activity
                    WHERE backend_type IN ('ft_orders launcher', 'ft_orders payment worker')
                    GROUP BY datname) s")" "shop_a:3 shop_b:3 shop_c:3 shop_d:3" \
	"pg_stat_activity: a launcher and 2 workers in each of the four databases"
# DROP DATABASE ... WITH (FORCE) of a served database, requests in flight
gw_faults '{"latency_ms":1500}' || bail_out "could not set faults"
orders shop_c force-c 20 force-c
wait_db shop_c "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status" 10
ok $? "shop_c: requests in flight"
is "$(err_of postgres "DROP DATABASE shop_c WITH (FORCE)")" "" "DROP DATABASE shop_c WITH (FORCE) succeeds"
gw_faults reset
is "$(log_count 'stopping the payment workers of database "shop_c" for DROP DATABASE')" "1" \
	"the log says shop_c's workers were stopped for it"
wait_log 'database "shop_c" does not exist yet' 1 15
ok $? "shop_c's launcher waits for the database"

# --- shop_b taken off the list + restart: kept, not served -------------------------
q postgres "ALTER SYSTEM SET ft_orders.database = 'shop_a, shop_d'" >/dev/null &&
	pg_stop && pg_start_again
ok $? "shop_b taken off the list, restart"
is "$(q shop_b "SELECT count(*) FROM ft_orders.worker_status")" "0" "shop_b: worker_status has no rows"
is "$(q shop_b "SELECT circuit || ' ' || requests || ' ' || errors FROM ft_orders.gateway_status")" "closed 0 0" \
	"shop_b: gateway_status shows nothing counted"
is "$(metric shop_b ft_orders_gateway_requests_total)" "0" "shop_b: metrics() answers, nothing counted"
is "$(err_of shop_b "SELECT ft_orders.reset_stats()")" "" "shop_b: reset_stats() answers"
q shop_b "SELECT ft_orders.place_order('unlisted-1', 'unlisted', 500, 'EUR')" >/dev/null
ok $? "shop_b: place_order still takes an order"
orders shop_a after-a 5 after-a
wait_db shop_a "SELECT count(*) = 5 FROM ft_orders.orders WHERE customer_id = 'after-a' AND status = 'paid'" 30
ok $? "shop_a, still listed, pays its new orders"
is "$(q shop_b "SELECT status FROM ft_orders.orders WHERE idempotency_key = 'unlisted-1'") $(q postgres "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop_b'")" \
	"pending 0" "shop_b's order stays pending: no ft_orders process is connected to shop_b"

# --- per-database application roles (docs/operations.md, "Several databases") ----
# ft_orders_app is one role for the whole server: its members may place
# orders in every database whose extension they can reach.  Each
# application gets a login role that may CONNECT to its own database only;
# a role that must connect to several gets its grants in one database
# only, not ft_orders_app.
q postgres "REVOKE CONNECT ON DATABASE shop_a, shop_b FROM PUBLIC;
            CREATE ROLE shop_a_app LOGIN; GRANT CONNECT ON DATABASE shop_a TO shop_a_app; GRANT ft_orders_app TO shop_a_app;
            CREATE ROLE shop_b_app LOGIN; GRANT CONNECT ON DATABASE shop_b TO shop_b_app; GRANT ft_orders_app TO shop_b_app;
            CREATE ROLE shop_a_clerk LOGIN; GRANT CONNECT ON DATABASE shop_a, shop_b TO shop_a_clerk" >/dev/null &&
	q shop_a "GRANT USAGE ON SCHEMA ft_orders TO shop_a_clerk;
              GRANT EXECUTE ON FUNCTION ft_orders.place_order(text, text, bigint, text, jsonb, text),
                                        ft_orders.get_order(bigint) TO shop_a_clerk" >/dev/null ||
	bail_out "could not create the per-database roles"
n_b=$(q shop_b "SELECT count(*) FROM ft_orders.orders")
is "$(psql -XAtq -U shop_a_app -d shop_a -c "SELECT status FROM ft_orders.place_order('role-a-1', 'role-a', 700, 'EUR')" 2>&1)" \
	"pending" "shop_a_app places an order in shop_a"
like "$(psql -XAtq -U shop_a_app -d shop_b -c "SELECT ft_orders.place_order('role-a-2', 'role-a', 700, 'EUR')" 2>&1)" \
	'FATAL:  permission denied for database "shop_b"' "shop_a_app cannot even connect to shop_b"
is "$(psql -XAtq -U shop_b_app -d shop_b -c "SELECT status FROM ft_orders.place_order('role-b-1', 'role-b', 700, 'EUR')" 2>&1)" \
	"pending" "shop_b_app places an order in shop_b"
like "$(psql -XAtq -U shop_b_app -d shop_a -c "SELECT 1" 2>&1)" \
	'FATAL:  permission denied for database "shop_a"' "shop_b_app cannot connect to shop_a"
is "$(psql -XAtq -U shop_a_clerk -d shop_a -c "SELECT status FROM ft_orders.place_order('role-c-1', 'role-c', 700, 'EUR')" 2>&1)" \
	"pending" "shop_a_clerk (grants in shop_a only) places an order in shop_a"
like "$(psql -XAtq -v VERBOSITY=verbose -U shop_a_clerk -d shop_b -c "SELECT ft_orders.place_order('role-c-2', 'role-c', 700, 'EUR')" 2>&1)" \
	'ERROR:  42501: permission denied for schema ft_orders' "... but not in shop_b, where it may connect: 42501"
is "$(q shop_b "SELECT count(*) FROM ft_orders.orders") $(q shop_b "SELECT count(*) FROM ft_orders.orders WHERE customer_id IN ('role-a', 'role-c')")" \
	"$((n_b + 1)) 0" "shop_b holds shop_b_app's order only"

is "$(gw_ledger duplicate_keys)" "0" "ledger: no key charged twice"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
