#!/usr/bin/python3
"""analyze.py: checks and figures of one failover drill (called by drill.sh).

Reads the load client's JSON, the new leader's tables (over its Unix socket,
as the superuser), the other nodes' worker_status, the fake gateway's ledger
and the new leader's Patroni log.  Prints one line per check,

    CHECK <TAB> 0|1 <TAB> description <TAB> detail

(1 = passed) for drill.sh to turn into TAP, and writes the drill's figures as
one JSON object to --result.

Definitions
- RTO: fault -> end of the first successful place_order among attempts that
  started after the last bad attempt (failed, or slower than --slow seconds:
  a stalled commit is downtime too) that ended after the fault.
- reads unavailable: sum, over reads ordered by start, of the gap to the next
  read start after each failed read (50 ms sampling of "would a read fail now").
- promotion: the new leader's "database system is ready to accept connections"
  after the fault (its PostgreSQL log, inside Patroni's log); else the first
  200 of its GET /primary after the fault as polled by the load client.
- first payment: min(payment_attempts.started_at) on the new leader at or
  after the promotion.
- timeline: orders acknowledged and attempts that failed (ended without a
  commit acknowledged), per 100 ms from 5 s before to 25 s after the fault,
  for bench/plots.py.
"""

import argparse
import datetime
import json
import re
import urllib.request

import psycopg2

checks = []


def check(ok, desc, detail=""):
    checks.append((1 if ok else 0, desc, str(detail)))


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def connect(sock_dir, port, db="ftdb"):
    c = psycopg2.connect(host=sock_dir, port=port, dbname=db, user="postgres",
                         connect_timeout=3)
    c.autocommit = True
    return c


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def rto(attempts, t0, slow):
    bad_starts = [a[2] for a in attempts
                  if a[3] >= t0 and (a[4] != "ok" or a[3] - a[2] > slow)]
    s = max(bad_starts) if bad_starts else t0
    oks = [a[3] for a in attempts if a[4] == "ok" and a[2] > s]
    if not oks:
        return None, len(bad_starts)
    return min(oks) - t0, len(bad_starts)


def timeline(load, t0, before=5.0, after=25.0, step=0.1):
    n = int(round((before + after) / step))
    acked = [0] * n
    failed = [0] * n

    def slot(t):
        i = int((t - t0 + before) // step)
        return i if 0 <= i < n else None

    for x in load["acked"]:
        i = slot(x[2])
        if i is not None:
            acked[i] += 1
    for a in load["attempts"]:
        i = slot(a[3]) if a[3] is not None else None
        if i is not None and a[4] != "ok":
            failed[i] += 1
    return {"from_s": -before, "step_s": step, "acked": acked, "failed_attempts": failed}


def reads_unavailable(reads):
    rs = sorted(reads, key=lambda r: r[0])
    total = 0.0
    failed = 0
    for i, r in enumerate(rs):
        if r[2] == "error":
            failed += 1
            nxt = rs[i + 1][0] if i + 1 < len(rs) else r[1]
            total += max(0.0, nxt - r[0])
    return total, failed


LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC .*"
                    r"database system is ready to accept connections")


def promotion_from_log(path, t0):
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_TS.match(line)
                if not m:
                    continue
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") \
                    .replace(tzinfo=datetime.timezone.utc).timestamp()
                if t >= t0:
                    return t
    except OSError:
        pass
    return None


def promotion_from_polls(polls, node, t0, same_node):
    series = polls.get(str(node), [])
    seen_down = not same_node
    for t, code in series:
        if t < t0:
            continue
        if code != 200:
            seen_down = True
        elif seen_down:
            return t
    return None


