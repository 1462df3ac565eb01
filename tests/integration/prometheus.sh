#!/bin/bash
# prometheus.sh: contrib/prometheus/ft_orders.rules.yml in a real Prometheus.
#
# Debian's Prometheus, run as the unprivileged PostgreSQL OS user on a free
# loopback port with its own data folder, scrapes Debian's postgres_exporter
# (tests/lib/exporter.sh: the queries file of contrib/postgres_exporter) in
# front of a server with live payment workers and the fake gateway, and a
# second exporter in front of its streaming standby, every second, and
# evaluates the rules every second.  The rules are the shipped file with
# one difference: every alert's "for" is 5s instead of minutes
# (tests/monitoring/rule_tests.py shorten; the expressions and thresholds
# are the same).  The test sees, in Prometheus' API:
#   - the standby known as one (pg_settings_in_hot_standby) with its
#     workers in standby, the primary's replica lag metric, and no alert
#     pending or firing while orders are paid normally;
#   - gateway down: FtOrdersCircuitOpen fires, FtOrdersOldestPendingTooOld
#     does not (the orders are seconds old, the threshold is 10 minutes);
#   - the pending orders' outbox events backdated by 11 minutes (what 11
#     minutes of outage leave behind, without waiting for them):
#     FtOrdersOldestPendingTooOld fires with its runbook, once, for the
#     primary (the standby shows the same replicated rows);
#   - gateway back: both resolve, every order is paid once;
#   - a payment the gateway rejects (422): FtOrdersDeadLetters fires once.
# About 40 s.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/exporter.sh"

RULES=$FT_ROOT/contrib/prometheus/ft_orders.rules.yml
PROM_BIN=${FT_PROMETHEUS_BIN:-$(command -v prometheus || true)}
N=5
SB=$FT_TMP/standby

standby_cleanup()
{
	if [ -f "$SB/postmaster.pid" ]; then
		as_pg pg_ctl -D "$SB" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
	fi
	ft_cleanup
}
trap standby_cleanup EXIT

[ -n "$PROM_BIN" ] && [ -x "$PROM_BIN" ] ||
	bail_out "prometheus is not installed (Debian package prometheus; tests/setup/deps.sh installs it)"
[ -n "$EXPORTER_BIN" ] && [ -x "$EXPORTER_BIN" ] ||
	bail_out "prometheus-postgres-exporter is not installed (tests/setup/deps.sh installs it)"

# prom_get PATH: GET from Prometheus' HTTP API
prom_get()
{
	curl -fsS --max-time 10 "$PROM_URL$1"
}

# alert_state NAME: "firing", "pending" or "inactive" (not listed) for the
# alert of that name in /api/v1/alerts
alert_state()
{
	local s
	s=$(prom_get /api/v1/alerts | jq -r --arg n "$1" \
		'[.data.alerts[] | select(.labels.alertname == $n) | .state] | first // "inactive"')
	echo "${s:-error}"
}

# wait_alert NAME STATE SECONDS: poll until alert_state NAME is STATE; also
# remembers every state seen on the way in SEEN
wait_alert()
{
	local name=$1 want=$2 deadline s
	deadline=$(($(date +%s) + $3))
	SEEN=""
	while [ "$(date +%s)" -le "$deadline" ]; do
		s=$(alert_state "$name")
		case " $SEEN " in *" $s "*) ;; *) SEEN="$SEEN $s" ;; esac
		[ "$s" = "$want" ] && return 0
		sleep 0.3
	done
	return 1
}

# query EXPR: the value of the first sample of an instant query ("" if none)
query()
{
	prom_get "/api/v1/query?query=$(jq -rn --arg q "$1" '$q | @uri')" |
		jq -r '.data.result[0].value[1] // ""'
}

exporter_pg_start || bail_out "the fake gateway or the server did not start"
exporter_role || bail_out "could not create the exporter role"
exporter_start ft_exporter "$FT_TMP/exporter.log" || bail_out "the exporter did not serve /metrics"
PRIMARY=127.0.0.1:$EXP_PORT

