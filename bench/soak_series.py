#!/usr/bin/python3
"""soak_series.py SAMPLES EVENTS COMMITS RECEIPTS OUT WARMUP_S: the figures of tests/chaos/soak.sh.

  SAMPLES   the sampler's JSON lines, one every 10 s (k, t, held, size,
            tup, pending, oldest_pending_s, notify_queue, rss_kb,
            claim_buffers)
  EVENTS    {"event": NAME, "t": unix time} lines (start, dump_start,
            dump_end, release, vacuum, load_end)
  COMMITS   "<k> <order_id> <commit_us>": the orders placed in sample k's
            10 s, with their commit timestamps
  RECEIPTS  GET /ledger/receipts of the fake gateway

Writes OUT: the events, then the samples with p50_ms, p99_ms and n_lat
(commit -> gateway of the orders placed in the sample's 10 s, joined by
bench/latency_join.py's functions); bench/plots.py soak draws it.  Prints
"name value..." lines that soak.sh judges:
  latency_missing            orders of the samples the gateway never saw
  p99_first_ms p99_last_ms   median of the per-sample p99 over the first
                             and the last tenth of the held period (after
                             WARMUP_S; 3 samples at least)
  claim_first claim_last     the same for the claim's buffers
  rss_growth_kb_PID          private RSS at the end less at 10 % of the run
  growth_TABLE H A D         table + indexes: bytes/s while the snapshot
                             was held, bytes grown from the first sample
                             after the VACUUM to the last, over D seconds
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from latency_join import join, load_receipts, pct  # noqa: E402

samples_path, events_path, commits_path, receipts_path, out, warm = sys.argv[1:7]
warm = float(warm)
samples = [json.loads(line) for line in open(samples_path) if line.strip()]
events = {}
for line in open(events_path):
    if line.strip():
        e = json.loads(line)
        events[e["event"]] = e["t"]

rec = load_receipts(receipts_path)
by_k = {}
with open(commits_path) as f:
    for line in f:
        p = line.split()
        if len(p) == 3:
            by_k.setdefault(int(p[0]), []).append((int(p[1]), int(p[2])))
missing = 0
for s in samples:
    lat, miss = join(by_k.get(s["k"], []), rec)
    missing += miss
    s["n_lat"] = len(lat)
    s["p50_ms"] = round(pct(lat, 0.5), 3) if lat else None
    s["p99_ms"] = round(pct(lat, 0.99), 3) if lat else None
with open(out, "w") as f:
    for name, t in sorted(events.items(), key=lambda x: x[1]):
        f.write(json.dumps({"event": name, "t": t}) + "\n")
    for s in samples:
        f.write(json.dumps(s, separators=(",", ":")) + "\n")
print("latency_missing %d" % missing)

t0 = events["start"]
held = [s for s in samples if s["held"] and s["t"] - t0 >= warm]
tenth = max(3, len(held) // 10)	# 3 samples at least: a median, not one sample


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


print("p99_first_ms %.3f" % med(held[:tenth], "p99_ms"))
print("p99_last_ms %.3f" % med(held[-tenth:], "p99_ms"))
print("claim_first %d" % med(held[:tenth], "claim_buffers"))
print("claim_last %d" % med(held[-tenth:], "claim_buffers"))
print("claim_max %d" % max((s["claim_buffers"] or 0) for s in held))
print("held_samples %d" % len(held))

end_t = samples[-1]["t"]
at10 = min(samples, key=lambda s: abs(s["t"] - (t0 + 0.1 * (events.get("load_end", end_t) - t0))))
for pid, kb in samples[-1]["rss_kb"].items():
    print("rss_growth_kb_%s %d" % (pid, kb - at10["rss_kb"].get(pid, kb)))
for pid, kb in samples[-1]["rss_kb"].items():
    print("rss_kb_%s %d %d" % (pid, at10["rss_kb"].get(pid, 0), kb))

tables = sorted(samples[0]["tup"])


def rel_bytes(s, table):
    """the table and its indexes (names start with the table's)"""
    return sum(v for name, v in s["size"].items() if name == table or name.startswith(table + "_"))


held_all = [s for s in samples if s["held"]]
vac = events.get("vacuum")
load_end = events.get("load_end", end_t)
after = [s for s in samples if vac is not None and vac < s["t"] <= load_end]
for table in tables:
    rate = 0.0
    if len(held_all) >= 2:
        rate = (rel_bytes(held_all[-1], table) - rel_bytes(held_all[0], table)) / (held_all[-1]["t"] - held_all[0]["t"])
    grown, dur = 0, 0.0
    if len(after) >= 2:
        grown = rel_bytes(after[-1], table) - rel_bytes(after[0], table)
        dur = after[-1]["t"] - after[0]["t"]
    print("growth_%s %.0f %d %.0f" % (table, rate, grown, dur))
last = samples[-1]
for table in tables:
    print("size_end_%s %d live %d dead %d" % (table, rel_bytes(last, table), last["tup"][table][0], last["tup"][table][1]))
