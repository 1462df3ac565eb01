#!/usr/bin/python3
"""report.py RUNS.jsonl OUT.json SCALE LOADAVG_START: the figures of
`make bench-peers` (bench/peers/run.sh).

Writes OUT.json ({"machine", "n", "rounds", "summary", "runs"}: summary is
scenario -> system -> {median_per_s, median_s, drained, rounds,
restart_to_first_payment_s, worker_cpu_us, duplicates}), prints a Markdown
table and draws OUT.plots/peers.png (payments/s per scenario and system,
matplotlib's Agg backend).
"""
import json
import os
import statistics
import sys
import time

SYSTEMS = ["ft", "ft_tuned", "pgboss", "graphile", "dbos"]
LABELS = {
    "ft": "ft_orders defaults",
    "ft_tuned": "ft_orders 256/500",
    "pgboss": "pg-boss",
    "graphile": "graphile-worker",
    "dbos": "DBOS",
}
SCENARIOS = ["lat0", "lat20", "lat200", "fail20", "crash_default", "crash_tuned"]
SC_LABELS = {
    "lat0": "0 ms",
    "lat20": "20 ms",
    "lat200": "200 ms",
    "fail20": "20 % 503 + Retry-After 1 s",
    "crash_default": "worker killed at 30 %, recovery defaults (20 ms)",
    "crash_tuned": "worker killed at 30 %, recovery tuned (20 ms)",
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main(runs_path, out, scale, load_start):
    runs = [json.loads(l) for l in open(runs_path) if l.strip()]
    summary = {}
    for r in runs:
        summary.setdefault(r["scenario"], {}).setdefault(r["system"], []).append(r)
    for sc, by in summary.items():
        for sysname, rs in by.items():
            by[sysname] = {
                "rounds": len(rs),
                "drained": sum(1 for r in rs if r["drained"]),
                "median_per_s": med([r["per_s"] for r in rs]),
                "median_s": med([r["seconds"] for r in rs if r["drained"]]),
                "paid_min": min(r["paid"] for r in rs),
                "restart_to_first_payment_s": med([r.get("restart_to_first_payment_s") for r in rs]),
                "worker_cpu_us": med([r.get("worker_cpu_us") for r in rs]),
                "duplicates": sum(r["gateway"]["duplicates"] for r in rs),
            }
    n = runs[0]["n"] if runs else 0
    doc = {
        "machine": {
            "cores": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "scale": scale,
        },
        "n": n,
        "rounds": max((r["round"] for r in runs), default=0),
        "summary": summary,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    systems = [s for s in SYSTEMS if any(s in by for by in summary.values())]
    print("| scenario | " + " | ".join(LABELS[s] for s in systems) + " |")
    print("|---|" + "---|" * len(systems))
    for sc in [s for s in SCENARIOS if s in summary]:
        cells = []
        for s in systems:
            v = summary[sc].get(s)
            if v is None:
                cells.append("-")
            elif sc.startswith("crash"):
                if v["drained"] == v["rounds"]:
                    c = "%.1f s" % v["median_s"]
                else:
                    c = "not drained in the limit (%d/%d paid)" % (v["paid_min"], n)
                if v["restart_to_first_payment_s"] is not None:
                    c += ", restart → 1st payment %.2f s" % v["restart_to_first_payment_s"]
                cells.append(c)
            elif v["median_per_s"] is None:
                cells.append("not drained (%d/%d)" % (v["paid_min"], n))
            else:
                c = "%.0f/s" % v["median_per_s"]
                if v["worker_cpu_us"] is not None:
                    c += " (%s µs)" % v["worker_cpu_us"]
                cells.append(c)
            if v is not None and v["duplicates"]:
                cells[-1] += " **%d duplicates**" % v["duplicates"]
        print("| %s | %s |" % (SC_LABELS.get(sc, sc), " | ".join(cells)))
    print("\nN = %d orders per drain, %d round(s), scale %s, loadavg at start %s, at end %s; "
          "(µs) = CPU of the worker processes per payment (ft_orders: both payment workers; "
          "a peer: its Node process; the PostgreSQL backends serving a peer are not counted)"
          % (n, doc["rounds"], scale, load_start, doc["machine"]["loadavg"]))
    plot(summary, systems, out[:-len(".json")] + ".plots" if out.endswith(".json") else out + ".plots")


def plot(summary, systems, plot_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# no matplotlib: no plot", file=sys.stderr)
        return
    scs = [s for s in SCENARIOS if s in summary and not s.startswith("crash")]
    crash = [s for s in SCENARIOS if s in summary and s.startswith("crash")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [max(len(scs), 1), max(len(crash), 1)]})
    w = 0.8 / max(len(systems), 1)
    for ax, group, key, ylabel in (
        (axes[0], scs, "median_per_s", "payments/s (median over rounds, log scale)"),
        (axes[1], crash, "median_s", "seconds until all N paid (lower is better)"),
    ):
        for i, s in enumerate(systems):
            ys = [(summary[sc].get(s) or {}).get(key) or 0 for sc in group]
            ax.bar([x + i * w for x in range(len(group))], ys, w, label=LABELS[s])
        ax.set_xticks([x + w * (len(systems) - 1) / 2 for x in range(len(group))])
        ax.set_xticklabels([SC_LABELS[sc].replace(", ", "\n") for sc in group], fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if key == "median_per_s":
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_title("a bar at 0: not drained within the time limit", fontsize=8)
    fig.suptitle("ft_orders and its peers: the same N orders charged once through the fake gateway", fontsize=10)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "peers.png"), dpi=100)
    print("# plot: %s" % os.path.join(plot_dir, "peers.png"), file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:5])
