#!/usr/bin/python3
"""check.py: the checker of one partition drill (Jepsen/Elle style).

Runs in the client namespace after the fault was healed and the backlog
drained.  Reads the client's history (load_client.py --out: every attempt
ok / fail / unknown), the role samples (roles.py), the final primary's
tables (over its Unix socket) and the fake gateway's ledger and request log
(GET /ledger/receipts, GET /ledger/requests: key, source address,
customer_id = the client's idempotency key).  Prints

    CHECK <TAB> 0|1 <TAB> description <TAB> detail

lines for the TAP driver, appends the drill's JSON line to --json, and
writes it to --result as well.

Checks
- every acknowledged order exists on the final primary, same order_id;
- one order per idempotency key (so an unknown outcome exists once or not
  at all);
- at most one charge per client idempotency key (customer_id), not only per
  payment_key; no phantom charge (every charged payment_key is the
  payment_key of an order on the final primary); charges = paid orders;
- nothing stuck: no order pending after the drain, no pending order without
  an outbox event, no overdue event, no event of a settled order, no dead
  letter;
- at most one writable node at any time, except within --demotion-window
  seconds of a change of primary (role samples);
- the old leader sends no request later than --request-bound seconds after
  it stopped answering as primary or another node became primary (whichever
  came first), and whatever it sent after that used the payment_key of an
  order on the final primary;
- with --no-client-errors (gateway drills): no attempt failed at all;
- replica reads answered (some reads on the replica port succeeded).
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
from analyze import check, checks, connect, drill_arguments, http_get, q, reads_unavailable, rto  # noqa: E402


def role_timeline(path):
    """{node: [(t, state), ...]} from roles.py's output, sorted by time"""
    tl = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                tl.setdefault(int(parts[1]), []).append((float(parts[0]), parts[2]))
    for v in tl.values():
        v.sort()
    return tl


def writable_intervals(samples, stale=1.5):
    """[start, end) intervals in which a node answered as primary; a sample
    vouches for at most `stale` seconds (a frozen node stops sampling)."""
    out = []
    for i, (t, s) in enumerate(samples):
        if s != "w":
            continue
        nxt = samples[i + 1][0] if i + 1 < len(samples) else t
        out.append((t, min(nxt, t + stale) if nxt > t else t + 0.01))
    merged = []
    for a, b in out:
        if merged and a <= merged[-1][1] + 0.01:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def overlaps(tl):
    """intervals during which two or more nodes answered as primary"""
    ev = []
    for node, samples in tl.items():
        for a, b in writable_intervals(samples):
            ev.append((a, 1))
            ev.append((b, -1))
    ev.sort()
    n, start, res = 0, None, []
    for t, d in ev:
        n += d
        if n >= 2 and start is None:
            start = t
        elif n < 2 and start is not None:
            res.append((start, t))
            start = None
    return res


def first_writable_after(samples, t0):
    for t, s in samples:
        if t >= t0 and s == "w":
            return t
    return None


