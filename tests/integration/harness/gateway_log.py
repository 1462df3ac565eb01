#!/usr/bin/env python3
"""gateway_log.py: figures from the fake gateway's request logs.

    gateway_log.py URL max_window SECONDS
        the most requests that arrived in any SECONDS-long interval
        (GET /ledger/requests, every POST /payments with a valid body)
    gateway_log.py URL between FROM_US TO_US
        requests that arrived in [FROM_US, TO_US)
    gateway_log.py URL steady SKIP_S
        after the first SKIP_S seconds of the log: "requests limited ok
        seconds" -- requests that arrived, of which answered 429 by the
        gateway's limiter (GET /ledger/limited), the others, and the
        seconds from SKIP_S after the first request to the last one that
        was not limited (goodput = ok / seconds)
    gateway_log.py URL first_limited
        arrival time (us) of the first request the limiter answered 429

Counts only: the tests compare them with the configured limits.
"""
import sys
import urllib.request


def lines(url, path):
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return r.read().decode().splitlines()


def arrivals(url, path):
    return sorted(int(l.split()[0]) for l in lines(url, path) if l.strip())


def main():
    url, what = sys.argv[1], sys.argv[2]
    reqs = arrivals(url, "/ledger/requests")
    if what == "max_window":
        width = int(float(sys.argv[3]) * 1e6)
        best, j = 0, 0
        for i, t in enumerate(reqs):
            while reqs[j] <= t - width:
                j += 1
            best = max(best, i - j + 1)
        print(best)
    elif what == "between":
        lo, hi = int(sys.argv[3]), int(sys.argv[4])
        print(sum(1 for t in reqs if lo <= t < hi))
    elif what == "steady":
        skip = int(float(sys.argv[3]) * 1e6)
        limited = arrivals(url, "/ledger/limited")
        if not reqs:
            print("0 0 0 0")
            return
        start = reqs[0] + skip
        lim = [t for t in limited if t >= start]
        lim_set = {}
        for t in lim:
            lim_set[t] = lim_set.get(t, 0) + 1
        ok_times = []
        for t in reqs:
            if t < start:
                continue
            if lim_set.get(t, 0) > 0:
                lim_set[t] -= 1
            else:
                ok_times.append(t)
        n = sum(1 for t in reqs if t >= start)
        secs = (ok_times[-1] - start) / 1e6 if ok_times else 0
        print(n, len(lim), len(ok_times), "%.3f" % secs)
    elif what == "first_limited":
        limited = arrivals(url, "/ledger/limited")
        print(limited[0] if limited else 0)
    else:
        sys.exit("unknown figure " + what)


if __name__ == "__main__":
    main()
