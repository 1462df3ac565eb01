#!/usr/bin/python3
"""latency_join.py COMMITS_FILE RECEIPTS_FILE [server] [--dump=FILE]: commit -> gateway latency.

Joins the commit times with the gateway's receipts "<key> <order_id>
<first_received_us> <charged>" by order_id.  COMMITS_FILE is
latency_pgbench.py's "<order_id> <start_us> <commit_us>" (the client saw the
commit), or with "server": "<payment_key> <order_id> <commit_us>" from
pg_xact_commit_timestamp.  Prints "p50 p99 max missing n min" in ms; with
--dump, also writes every latency (ms, sorted, one a line) to FILE for
bench/plots.py.  bench/soak_series.py imports load_receipts, join and pct.
"""
import sys


def load_receipts(path):
    """{order_id: first_received_us} from GET /ledger/receipts"""
    rec = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                rec[int(p[1])] = int(p[2])
    return rec


def join(commits, rec):
    """commits: (order_id, commit_us) pairs -> (sorted latencies in ms, missing)"""
    lat = []
    missing = 0
    for oid, commit in commits:
        if oid in rec:
            lat.append((rec[oid] - commit) / 1000.0)
        else:
            missing += 1
    lat.sort()
    return lat, missing


def pct(lat, q):
    if not lat:
        return float("nan")
    return lat[min(len(lat) - 1, int(q * len(lat)))]


def read_commits(path, server):
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                yield (int(p[1]) if server else int(p[0])), int(p[2])


def main():
    server = "server" in sys.argv[3:]
    dump = next((a[len("--dump="):] for a in sys.argv[3:] if a.startswith("--dump=")), None)
    lat, missing = join(read_commits(sys.argv[1], server), load_receipts(sys.argv[2]))
    if dump:
        with open(dump, "w") as f:
            f.writelines("%.3f\n" % x for x in lat)
    print("%.3f %.3f %.3f %d %d %.3f" % (pct(lat, 0.5), pct(lat, 0.99), lat[-1] if lat else float("nan"),
                                        missing, len(lat), lat[0] if lat else float("nan")))


if __name__ == "__main__":
    main()
