#!/usr/bin/python3
"""latency_pgbench.py RUN WARMUP_S KEYMAP COMMIT_TS OUT_CLIENT OUT_SERVER LOG...

Turns pgbench's per-transaction logs (-l) of bench/latency_place_order.sql
into latency_join.py's inputs, leaving out the first WARMUP_S seconds:

  LOG        "client_id txno latency_us script_no epoch_s us" (epoch_s.us:
             when the transaction completed: the client saw the commit)
  KEYMAP     "<idempotency_key> <order_id>" of the run's orders
  COMMIT_TS  "<payment_key> <order_id> <commit_us>" (pg_xact_commit_timestamp)
  OUT_CLIENT "<order_id> <start_us> <commit_us>"  (client view)
  OUT_SERVER the COMMIT_TS lines of the orders kept (server view)
"""
import sys

run, warm, keymap, commit_ts, out_client, out_server = sys.argv[1:7]
logs = sys.argv[7:]
warm = float(warm)
oid = {}
with open(keymap) as f:
    for line in f:
        p = line.split()
        if len(p) == 2:
            oid[p[0]] = int(p[1])
rows = []
for name in logs:
    with open(name) as f:
        for line in f:
            p = line.split()
            if len(p) < 6:
                continue
            client, txno, lat_us = int(p[0]), int(p[1]), int(p[2])
            end_us = int(p[4]) * 1000000 + int(p[5])
            rows.append((end_us, end_us - lat_us, "lat-%s-%d-%d" % (run, client, txno)))
if not rows:
    sys.exit("no pgbench log lines")
t0 = min(r[1] for r in rows) + int(warm * 1e6)
kept = set()
unknown = 0
with open(out_client, "w") as f:
    for end_us, start_us, key in rows:
        if start_us < t0:
            continue
        if key not in oid:
            unknown += 1
            continue
        kept.add(oid[key])
        f.write("%d %d %d\n" % (oid[key], start_us, end_us))
with open(commit_ts) as f, open(out_server, "w") as g:
    for line in f:
        p = line.split()
        if len(p) == 3 and int(p[1]) in kept:
            g.write(line)
print("%d transactions logged, %d after the %.0f s warm-up, %d without an order" % (
    len(rows), len(kept), warm, unknown))