def main():
    p = drill_arguments("partition drill checker (tests/partition)")
    p.add_argument("--roles", required=True)
    p.add_argument("--t-heal", type=float, required=True)
    p.add_argument("--final", type=int, required=True)
    p.add_argument("--addrs", required=True, help="node addresses n1,n2,n3")
    p.add_argument("--whole", type=int, default=0, help="cluster whole again after the heal")
    p.add_argument("--demotion-window", type=float, default=2.0)
    p.add_argument("--demotion-after-heal", action="store_true",
                   help="the fault itself keeps the old leader from demoting (its Patroni is "
                        "frozen): the window starts at the heal, not at the new primary")
    p.add_argument("--request-bound", type=float, default=15.0)
    p.add_argument("--no-client-errors", action="store_true")
    p.add_argument("--json", help="append the JSON line here (FT_PARTITION_JSON)")
    a = p.parse_args()

    ports = [int(x) for x in a.ports.split(",")]
    addrs = a.addrs.split(",")
    with open(a.load) as f:
        load = json.load(f)
    prefix = load["prefix"]
    acked = load["acked"]
    attempts = load["attempts"]
    n_unknown = sum(1 for x in attempts if x[4] == "unknown")
    n_fail = sum(1 for x in attempts if x[4] == "fail")
    r_rto, bad = rto(attempts, a.t0, 2.5)
    unavail = r_rto if bad else 0.0
    r_reads, failed_reads = reads_unavailable(load["reads"])
    sc = a.scenario

    check(len(acked) > 0 and len(load["unresolved"]) == 0 and load.get("blocked_at_end", 0) == 0,
          "%s: every order the client started was acknowledged in the end" % sc,
          "started=%d acknowledged=%d unresolved=%d blocked=%d" % (
              load["started_orders"], len(acked), len(load["unresolved"]), load.get("blocked_at_end", 0)))
    check(not load["rejected"], "%s: no attempt rejected as a bad request" % sc, load["rejected"][:3])
    if a.no_client_errors:
        check(n_fail + n_unknown == 0, "%s: no error reached a client" % sc,
              "failed=%d unknown=%d first=%s" % (n_fail, n_unknown,
                                                   [x for x in attempts if x[4] != "ok"][:2]))
    check(len(load["reads"]) > 0 and failed_reads < len(load["reads"]),
          "%s: reads on the replica port kept answering" % sc,
          "reads=%d failed=%d unavailable=%.2fs" % (len(load["reads"]), failed_reads, r_reads))

    # ------------------------------------------------------------ final primary
    leader = connect(a.sock, ports[a.final - 1])
    rows = q(leader, "SELECT idempotency_key, order_id, status::text, payment_key::text "
                     "FROM ft_orders.orders WHERE idempotency_key LIKE %s", (prefix + "-%",))
    by_key = {}
    for k, oid, st, pk in rows:
        by_key.setdefault(k, []).append((oid, st, pk))
    lost = [x[0] for x in acked if x[0] not in by_key]
    wrong = [x[0] for x in acked if x[0] in by_key and by_key[x[0]][0][0] != x[1]]
    dup_orders = {k: v for k, v in by_key.items() if len(v) > 1}
    check(not lost and not wrong, "%s: every acknowledged order exists on the final primary n%d" % (sc, a.final),
          "acknowledged=%d lost=%d wrong_order_id=%d first: %s" % (len(acked), len(lost), len(wrong),
                                                                   (lost + wrong)[:5]))
    check(not dup_orders, "%s: one order per idempotency key (unknown outcomes exist once or not at all)" % sc,
          "keys with several orders: %s" % list(dup_orders.items())[:3])

    paid_pk = {pk for v in by_key.values() for (_, st, pk) in v if st == "paid"}
    all_pk = {pk: k for k, v in by_key.items() for (_, _, pk) in v}
    # this drill's orders (an earlier drill's leftovers are its own finding)
    (pending, no_outbox, overdue, orphan, dead, pending_all, due_max), = q(leader, """
        WITH o AS (SELECT * FROM ft_orders.orders WHERE idempotency_key LIKE %(p)s)
        SELECT (SELECT count(*) FROM o WHERE status = 'pending'),
               (SELECT count(*) FROM o WHERE o.status = 'pending'
                  AND NOT EXISTS (SELECT 1 FROM ft_orders.outbox b WHERE b.order_id = o.order_id)),
               (SELECT count(*) FROM ft_orders.outbox b JOIN o USING (order_id)
                 WHERE b.next_attempt_at < now() - interval '15 s'
                   AND (b.lease_until IS NULL OR b.lease_until < now() - interval '15 s')),
               (SELECT count(*) FROM ft_orders.outbox b JOIN o USING (order_id)
                 WHERE o.status <> 'pending'),
               (SELECT count(*) FROM ft_orders.dead_letters d JOIN o USING (order_id)),
               (SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'),
               (SELECT max(b.next_attempt_at)::text FROM ft_orders.outbox b JOIN o USING (order_id))
        """, {"p": prefix + "-%"})
    stuck = pending + no_outbox + overdue + orphan + dead
    check(a.drained == 1 and stuck == 0,
          "%s: nothing stuck after the heal (all settled, no dead letter)" % sc,
          "pending=%d no_outbox=%d overdue=%d orphan_events=%d dead_letters=%d (this drill's orders; "
          "pending in all=%d) latest next_attempt_at=%s drain=%ss" % (
              pending, no_outbox, overdue, orphan, dead, pending_all, due_max, a.drain_s))
    leader.close()

    # ------------------------------------------------------------ gateway
    charged = set()
    for line in http_get(a.gateway + "/ledger/receipts").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "1":
            charged.add(parts[0])
    reqs = []
    for line in http_get(a.gateway + "/ledger/requests").splitlines():
        parts = line.split()
        if len(parts) == 5:
            reqs.append((int(parts[0]) / 1e6, parts[1], parts[2], int(parts[3]), parts[4]))
    customer_of = {}
    for _, _, key, _, cust in reqs:
        customer_of.setdefault(key, cust)
    mine = {k for k in charged if customer_of.get(k, "").startswith(prefix + "-")}
    per_client = {}
    for k in mine:
        per_client.setdefault(customer_of[k], []).append(k)
    dup_clients = {c: ks for c, ks in per_client.items() if len(ks) > 1}
    phantom = sorted(k for k in mine if k not in all_pk)
    ledger = json.loads(http_get(a.gateway + "/ledger"))
    # extra charges beyond the first per client key (the ledger's own
    # duplicate_orders also counts two incarnations' equal order_ids, so it
    # is shown, not added)
    n_dup = sum(len(ks) - 1 for ks in dup_clients.values())
    first_req = {}
    for t, src, key, _, _ in reqs:
        first_req.setdefault(key, (round(t - a.t0, 2), src))

    def who(k):
        return "%s from %s at %+.2fs" % (customer_of.get(k), first_req[k][1], first_req[k][0]) \
            if k in first_req else k
    check(n_dup == 0, "%s: at most one charge per client idempotency key" % sc,
          "extra charges=%d clients charged more than once=%d: %s; ledger duplicates=%s" % (
              n_dup, len(dup_clients), [[who(k) for k in ks] for ks in list(dup_clients.values())[:3]],
              ledger.get("duplicates")))
    check(not phantom, "%s: no phantom charge (every charge belongs to an order on the final primary)" % sc,
          "phantom=%d: %s" % (len(phantom), [who(k) for k in phantom[:6]]))
    # the same payment_key sent by two order rows: an order charged, lost
    # with the old leader's timeline and re-created by the client's retry
    order_ids_of = {}
    for _, _, key, oid, _ in reqs:
        if key in mine:
            order_ids_of.setdefault(key, set()).add(oid)
    # (counted, not required: whether the old leader charges an order before
    # its shutdown stops the workers is a matter of milliseconds; the
    # deterministic test of the same path is tests/integration/payment_key.sh)
    recreated = sorted(k for k, ids in order_ids_of.items() if len(ids) > 1)
    check(mine == paid_pk, "%s: charges = paid orders" % sc,
          "charges=%d paid=%d charged_not_paid=%d paid_not_charged=%d" % (
              len(mine), len(paid_pk), len(mine - paid_pk), len(paid_pk - mine)))

    # ------------------------------------------------------------ roles
    tl = role_timeline(a.roles)
    t_promo = None
    if a.final != a.old:
        t_promo = first_writable_after(tl.get(a.final, []), a.t0)
    ov = [(s, e) for s, e in overlaps(tl) if s >= a.t0 - 1]
    # two primaries are tolerated only within the demotion window after the
    # new one appeared (the old one answers until Patroni demotes it)
    t_window = t_promo
    if a.demotion_after_heal and t_promo is not None:
        t_window = max(t_promo, a.t_heal)
    bad_ov = [(s, e) for s, e in ov
              if t_window is None or e > t_window + a.demotion_window]
    ov_s = sum(e - s for s, e in ov)
    check(not bad_ov, "%s: at most one writable node outside a %.0f s demotion window (from the %s)" % (
        sc, a.demotion_window, "heal" if a.demotion_after_heal else "new primary's promotion"),
          "two-primary intervals (s after the fault): %s; new primary at %s" % (
              [(round(s - a.t0, 2), round(e - a.t0, 2)) for s, e in ov][:5],
              None if t_promo is None else round(t_promo - a.t0, 2)))

    # the old leader demoted: its first sample after the fault that is not "w"
    t_demoted = None
    if a.final != a.old:
        for t, st in tl.get(a.old, []):
            if t >= a.t0 and st != "w":
                t_demoted = t
                break
    old_addr = addrs[a.old - 1]
    old_reqs = [r for r in reqs if r[1] == old_addr and customer_of.get(r[2], "").startswith(prefix + "-")]
    t_ref = min(x for x in (t_promo, t_demoted) if x is not None) if (t_promo or t_demoted) else None
    after = [r for r in old_reqs if t_ref is not None and r[0] > t_ref] if a.final != a.old else []
    last_old = max((r[0] for r in old_reqs if r[0] >= a.t0), default=None)
    if a.final != a.old:
        late = [r for r in after if r[0] > t_ref + a.request_bound]
        foreign = [r for r in after if r[2] not in all_pk]
        check(not late and not foreign,
              "%s: old leader n%d stops sending within %.0f s of its demotion or the new primary, reusing the orders' keys"
              % (sc, a.old, a.request_bound),
              "requests after demotion/promotion=%d later than bound=%d with keys unknown to the final primary=%d "
              "last old-leader request at %s s after the fault, old leader demoted at %s s, new primary at %s s" % (
                  len(after), len(late), len(foreign),
                  None if last_old is None else round(last_old - a.t0, 2),
                  None if t_demoted is None else round(t_demoted - a.t0, 2),
                  None if t_promo is None else round(t_promo - a.t0, 2)))
    check(a.whole == 1, "%s: cluster whole after the heal (leader n%d, 2 streaming replicas, 1 sync)" % (sc, a.final),
          "whole=%d" % a.whole)

    def r2(x):
        return None if x is None else round(x, 2)

    res = {
        "scenario": sc,
        "acknowledged": len(acked),
        "unknown": n_unknown,
        "lost": len(lost) + len(wrong),
        "duplicate_charges": n_dup,
        "phantom_charges": len(phantom),
        "stuck": stuck,
        "write_unavailable_s": r2(unavail),
        "old_leader_requests_after_demotion": len(after),
        "recreated_orders": len(recreated),
        "checker_ok": all(c[0] for c in checks),
        "old_leader": "n%d" % a.old, "final_leader": "n%d" % a.final,
        "failed_attempts": n_fail, "two_primaries_s": r2(ov_s),
        "new_primary_after_s": r2(None if t_promo is None else t_promo - a.t0),
        "old_leader_demoted_s": r2(None if t_demoted is None else t_demoted - a.t0),
        "last_old_leader_request_s": r2(None if last_old is None else last_old - a.t0),
        "heal_after_s": r2(a.t_heal - a.t0),
        "reads_unavailable_s": r2(r_reads), "drain_s": r2(a.drain_s),
        "charges": len(mine), "paid": len(paid_pk),
        "phantom_keys": phantom[:20],
        "duplicate_clients": list(dup_clients)[:20],
    }
    line = json.dumps(res)
    with open(a.result, "w") as f:
        f.write(line + "\n")
    if a.json:
        with open(a.json, "a") as f:
            f.write(line + "\n")
    for ok, desc, detail in checks:
        print("CHECK\t%d\t%s\t%s" % (ok, desc, detail.replace("\t", " ").replace("\n", " ")))


if __name__ == "__main__":
    main()
