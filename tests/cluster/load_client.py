#!/usr/bin/python3
"""load_client.py: order load for the failover drills (tests/cluster).

Places orders through the HAProxy write port the way a careful application
does, reads them back through the read port, and watches Patroni's REST API,
recording everything with wall-clock timestamps for drill.sh / analyze.py.

Writers: a new attempt every --min-gap..--max-gap seconds (default 20-50 ms),
each on its own thread and connection: the retry of an order not yet
acknowledged whose backoff has passed, else a new order (so the attempt rate
stays bounded during an outage, as with an application's connection pool, and
the client does not hammer the recovering server).  Every order has its own
idempotency key; each attempt holds its own connection, taken from a small
pool (--pool-size; 0 opens one per attempt) and closed after any error
(connect_timeout=2, no statement_timeout:
cancelling a commit that waits for the synchronous standby would report
success although the row was never replicated).  On any error - connection
refused or reset, 25006 read-only, too many connections, timeout - the same
key is retried with a short backoff until the order is acknowledged or the
client is told to give up.

History (Jepsen style): every attempt is recorded with its outcome: "ok";
"fail" when it certainly did not commit (no connection, or the server
rejected the statement with an error); "unknown" when the connection broke
or the server was shut down (SQLSTATE class 57) after the statement - which
is its own COMMIT - was sent: the order may or may not exist.

Reader: every --read-gap seconds (default 50 ms) a new thread calls
ft_orders.get_order(id) through the read port for an order acknowledged at
least a second ago, on its own (pooled) connection, and records the outcome.

Monitor: one thread per Patroni node polls GET /primary every 200 ms and
records each change of its HTTP status.

SIGTERM or SIGINT: stop starting orders and reads, keep retrying the orders
not yet acknowledged for at most --drain-timeout seconds, write --out, exit 0.
While running it rewrites --status ("name value" lines) every 200 ms.
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request
import urllib.error

import psycopg2

# psycopg2 errors that say "the request itself is wrong": retrying the same
# key cannot help, and they would be a bug in the drill or the extension.
PERMANENT = {"FT409", "22023", "22004", "42883", "42501", "42P01"}


def now():
    return time.time()


class Load:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.stop_new = threading.Event()    # no new orders / reads
        self.give_up = threading.Event()     # stop retrying unacknowledged orders
        self.attempts = []     # [seq, attempt, start, end, outcome, sqlstate, message]
        self.acked = []        # [key, order_id, ack_time, replayed, status, seq]
        self.rejected = []     # [key, sqlstate, message]
        self.unresolved = []   # keys given up on at the end
        self.reads = []        # [start, end, outcome, order_id]
        self.polls = {}        # node -> [[t, http_status], ...] (changes only)
        self.pool = {}         # port -> idle connections
        self.in_flight = 0       # attempts running now
        self.outstanding = 0     # orders started, not yet acknowledged or rejected
        self.retry = []          # order states waiting for their next attempt
        self.throttled = 0
        self.writer_done = threading.Event()
        self.started_orders = 0
        self.last_ok_end = 0.0
        self.last_ok_start = 0.0
        self.last_fail_end = 0.0
        self.t_start = now()
        self.t_stop_new = None
        self.t_end = None

    def conninfo(self, port):
        a = self.a
        return dict(host=a.host, port=port, dbname=a.db, user=a.user,
                    password=a.password, connect_timeout=2,
                    application_name="ft_load",
                    keepalives=1, keepalives_idle=5, keepalives_interval=1,
                    keepalives_count=3, options=a.session_options)

    # ------------------------------------------------------------ connections
    # A small pool per port, as an application has: an attempt takes an idle
    # connection (or opens one) and holds it alone; after a success it goes
    # back to the pool, after any error it is closed, so the retry opens a
    # fresh one (through HAProxy, to whichever node leads by then).  Opening
    # a connection per attempt would cost the 2-core machine more CPU than
    # the cluster itself and slow Patroni down.
    def get_conn(self, port):
        with self.lock:
            idle = self.pool.setdefault(port, [])
            conn = idle.pop() if idle else None
        if conn is None:
            conn = psycopg2.connect(**self.conninfo(port))
            conn.autocommit = True
        return conn

    def put_conn(self, port, conn):
        with self.lock:
            idle = self.pool.setdefault(port, [])
            if len(idle) < self.a.pool_size:
                idle.append(conn)
                return
        conn.close()

    @staticmethod
    def drop_conn(conn):
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------ writers
    def attempt(self, st):
        """One place_order attempt for order state st, on its own connection."""
        a = self.a
        st["attempt"] += 1
        t0 = now()
        outcome, state, msg, row = "fail", None, None, None
        conn = None
        sent = False
        try:
            conn = self.get_conn(a.rw_port)
            with conn.cursor() as cur:
                sent = True
                cur.execute(
                    "SELECT order_id, status::text, replayed FROM "
                    "ft_orders.place_order(%s, %s, %s, %s, %s::jsonb, %s)",
                    (st["key"], st["customer"], st["amount"], "EUR", st["items"],
                     "pm_card_visa"))
                row = cur.fetchone()
            outcome = "ok"
            self.put_conn(a.rw_port, conn)
            conn = None
        except psycopg2.Error as e:
            state = e.pgcode
            msg = (str(e).strip().splitlines() or [""])[0][:200]
            if sent and (state is None or state.startswith("57")):
                outcome = "unknown"
        except Exception as e:  # noqa: BLE001 - record anything
            msg = ("%s: %s" % (type(e).__name__, e))[:200]
            if sent:
                outcome = "unknown"
        if conn is not None:
            self.drop_conn(conn)
        t1 = now()
        with self.lock:
            self.in_flight -= 1
            self.attempts.append([st["seq"], st["attempt"], t0, t1, outcome, state, msg])
            if outcome == "ok":
                self.acked.append([st["key"], row[0], t1, bool(row[2]), row[1], st["seq"]])
                self.last_ok_end = max(self.last_ok_end, t1)
                self.last_ok_start = max(self.last_ok_start, t0)
                self.outstanding -= 1
            elif state in PERMANENT:
                self.rejected.append([st["key"], state, msg])
                self.outstanding -= 1
            else:
                self.last_fail_end = max(self.last_fail_end, t1)
                # retry the same key after a short exponential backoff with jitter
                delay = min(a.max_backoff, 0.05 * 2 ** (st["attempt"] - 1))
                st["ready"] = t1 + delay * (0.5 + random.random() / 2)
                self.retry.append(st)

    def writer_loop(self):
        """Start one attempt every min_gap..max_gap: a due retry of a key
        not yet acknowledged if there is one, else a new order.  The attempt
        rate stays the same during an outage, as with a bounded client pool."""
        a = self.a
        seq = 0
        while True:
            t = now()
            with self.lock:
                if self.stop_new.is_set() and self.outstanding == 0:
                    break
                if self.give_up.is_set():
                    self.unresolved = [st["key"] for st in self.retry]
                    break
                st = None
                if self.in_flight < a.max_in_flight:
                    due = [x for x in self.retry if x["ready"] <= t]
                    if due:
                        st = min(due, key=lambda x: x["ready"])
                        self.retry.remove(st)
                    elif not self.stop_new.is_set():
                        seq += 1
                        key = "%s-%06d" % (a.prefix, seq)
                        st = {"seq": seq, "key": key,
                              "customer": key if a.customer_is_key else "cust-%d" % (seq % 97),
                              "amount": 100 + (seq * 37) % 90000,
                              "items": json.dumps([{"sku": "sku-%d" % (seq % 13),
                                                    "qty": 1 + seq % 3}]),
                              "attempt": 0, "ready": t}
                        self.started_orders += 1
                        self.outstanding += 1
                    if st is not None:
                        self.in_flight += 1
                if st is None and self.in_flight >= a.max_in_flight:
                    self.throttled += 1
            if st is not None:
                threading.Thread(target=self.attempt, args=(st,), daemon=True).start()
            time.sleep(random.uniform(a.min_gap, a.max_gap))
        self.writer_done.set()

    # ------------------------------------------------------------ reader
    def read_one(self, order_id):
        t0 = now()
        outcome = "error"
        conn = None
        try:
            conn = self.get_conn(self.a.ro_port)
            with conn.cursor() as cur:
                cur.execute("SELECT (ft_orders.get_order(%s)).order_id", (order_id,))
                r = cur.fetchone()
            outcome = "found" if r and r[0] is not None else "notfound"
            self.put_conn(self.a.ro_port, conn)
            conn = None
        except Exception:  # noqa: BLE001
            outcome = "error"
        if conn is not None:
            self.drop_conn(conn)
        with self.lock:
            self.reads.append([t0, now(), outcome, order_id])

    def reader_loop(self):
        while not self.stop_new.wait(self.a.read_gap):
            cutoff = now() - 1.0
            with self.lock:
                # acked is append-only and roughly time-ordered
                cands = [r[1] for r in self.acked[-400:] if r[2] <= cutoff]
            if not cands:
                continue
            threading.Thread(target=self.read_one, args=(random.choice(cands),),
                             daemon=True).start()

    # ------------------------------------------------------------ monitor
    def poll_loop(self, node, host, port):
        last = None
        url = "http://%s:%d/primary" % (host, port)
        series = self.polls.setdefault(str(node), [])
        while not self.give_up.is_set() and not (self.t_end and now() > self.t_end):
            t = now()
            try:
                with urllib.request.urlopen(url, timeout=0.5) as r:
                    code = r.status
            except urllib.error.HTTPError as e:
                code = e.code
            except Exception:  # noqa: BLE001
                code = 0
            if code != last:
                with self.lock:
                    series.append([t, code])
                last = code
            time.sleep(max(0.0, self.a.poll_gap - (now() - t)))

    # ------------------------------------------------------------ status
    def status(self):
        with self.lock:
            return {"now": now(), "started_orders": self.started_orders,
                    "acked": len(self.acked), "outstanding": self.outstanding,
                    "in_flight": self.in_flight,
                    "last_ok_end": self.last_ok_end, "last_ok_start": self.last_ok_start,
                    "last_fail_end": self.last_fail_end,
                    "reads": len(self.reads), "attempts": len(self.attempts)}

    def write_status(self):
        """--status: one "name value" pair a line, cheap to read from a shell"""
        if not self.a.status:
            return
        tmp = self.a.status + ".tmp"
        with open(tmp, "w") as f:
            for k, v in self.status().items():
                f.write("%s %s\n" % (k, ("%.6f" % v) if isinstance(v, float) else v))
        os.replace(tmp, self.a.status)

    def result(self):
        with self.lock:
            return {"prefix": self.a.prefix, "t_start": self.t_start,
                    "t_stop_new": self.t_stop_new, "t_end": self.t_end,
                    "started_orders": self.started_orders,
                    "attempts_fields": ["seq", "attempt", "start", "end", "outcome", "sqlstate", "message"],
                    "attempts": self.attempts,
                    "acked_fields": ["key", "order_id", "ack_time", "replayed", "status", "seq"],
                    "acked": self.acked, "rejected": self.rejected,
                    "unresolved": self.unresolved,
                    "reads_fields": ["start", "end", "outcome", "order_id"],
                    "reads": self.reads, "primary_polls": self.polls}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--rw-port", type=int, required=True)
    p.add_argument("--ro-port", type=int, required=True)
    p.add_argument("--rest-ports", default="", help="Patroni REST ports n1,n2,n3 to poll")
    p.add_argument("--rest-hosts", default="", help="their hosts n1,n2,n3 (default: --host)")
    p.add_argument("--session-options", default="",
                   help="libpq options for every connection, e.g. '-c synchronous_commit=on'")
    p.add_argument("--customer-is-key", action="store_true",
                   help="customer_id = the idempotency key, so the gateway's request log "
                        "maps every charge to the client's key (tests/partition)")
    p.add_argument("--db", default="ftdb")
    p.add_argument("--user", default=os.environ.get("PGUSER", "ft_app"))
    p.add_argument("--password", default=os.environ.get("PGPASSWORD"))
    p.add_argument("--prefix", default="load-%d" % os.getpid())
    p.add_argument("--min-gap", type=float, default=0.020)
    p.add_argument("--max-gap", type=float, default=0.050)
    p.add_argument("--read-gap", type=float, default=0.050)
    p.add_argument("--max-backoff", type=float, default=0.5)
    p.add_argument("--max-in-flight", type=int, default=150)
    p.add_argument("--pool-size", type=int, default=16, help="idle connections kept per port (0: one per attempt)")
    p.add_argument("--poll-gap", type=float, default=0.2, help="Patroni REST polling period")
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=0.0, help="stop by itself after this (0: on signal)")
    p.add_argument("--out", required=True)
    p.add_argument("--status")
    a = p.parse_args()

    threading.stack_size(512 * 1024)
    load = Load(a)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    if a.rest_ports:
        hosts = a.rest_hosts.split(",") if a.rest_hosts else []
        for i, port in enumerate(a.rest_ports.split(","), start=1):
            host = hosts[i - 1] if i <= len(hosts) else a.host
            threading.Thread(target=load.poll_loop, args=(i, host, int(port)), daemon=True).start()
    threading.Thread(target=load.writer_loop, daemon=True).start()
    threading.Thread(target=load.reader_loop, daemon=True).start()

    deadline = load.t_start + a.duration if a.duration > 0 else None
    while not stop.is_set() and not (deadline and now() >= deadline):
        load.write_status()
        stop.wait(0.2)

    load.t_stop_new = now()
    load.stop_new.set()
    end_by = now() + a.drain_timeout
    while now() < end_by and not load.writer_done.is_set():
        load.write_status()
        time.sleep(0.1)
    load.give_up.set()
    load.writer_done.wait(2)
    # attempts still running: give them a little more time (connect_timeout 2 s)
    end_by = now() + 5
    while now() < end_by:
        with load.lock:
            if load.in_flight == 0:
                break
        time.sleep(0.05)
    load.t_end = now()
    with load.lock:
        load.unresolved = sorted(set(load.unresolved) | {st["key"] for st in load.retry})
    res = load.result()
    # attempts still blocked inside a call (should not happen: no call blocks
    # for long without statement_timeout unless a commit hangs)
    res["blocked_at_end"] = load.in_flight
    res["throttled"] = load.throttled
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f)
    os.replace(tmp, a.out)
    load.write_status()
    print("load_client: %d orders, %d acknowledged, %d unresolved, %d rejected, %d blocked, %d reads"
          % (res["started_orders"], len(res["acked"]), len(res["unresolved"]),
             len(res["rejected"]), res["blocked_at_end"], len(res["reads"])), file=sys.stderr)
    sys.stdout.flush()
    os._exit(0)   # daemon threads blocked in libpq must not delay the exit


if __name__ == "__main__":
    main()