# a streaming standby (its workers wait in state standby) and its exporter
SB_PORT=$(free_port) || bail_out "no free port"
as_pg pg_basebackup -h 127.0.0.1 -p "$PGPORT" -U postgres -D "$SB" -R -X stream -c fast \
	>"$FT_TMP/basebackup.log" 2>&1 || { cat "$FT_TMP/basebackup.log" >&2; bail_out "pg_basebackup failed"; }
echo "port = $SB_PORT" >>"$SB/postgresql.conf"
as_pg pg_ctl -D "$SB" -l "$FT_TMP/standby.log" -w -t 60 start >/dev/null ||
	{ tail "$FT_TMP/standby.log" >&2; bail_out "standby did not start"; }
PGPORT=$SB_PORT exporter_start ft_exporter "$FT_TMP/exporter_standby.log" ||
	bail_out "the standby's exporter did not serve /metrics"
STANDBY=127.0.0.1:$EXP_PORT

# --- Prometheus: its own folder, owned by the unprivileged user
PROM_DIR=$FT_TMP/prometheus
mkdir -p "$PROM_DIR/data"
/usr/bin/python3 "$FT_ROOT/tests/monitoring/rule_tests.py" shorten "$RULES" "$PROM_DIR/rules.yml" 5s ||
	bail_out "could not write the test rules"
cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $PROM_DIR/rules.yml
scrape_configs:
  - job_name: ft_orders
    static_configs:
      - targets: ['$PRIMARY', '$STANDBY']
EOF
[ "$(id -u)" -eq 0 ] && chown -R "$FT_PG_USER" "$PROM_DIR"
PROM_PORT=$(free_port) || bail_out "no free port"
PROM_URL="http://127.0.0.1:$PROM_PORT"
prom_cmd=("$PROM_BIN" --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data"
	--web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn)
# setpriv execs: $! is Prometheus itself, stopped by the EXIT trap
if [ "$(id -u)" -eq 0 ]; then
	setpriv --reuid="$FT_PG_USER" --regid="$(id -g "$FT_PG_USER")" --init-groups -- \
		"${prom_cmd[@]}" >"$PROM_DIR/prometheus.log" 2>&1 </dev/null &
else
	"${prom_cmd[@]}" >"$PROM_DIR/prometheus.log" 2>&1 </dev/null &
fi
PROM_PID=$!
FT_PIDS+=("$PROM_PID")
for _ in $(seq 1 150); do
	curl -fsS -o /dev/null --max-time 2 "$PROM_URL/-/ready" 2>/dev/null && break
	kill -0 "$PROM_PID" 2>/dev/null || break
	sleep 0.2
done
curl -fsS -o /dev/null --max-time 2 "$PROM_URL/-/ready" 2>/dev/null ||
	{ cat "$PROM_DIR/prometheus.log" >&2; bail_out "Prometheus did not become ready"; }

is "$(ps -o user= -p "$PROM_PID" | tr -d ' ')" "$FT_PG_USER" "Prometheus runs as the unprivileged user $FT_PG_USER"
like "$(ss -Hltn "sport = :$PROM_PORT" | awk '{print $4}' | sort -u | tr '\n' ' ')" '^127\.0\.0\.1:[0-9]+ $' \
	"it listens on loopback only (127.0.0.1:$PROM_PORT)"

rules=$(prom_get /api/v1/rules)
is "$(jq '[.data.groups[].rules[] | select(.type == "alerting")] | length' <<<"$rules")" \
	"$(grep -c '^      - alert:' "$RULES")" "Prometheus loaded every alert of ft_orders.rules.yml"
is "$(jq -r '[.data.groups[].rules[] | select(.type == "alerting") | .duration] | unique | map(tostring) | join(" ")' <<<"$rules")" \
	"0 5" "the test copy differs only in its 'for' durations (5 s, or none)"

