#!/usr/bin/python3
"""plots.py: the plots of one `make bench` run (matplotlib, Agg backend).

  plots.py collect SERIES_DIR DRAIN_N OUT.series.json
      gather the raw series bench/run.sh left in SERIES_DIR into one JSON
      file (kept next to the figures, so that the plots can be redrawn):
        drain_<label>.txt         "<unix time> <charges>" polls of one drain
                                  (first line: the clock's start, 0)
        latency_server_ms.txt     commit -> gateway latency of every order,
        latency_client_ms.txt     from the server's commit timestamp / the
                                  client's acknowledged commit (ms, sorted)
        drills.jsonl              tests/cluster/analyze.py's line per drill,
                                  with its 100 ms timeline around the fault
  plots.py plot OUT.series.json PLOT_DIR
      write to PLOT_DIR, for the parts the run measured:
        drain_progress.png        payments settled over time, per drain setting
        latency_distribution.png  commit -> gateway latency histogram and CDF
        failover_timeline.png     writes acknowledged and failed per 100 ms
                                  around the fault, one panel per scenario
  plots.py soak SOAK.jsonl PLOT_DIR
      draw tests/chaos/soak.sh's samples (bench/soak_series.py's output):
        soak_tables.png           size (table + indexes), live and dead
                                  tuples of every ft_orders table over time
        soak_service.png          commit -> gateway p50/p99, buffers one
                                  claim reads, drain lag, worker RSS

Python 3 with Debian's python3-matplotlib (tests/setup/deps.sh --bench).
"""
import glob
import json
import os
import re
import sys

# what the drain labels of bench/run.sh mean (label = setting + run number)
DRAIN_SETTINGS = {
    "dflt": "defaults (max_in_flight 64, batch_size 100)",
    "zero": "max_in_flight 256, batch_size 500",
    "lat": "256 / 500, gateway latency 20 ms",
    "flt": "256 / 500, 20 % of requests fail (503)",
}
DRAIN_ORDER = list(DRAIN_SETTINGS)
SCENARIOS = ("postmaster_kill", "node_loss", "switchover")


def read_numbers(path):
    with open(path) as f:
        return [float(x) for x in f.read().split()]


