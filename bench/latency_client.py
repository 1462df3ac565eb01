#!/usr/bin/python3
"""latency_client.py RATE SECONDS THREADS OUT [WARMUP_S]: place orders at a fixed rate.

The first WARMUP_S seconds (default 2) of orders use keys "latw-..." and are
left out of OUT: sessions connect, workers leave their idle poll, caches warm.

Order i is due at t0 + i/RATE; THREADS sessions (autocommit, so the call's
return is the commit acknowledged to the client) take the next due order.
Writes one line per order: "<order_id> <start_us> <commit_us>" where
commit_us is CLOCK_REALTIME right after place_order returned (the client saw
the commit) — to be joined with the gateway's first_received_us.
Connection parameters from the libpq environment (PGHOST, PGPORT, ...).
"""
import sys
import threading
import time

import psycopg2

rate, seconds, nthreads, out = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
run = int(time.time() * 1000) % 100000000
warm = int(rate * (float(sys.argv[5]) if len(sys.argv) > 5 else 2.0))
total = int(rate * seconds) + warm
lock = threading.Lock()
nxt = [0]
rows = []
late = [0]
t0 = time.time() + 0.5


def work():
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("PREPARE po(text) AS SELECT order_id FROM ft_orders.place_order($1, 'cust-lat', 1000, 'EUR')")
    mine = []
    while True:
        with lock:
            i = nxt[0]
            nxt[0] += 1
        if i >= total:
            break
        due = t0 + i / rate
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        elif d < -0.01:
            late[0] += 1
        s = time.time()
        cur.execute("EXECUTE po(%s)", (("latw-%d-%d" if i < warm else "lat-%d-%d") % (run, i),))
        oid = cur.fetchone()[0]
        e = time.time()
        if i >= warm:
            mine.append("%d %d %d" % (oid, int(s * 1e6), int(e * 1e6)))
    with lock:
        rows.extend(mine)
    conn.close()


ts = [threading.Thread(target=work) for _ in range(nthreads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
elapsed = time.time() - t0
with open(out, "w") as f:
    f.write("\n".join(rows) + "\n")
print("placed %d orders (+%d warm-up) in %.1f s (%.0f/s), %d started >10 ms late" % (
    len(rows), warm, elapsed, total / elapsed, late[0]))