# the first scrapes and evaluations: the recorded series exist
P="instance=\"$PRIMARY\"" S="instance=\"$STANDBY\""
for _ in $(seq 1 100); do
	[ "$(query "ft_orders:workers_active{$P}") $(query "ft_orders:workers_standby{$S}")" = "2 2" ] && break
	sleep 0.3
done
is "$(query 'sum(up{job="ft_orders"})')" "2" "Prometheus scrapes both exporters (up = 1 each)"
is "$(query "ft_orders:workers_active{$P}") $(query "ft_orders:is_standby{$P}")" "2 0" \
	"primary: 2 active workers (ft_orders_worker_state_current), is_standby 0 (pg_settings_in_hot_standby)"
is "$(query "ft_orders:workers_active{$S}") $(query "ft_orders:workers_standby{$S}") $(query "ft_orders:is_standby{$S}")" "0 2 1" \
	"standby: 0 active, 2 workers in standby, is_standby 1"
is "$(query "ft_orders:gateway_circuit_state{$P}")" "0" "recorded: ft_orders:gateway_circuit_state = 0 (closed)"
for _ in $(seq 1 100); do
	[ -n "$(query "pg_stat_replication_pg_wal_lsn_diff{$P}")" ] && break
	sleep 0.3
done
like "$(query "max by (application_name) (pg_stat_replication_pg_wal_lsn_diff{$P})")" '^[0-9.e+]+$' \
	"the primary's exporter reports the standby's replay lag (pg_stat_replication_pg_wal_lsn_diff)"

# --- 1. normal operation: nothing fires
place_orders ok $N 1000
ok $? "placed $N orders"
wait_until "SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'" 20
ok $? "the $N orders are paid"
# until Prometheus has scraped the paid orders and evaluated the rules on
# that scrape (the recorded backlog is 0; the alerts are evaluated after
# the recording rules, in the same group)
paid_q="sum(ft_orders_orders{$P,status=\"paid\"})"
for _ in $(seq 1 100); do
	[ "$(query "$paid_q") $(query "ft_orders:outbox_pending{$P}")" = "$N 0" ] && break
	sleep 0.3
done
is "$(query "$paid_q") $(query "ft_orders:outbox_pending{$P}")" "$N 0" \
	"Prometheus sees the $N paid orders and an empty backlog on the primary"
is "$(prom_get /api/v1/alerts | jq -r '[.data.alerts[] | .labels.alertname + ":" + .state] | join(" ")')" "" \
	"no alert is pending or firing while orders are paid"

# --- 2. gateway down: the circuit alert fires, the oldest-pending one not yet
gw_faults '{"down":true}' || bail_out "could not set faults"
place_orders down $N 2000
ok $? "placed $N orders while the gateway is down"
wait_alert FtOrdersCircuitOpen firing 40
ok $? "FtOrdersCircuitOpen fires (states seen:$SEEN)"
alert=$(prom_get /api/v1/alerts | jq -c '.data.alerts[] | select(.labels.alertname == "FtOrdersCircuitOpen")')
is "$(jq -r '.labels | "\(.severity) \(.job) \(.instance)"' <<<"$alert")" "critical ft_orders $PRIMARY" \
	"FtOrdersCircuitOpen: once, severity critical, the primary's job and instance"
is "$(alert_state FtOrdersOldestPendingTooOld)" "inactive" \
	"FtOrdersOldestPendingTooOld does not fire: the pending orders are seconds old"
age=$(query "ft_orders:outbox_oldest_age_seconds{$P}")
cmp_ok "${age%.*}" -lt 600 "recorded oldest pending age is ${age%.*} s, under the 600 s threshold"