def collect(series_dir, drain_n, out):
    data = {"drain_n": int(drain_n), "drain": {}}
    for path in sorted(glob.glob(os.path.join(series_dir, "drain_*.txt"))):
        label = os.path.basename(path)[len("drain_"):-len(".txt")]
        rows = [line.split() for line in open(path) if line.strip()]
        t0 = float(rows[0][0])
        data["drain"][label] = [[round(float(t) - t0, 3), int(c)] for t, c in rows]
    for view in ("server", "client"):
        path = os.path.join(series_dir, "latency_%s_ms.txt" % view)
        if os.path.exists(path):
            data["latency_%s_ms" % view] = read_numbers(path)
    path = os.path.join(series_dir, "drills.jsonl")
    if os.path.exists(path):
        data["drills"] = [json.loads(line) for line in open(path) if line.strip()]
    with open(out, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    print("# written %s" % out)


def plot_drain(plt, data, path):
    drains = data.get("drain") or {}
    if not drains:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = {}
    def order(label):
        setting = re.sub(r"\d+$", "", label)
        return (DRAIN_ORDER.index(setting) if setting in DRAIN_ORDER else len(DRAIN_ORDER), label)

    for label in sorted(drains, key=order):
        setting = re.sub(r"\d+$", "", label)
        pts = drains[label]
        first = setting not in colors
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts],
                        color=colors.get(setting), lw=1.5 if first else 0.8,
                        alpha=1.0 if first else 0.5,
                        label=DRAIN_SETTINGS.get(setting, setting) if first else None)
        colors.setdefault(setting, line.get_color())
    ax.set_xlabel("seconds since gateway_url was set (workers start draining)")
    ax.set_ylabel("payments charged at the fake gateway")
    ax.set_title("Drain of %d pre-loaded orders, per setting (every run)" % data["drain_n"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def pct(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def plot_latency(plt, data, path):
    server = sorted(data.get("latency_server_ms") or [])
    client = sorted(data.get("latency_client_ms") or [])
    if not server:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    # the axes end at 1.5 x p99: the tail beyond is one bar at the right
    top = 1.5 * pct(server, 0.99)
    bins = [top * i / 60 for i in range(61)]
    ax1.hist([min(x, top) for x in server], bins=bins, color="tab:blue", alpha=0.8)
    for q, style in ((0.5, "--"), (0.99, ":")):
        v = pct(server, q)
        ax1.axvline(v, color="black", ls=style, lw=1, label="p%g = %.2f ms" % (q * 100, v))
    ax1.set_xlabel("ms (last bar: %.1f ms and more; max %.1f ms)"
                   % (top, server[-1]))
    ax1.set_ylabel("orders")
    ax1.set_title("Distribution, %d orders" % len(server))
    ax1.legend(fontsize=8)
    # the client sees its commit acknowledged after the server stamped it,
    # sometimes after the worker already sent the request: below 0 then
    right = top
    for values, name in ((server, "from the server's commit timestamp"),
                         (client, "from the client's acknowledged commit")):
        if values:
            n = len(values)
            ax2.plot(values, [(i + 1) / n for i in range(n)], label=name, lw=1.2)
    ax2.set_xlim(min(0, client[0] if client else 0), right)
    ax2.set_xlabel("ms (axis ends at 1.5 x p99 of the server view)")
    ax2.set_ylabel("share of orders at or below")
    ax2.set_title("Cumulative distribution")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle("Commit of place_order -> payment request received by the gateway")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_failover(plt, data, path):
    drills = [d for d in data.get("drills") or [] if d.get("timeline")]
    if not drills:
        return False
    shown = [s for s in SCENARIOS if any(d["scenario"] == s for d in drills)]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), sharex=True, squeeze=False)
    for ax, scenario in zip(axes[:, 0], shown):
        runs = [d for d in drills if d["scenario"] == scenario]
        d = runs[0]
        tl = d["timeline"]
        xs = [tl["from_s"] + i * tl["step_s"] for i in range(len(tl["acked"]))]
        ax.bar(xs, tl["acked"], width=tl["step_s"], align="edge", color="tab:green",
               label="writes acknowledged")
        ax.bar(xs, [-x for x in tl["failed_attempts"]], width=tl["step_s"], align="edge",
               color="tab:red", label="attempts failed (shown below 0)")
        ax.axvline(0, color="black", lw=1)
        ax.text(0.1, ax.get_ylim()[1] * 0.85, "fault", fontsize=8)
        if d.get("fault_to_promotion_s") is not None:
            ax.axvline(d["fault_to_promotion_s"], color="tab:blue", ls="--", lw=1,
                       label="promotion (%.2f s)" % d["fault_to_promotion_s"])
        if d.get("rto_s") is not None:
            ax.axvline(d["rto_s"], color="tab:purple", ls=":", lw=1.5,
                       label="writes back: RTO %.2f s" % d["rto_s"])
        ax.set_title("%s (drill 1 of %d; lost %s, duplicate charges %s)" % (
            scenario.replace("_", " "), len(runs), d.get("lost"), d.get("duplicates")), fontsize=10)
        ax.set_ylabel("per 100 ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds from the fault (client writes through HAProxy, a new attempt every 20-50 ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot(series, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(series) as f:
        data = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    for name, fn in (("drain_progress.png", plot_drain),
                     ("latency_distribution.png", plot_latency),
                     ("failover_timeline.png", plot_failover)):
        path = os.path.join(out_dir, name)
        if fn(plt, data, path):
            print("# written %s" % path)
        else:
            print("# %s: no data in this run" % name)


def soak_axes(plt, ax, events, t0):
    """the run's steps as vertical lines"""
    styles = {"dump_start": ("pg_dump", "tab:gray", "--"), "release": ("snapshot released", "tab:red", ":"),
              "vacuum": ("VACUUM", "tab:green", ":"), "load_end": ("load ends", "black", "-")}
    for name, (label, color, ls) in styles.items():
        if name in events:
            ax.axvline((events[name] - t0) / 60, color=color, ls=ls, lw=1, label=label)
    ax.grid(alpha=0.3)


def soak_save(plt, fig, title, path):
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("# written %s" % path)


def soak(jsonl, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in open(jsonl) if line.strip()]
    events = {r["event"]: r["t"] for r in rows if "event" in r}
    samples = [r for r in rows if "k" in r]
    t0 = events.get("start", samples[0]["t"])
    xs = [(s["t"] - t0) / 60 for s in samples]
    tables = sorted(samples[0]["tup"])
    os.makedirs(out_dir, exist_ok=True)

    def rel(s, t):
        return sum(v for n, v in s["size"].items() if n == t or n.startswith(t + "_"))

    fig, axes = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for t in tables:
        axes[0].plot(xs, [rel(s, t) / 2**20 for s in samples], label=t, lw=1.2)
        axes[1].plot(xs, [s["tup"][t][0] for s in samples], label=t, lw=1.2)
        axes[2].plot(xs, [s["tup"][t][1] for s in samples], label=t, lw=1.2)
    axes[0].set_ylabel("MB (table + indexes)")
    axes[1].set_ylabel("n_live_tup")
    axes[2].set_ylabel("n_dead_tup")
    for ax in axes:
        ax.set_yscale("symlog", linthresh=1 if ax is axes[0] else 100)
        ax.set_ylim(bottom=0)
        soak_axes(plt, ax, events, t0)
    axes[0].legend(fontsize=7, loc="upper left", ncol=2)
    axes[2].set_xlabel("minutes")
    soak_save(plt, fig, "ft_orders tables under steady load, one snapshot held until the red line", os.path.join(out_dir, "soak_tables.png"))

    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    for key, style in (("p50_ms", "-"), ("p99_ms", "-")):
        axes[0].plot(xs, [s.get(key) if s.get(key) is not None else float("nan") for s in samples],
                     ls=style, lw=1.2, label=key.replace("_ms", ""))
    axes[0].set_ylabel("commit -> gateway, ms")
    axes[0].set_yscale("log")
    axes[1].plot(xs, [s.get("claim_buffers") if s.get("claim_buffers") is not None else float("nan")
                      for s in samples], color="tab:purple", lw=1.2, label="claim from _claim_floor()")
    axes[1].set_ylabel("shared buffers per claim")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(xs, [s["oldest_pending_s"] for s in samples], color="tab:orange", lw=1.2,
                 label="age of the oldest pending event (s)")
    ax2 = axes[2].twinx()
    ax2.plot(xs, [s["pending"] for s in samples], color="tab:blue", lw=0.8, alpha=0.6)
    ax2.set_ylabel("pending events", color="tab:blue")
    axes[2].set_ylabel("drain lag, s")
    for pid in sorted(samples[-1]["rss_kb"]):
        axes[3].plot(xs, [s["rss_kb"].get(pid, float("nan")) / 1024 for s in samples], lw=1.2,
                     label="worker %s" % pid)
    axes[3].set_ylabel("private RSS, MB")
    axes[3].set_xlabel("minutes")
    for ax in axes:
        soak_axes(plt, ax, events, t0)
        ax.legend(fontsize=7, loc="upper left")
    soak_save(plt, fig, "Latency, claim cost, drain lag and worker memory over the soak", os.path.join(out_dir, "soak_service.png"))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "collect":
        collect(*sys.argv[2:5])
    elif len(sys.argv) == 4 and sys.argv[1] == "soak":
        soak(*sys.argv[2:4])
    elif len(sys.argv) == 4 and sys.argv[1] == "plot":
        plot(*sys.argv[2:4])
    else:
        sys.exit(__doc__)
