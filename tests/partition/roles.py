#!/usr/bin/python3
"""roles.py: sample, every --gap seconds, which nodes accept writes.

One thread per node keeps a connection over the node's Unix socket (which
no network fault touches) and records "time node state" lines in --out:
w = primary (not in recovery), r = in recovery, x = no answer.  A frozen
node simply stops producing samples.  Runs until SIGTERM.
"""
import argparse
import signal
import sys
import threading
import time

import psycopg2


def sampler(node, sock, port, gap, out, lock, stop):
    conn = None
    while not stop.is_set():
        t = time.time()
        state = "x"
        try:
            if conn is None:
                conn = psycopg2.connect(host=sock, port=port, dbname="postgres",
                                        user="postgres", connect_timeout=1,
                                        application_name="ft_roles")
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                state = "r" if cur.fetchone()[0] else "w"
        except Exception:  # noqa: BLE001 - a node that does not answer is "x"
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None
        with lock:
            out.write("%.3f %d %s\n" % (t, node, state))
            out.flush()
        stop.wait(max(0.0, gap - (time.time() - t)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sock", required=True)
    p.add_argument("--ports", required=True, help="PostgreSQL ports of n1,n2,n3")
    p.add_argument("--gap", type=float, default=0.25)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lock = threading.Lock()
    out = open(a.out, "a")
    for i, port in enumerate(a.ports.split(","), start=1):
        threading.Thread(target=sampler, args=(i, a.sock, int(port), a.gap, out, lock, stop),
                         daemon=True).start()
    while not stop.wait(0.5):
        pass
    with lock:
        out.flush()
    sys.stdout.flush()
    import os
    os._exit(0)   # threads blocked on a frozen node must not delay the exit


if __name__ == "__main__":
    main()