# --- 3. the same orders 11 minutes old: the oldest-pending alert fires
psql_q "UPDATE ft_orders.outbox SET created_at = created_at - interval '11 minutes'" >/dev/null
ok $? "backdated the $N pending outbox events by 11 minutes"
wait_alert FtOrdersOldestPendingTooOld firing 40
ok $? "FtOrdersOldestPendingTooOld fires (states seen:$SEEN)"
for _ in $(seq 1 50); do
	[ -n "$(query "ft_orders:outbox_oldest_age_seconds{$S} > 600")" ] && break
	sleep 0.3
done
cmp_ok "$(query "ft_orders:outbox_oldest_age_seconds{$S}" | cut -d. -f1)" -gt 600 \
	"the standby shows the same replicated age (over 600 s)"
alert=$(prom_get /api/v1/alerts | jq -c '.data.alerts[] | select(.labels.alertname == "FtOrdersOldestPendingTooOld")')
is "$(jq -r '.labels | "\(.severity) \(.instance)"' <<<"$alert")" "critical $PRIMARY" \
	"FtOrdersOldestPendingTooOld: once, for the primary (not the standby), severity critical"
like "$(jq -r '.annotations.summary' <<<"$alert")" \
	"^ft_orders on ${PRIMARY//./\\.}: an order has waited 11m [0-9]+s for its payment$" \
	"its summary names the instance and the age"
is "$(jq -r '.annotations.runbook' <<<"$alert")" \
	"$(/usr/bin/python3 -c 'import sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        if r.get("alert") == "FtOrdersOldestPendingTooOld":
            sys.stdout.write(r["annotations"]["runbook"])' "$RULES")" \
	"it carries the runbook of ft_orders.rules.yml"
cmp_ok "$(jq -r '.value | tonumber | floor' <<<"$alert")" -ge 660 "its value is the age in seconds (>= 660)"

# --- 4. gateway back: the orders are paid, both alerts resolve
gw_faults reset
wait_until "SELECT count(*) = 0 FROM ft_orders.outbox" 40
ok $? "the backlog drains when the gateway is back"
wait_alert FtOrdersOldestPendingTooOld inactive 30
ok $? "FtOrdersOldestPendingTooOld resolves"
wait_alert FtOrdersCircuitOpen inactive 30
ok $? "FtOrdersCircuitOpen resolves"
is "$(gw_ledger charges) $(gw_ledger duplicates)" "$((2 * N)) 0" "ledger: $((2 * N)) charges, no duplicates"

# --- 5. a payment given up: the dead-letter alert fires
is "$(alert_state FtOrdersDeadLetters)" "inactive" "FtOrdersDeadLetters does not fire before"
gw_faults '{"reject_amount_minor":[422]}' || bail_out "could not set faults"
psql_q "SELECT count(*) FROM ft_orders.place_order('rej-1', 'cust', 422, 'EUR')" >/dev/null
wait_until "SELECT count(*) = 1 FROM ft_orders.dead_letters" 20
ok $? "the rejected payment is a dead letter"
wait_alert FtOrdersDeadLetters firing 30
ok $? "FtOrdersDeadLetters fires (states seen:$SEEN)"
is "$(prom_get /api/v1/alerts | jq -r '.data.alerts[] | select(.labels.alertname == "FtOrdersDeadLetters") | .annotations.summary')" \
	"ft_orders on $PRIMARY: new dead letters (1 in ft_orders.dead_letters)" \
	"it fires once, for the primary, and counts the dead letter"

# --- the workers were active on the primary throughout
is "$(prom_get /api/v1/alerts | jq -r '[.data.alerts[] | select(.labels.alertname | test("Worker|Replica")) | .labels.alertname] | join(" ")')" "" \
	"no worker or replica alert (FtOrdersNoActiveWorker, FtOrdersWorkersActiveOnStandby, FtOrdersReplicaLagging)"
is "$(grep -ciE 'level=error' "$PROM_DIR/prometheus.log")" "0" "Prometheus logged no error"
is "$(cat "$PG_LOG" "$FT_TMP/standby.log" | grep -c 'terminated by signal')" "0" "no process of the primary or the standby crashed"

done_testing