def drill_arguments(description):
    """The arguments every drill checker takes (this one and
    tests/partition/check.py); each adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--scenario", required=True)
    p.add_argument("--load", required=True, help="the load client's JSON history")
    p.add_argument("--t0", type=float, required=True, help="fault time")
    p.add_argument("--old", type=int, required=True, help="the leader before the fault")
    p.add_argument("--sock", required=True, help="the nodes' Unix socket folder")
    p.add_argument("--ports", required=True, help="PostgreSQL ports of n1,n2,n3")
    p.add_argument("--gateway", required=True, help="the fake gateway's URL")
    p.add_argument("--drained", type=int, default=0, help="the backlog drained after the heal")
    p.add_argument("--drain-s", type=float, default=None)
    p.add_argument("--result", required=True)
    return p


def main():
    p = drill_arguments("crash drill checker (tests/cluster)")
    p.add_argument("--new", type=int, required=True)
    p.add_argument("--patroni-log", required=True, help="the new leader's Patroni log")
    p.add_argument("--rejoin-s", type=float, default=None)
    p.add_argument("--recovered-s", type=float, default=None)
    p.add_argument("--slow", type=float, default=2.5)
    a = p.parse_args()

    ports = [int(x) for x in a.ports.split(",")]
    with open(a.load) as f:
        load = json.load(f)
    acked = load["acked"]
    prefix = load["prefix"]

    # ---------------------------------------------------------- client side
    r_rto, bad = rto(load["attempts"], a.t0, a.slow)
    r_reads, failed_reads = reads_unavailable(load["reads"])
    acked_after = [x for x in acked if x[2] > a.t0]
    check(len(acked) > 0 and len(acked_after) > 0,
          "%s: orders acknowledged before and after the fault" % a.scenario,
          "acknowledged=%d after_fault=%d" % (len(acked), len(acked_after)))
    check(len(load["unresolved"]) == 0 and load.get("blocked_at_end", 0) == 0,
          "%s: every order the client started was acknowledged in the end" % a.scenario,
          "started=%d unresolved=%d blocked=%d" % (load["started_orders"], len(load["unresolved"]),
                                                    load.get("blocked_at_end", 0)))
    check(len(load["rejected"]) == 0,
          "%s: no attempt rejected as a bad request (FT409/22023/...)" % a.scenario,
          load["rejected"][:3])
    check(r_rto is not None, "%s: writes recovered (RTO measured)" % a.scenario,
          "rto=%s bad_attempts=%d" % (r_rto, bad))
    check(len(load["reads"]) > 0 and failed_reads < len(load["reads"]),
          "%s: reads on the replica port kept working" % a.scenario,
          "reads=%d failed=%d unavailable=%.2fs" % (len(load["reads"]), failed_reads, r_reads))

    # ---------------------------------------------------------- new leader
    leader = connect(a.sock, ports[a.new - 1])
    rows = q(leader, "SELECT idempotency_key, order_id, status::text FROM ft_orders.orders "
                     "WHERE idempotency_key LIKE %s", (prefix + "-%",))
    by_key = {}
    for k, oid, st in rows:
        by_key.setdefault(k, []).append((oid, st))
    lost = [x[0] for x in acked if x[0] not in by_key]
    mismatched = [x[0] for x in acked if x[0] in by_key and by_key[x[0]][0][0] != x[1]]
    dup_keys = [k for k, v in by_key.items() if len(v) > 1]
    committed_unacked = [k for k in by_key if k not in {x[0] for x in acked}]
    check(not lost and not mismatched,
          "%s: every acknowledged order exists on the new leader n%d" % (a.scenario, a.new),
          "acknowledged=%d lost=%d wrong_order_id=%d %s" % (len(acked), len(lost), len(mismatched),
                                                            (lost + mismatched)[:5]))
    check(not dup_keys, "%s: one order per idempotency key across the failover" % a.scenario,
          "keys with several orders: %s" % dup_keys[:5])

    (pending, paid, declined, failed, total), = q(
        leader, "SELECT count(*) FILTER (WHERE status = 'pending'), "
                "count(*) FILTER (WHERE status = 'paid'), count(*) FILTER (WHERE status = 'declined'), "
                "count(*) FILTER (WHERE status = 'failed'), count(*) FROM ft_orders.orders")
    check(a.drained == 1 and pending == 0,
          "%s: backlog drained: no order pending on n%d" % (a.scenario, a.new),
          "pending=%d paid=%d declined=%d failed=%d total=%d drain=%ss" % (
              pending, paid, declined, failed, total, a.drain_s))
    (no_outbox, overdue, orphan), = q(leader, """
        SELECT (SELECT count(*) FROM ft_orders.orders o WHERE o.status = 'pending'
                  AND NOT EXISTS (SELECT 1 FROM ft_orders.outbox b WHERE b.order_id = o.order_id)),
               (SELECT count(*) FROM ft_orders.outbox b
                 WHERE b.next_attempt_at < now() - interval '15 s'
                   AND (b.lease_until IS NULL OR b.lease_until < now() - interval '15 s')),
               (SELECT count(*) FROM ft_orders.outbox b JOIN ft_orders.orders o USING (order_id)
                 WHERE o.status <> 'pending')""")
    check(no_outbox == 0 and overdue == 0 and orphan == 0,
          "%s: no order stuck (pending without outbox event, event overdue, event of a settled order)"
          % a.scenario, "no_outbox=%d overdue=%d orphan_events=%d" % (no_outbox, overdue, orphan))

    # ---------------------------------------------------------- gateway
    ledger = json.loads(http_get(a.gateway + "/ledger"))
    charged = set()
    for line in http_get(a.gateway + "/ledger/receipts").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "1":
            charged.add(parts[0])
    paid_keys = {r[0] for r in q(leader, "SELECT payment_key::text FROM ft_orders.orders WHERE status = 'paid'")}
    check(ledger.get("duplicates", -1) == 0,
          "%s: no duplicate charge in the gateway ledger" % a.scenario,
          "duplicates=%s duplicate_keys=%s duplicate_orders=%s" % (
              ledger.get("duplicates"), ledger.get("duplicate_keys"), ledger.get("duplicate_orders")))
    check(ledger.get("charges") == paid and charged == paid_keys,
          "%s: exactly one charge per paid order" % a.scenario,
          "charges=%s paid=%d charged_not_paid=%d paid_not_charged=%d" % (
              ledger.get("charges"), paid, len(charged - paid_keys), len(paid_keys - charged)))

    # ---------------------------------------------------------- workers
    ws = q(leader, "SELECT state::text, processed FROM ft_orders.worker_status")
    check(len(ws) > 0 and all(s != "standby" for s, _ in ws) and sum(p or 0 for _, p in ws) > 0,
          "%s: workers on the new leader n%d are active and processed orders" % (a.scenario, a.new),
          "worker_status=%s" % ws)
    for i in range(1, 4):
        if i == a.new:
            continue
        try:
            c = connect(a.sock, ports[i - 1])
            rws = q(c, "SELECT state::text, processed FROM ft_orders.worker_status")
            rec = q(c, "SELECT pg_is_in_recovery()")[0][0]
            c.close()
        except psycopg2.Error as e:
            rws, rec = "error: %s" % str(e).strip()[:100], None
        role = "old leader" if i == a.old else "replica"
        check(rec is True and isinstance(rws, list) and len(rws) > 0
              and all(s == "standby" for s, _ in rws),
              "%s: workers on %s n%d wait in state standby" % (a.scenario, role, i),
              "in_recovery=%s worker_status=%s" % (rec, rws))

    # ---------------------------------------------------------- replication
    repl = q(leader, "SELECT application_name, state, sync_state FROM pg_stat_replication")
    names = {r[0]: r for r in repl}
    if a.old != a.new:
        check(("n%d" % a.old) in names and names["n%d" % a.old][1] == "streaming"
              and a.rejoin_s is not None,
              "%s: old leader n%d rejoined as a streaming replica" % (a.scenario, a.old),
              "rejoin=%ss pg_stat_replication=%s" % (a.rejoin_s, repl))
    streaming = sum(1 for r in repl if r[1] == "streaming")
    syncs = sum(1 for r in repl if r[2] == "sync")
    check(streaming == 2 and syncs == 1,
          "%s: n%d streams to two replicas, one synchronous" % (a.scenario, a.new),
          "pg_stat_replication=%s" % repl)

    # ---------------------------------------------------------- timings
    t_promo = promotion_from_log(a.patroni_log, a.t0)
    src = "log"
    if t_promo is None:
        t_promo = promotion_from_polls(load.get("primary_polls", {}), a.new, a.t0, a.new == a.old)
        src = "rest"
    first_pay = None
    if t_promo is not None:
        (fp,), = q(leader, "SELECT extract(epoch FROM min(started_at))::float8 FROM ft_orders.payment_attempts "
                           "WHERE started_at >= to_timestamp(%s)", (t_promo,))
        if fp is not None:
            first_pay = fp - t_promo
    check(first_pay is not None,
          "%s: the new leader sent payments after its promotion" % a.scenario,
          "promotion=%s (%s) promotion_to_first_payment=%s" % (
              None if t_promo is None else round(t_promo - a.t0, 2), src, first_pay))
    leader.close()

    def r2(x):
        return None if x is None else round(x, 2)

    res = {
        "scenario": a.scenario,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "old_leader": "n%d" % a.old, "new_leader": "n%d" % a.new,
        "rto_s": r2(r_rto),
        "reads_unavailable_s": r2(r_reads),
        "fault_to_promotion_s": r2(None if t_promo is None else t_promo - a.t0),
        "promotion_source": src,
        "promotion_to_first_payment_s": r2(first_pay),
        "recovered_s": r2(a.recovered_s),
        "acknowledged": len(acked),
        "lost": len(lost) + len(mismatched),
        "duplicates": ledger.get("duplicates"),
        "duplicate_orders_per_key": len(dup_keys),
        "orders_started": load["started_orders"],
        "unresolved": len(load["unresolved"]),
        "committed_unacknowledged": len(committed_unacked),
        "attempts": len(load["attempts"]),
        "failed_attempts": sum(1 for x in load["attempts"] if x[4] != "ok"),
        "reads": len(load["reads"]), "failed_reads": failed_reads,
        "pending_after_drain": pending, "paid": paid, "charges": ledger.get("charges"),
        "drain_s": r2(a.drain_s), "rejoin_s": r2(a.rejoin_s),
        "checks_failed": sum(1 for c in checks if not c[0]),
        "timeline": timeline(load, a.t0),
    }
    with open(a.result, "w") as f:
        json.dump(res, f)
    for ok, desc, detail in checks:
        print("CHECK\t%d\t%s\t%s" % (ok, desc, detail.replace("\t", " ").replace("\n", " ")))


if __name__ == "__main__":
    main()
