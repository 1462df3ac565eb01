#!/usr/bin/python3
"""report.py: the figures of one `make bench` run -> table + JSON.

  report.py add FIGS NAME UNIT BASELINE "V1 V2 ..." [VALUE] [NOTE]
      append one figure to FIGS (JSON lines).  VALUE defaults to the median
      of the runs; BASELINE may be '' (no baseline); ratio = value/baseline.
  report.py stats "V1 V2 ..."          print the median
  report.py write FIGS OUT.json        write {"machine", "figures"} and print the table
"""
import datetime
import json
import os
import statistics
import sys


def nums(s):
    return [float(x) for x in s.split() if x not in ("", "null", "None")]


def add(figs, name, unit, baseline, values, value=None, note=None):
    runs = nums(values)
    if value in (None, ""):
        value = statistics.median(runs) if runs else None
    else:
        value = float(value)
    base = float(baseline) if baseline not in ("", None, "null") else None
    ratio = None
    if base not in (None, 0.0) and value is not None:
        ratio = round(value / base, 3)
    rec = {
        "name": name, "value": None if value is None else round(value, 3), "unit": unit,
        "baseline": None if base is None else round(base, 3), "ratio": ratio,
        "runs": len(runs),
        "min": round(min(runs), 3) if runs else None,
        "median": round(statistics.median(runs), 3) if runs else None,
        "max": round(max(runs), 3) if runs else None,
    }
    if note:
        rec["note"] = note
    with open(figs, "a") as f:
        f.write(json.dumps(rec) + "\n")


def write(figs, out):
    figures = []
    if os.path.exists(figs):
        with open(figs) as f:
            figures = [json.loads(l) for l in f if l.strip()]
    machine = {
        "cores": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": [float(x) for x in os.environ.get("FT_BENCH_LOADAVG_START", "").split()],
        "scale": os.environ.get("FT_BENCH_SCALE", "full"),
        "parts": os.environ.get("FT_BENCH", ""),
    }
    try:
        with open("/proc/meminfo") as f:
            machine["mem_gib"] = round(int(f.readline().split()[1]) / 1048576, 1)
    except OSError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"machine": machine, "figures": figures}, f, indent=1)
        f.write("\n")

    def fmt(x):
        if x is None:
            return "-"
        if abs(x) >= 100:
            return "%.0f" % x
        return "%.3g" % x if abs(x) < 10 else "%.1f" % x

    hdr = ("figure", "value", "unit", "baseline", "ratio", "runs", "min", "median", "max")
    rows = [(r["name"], fmt(r["value"]), r["unit"], fmt(r["baseline"]), fmt(r["ratio"]),
             str(r["runs"]), fmt(r["min"]), fmt(r["median"]), fmt(r["max"])) for r in figures]
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(hdr)]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) if i in (0, 2) else c.rjust(w[i])
                                      for i, c in enumerate(r)) + " |"
    print("machine: %d cores, loadavg %s, %s, scale %s" % (
        machine["cores"], " ".join(map(str, machine["loadavg"])), machine["date"], machine["scale"]))
    print(line(hdr))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line(r))
    for r in figures:
        if r.get("note"):
            print("  %s: %s" % (r["name"], r["note"]))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "add":
        a = sys.argv[2:] + [None] * 3
        add(a[0], a[1], a[2], a[3], a[4], a[5], a[6])
    elif cmd == "stats":
        r = nums(sys.argv[2])
        print(statistics.median(r) if r else "")
    elif cmd == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
