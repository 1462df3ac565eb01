#!/usr/bin/python3
"""prom_check.py: validate Prometheus text exposition read on stdin.

    psql -XAt -c 'SELECT ft_orders.metrics()' | /usr/bin/python3 tests/lib/prom_check.py

The text is parsed by the Prometheus project's own Python client
(Debian's python3-prometheus-client, prometheus_client.parser), which
rejects malformed lines, bad label escapes and non-numeric values.  On top
of what the parser enforces, the rules of the exposition format that it
tolerates are checked too:

  - every family has a "# HELP" and a "# TYPE" line (the parser would
    accept bare samples as "unknown");
  - a family's samples are not split by another family, no series repeats;
  - counter samples end in _total and are >= 0;
  - a histogram has _bucket series with increasing "le" bounds ending in
    "+Inf", cumulative (non-decreasing) counts, +Inf equal to _count, and a
    _sum.

On success it prints every sample as NAME{label="value",...} VALUE, labels
sorted, one per line, for the shell tests to grep; on failure it prints
the problems to stderr and exits 1.
"""

import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(problems):
    for p in problems:
        print("prom_check: " + p, file=sys.stderr)
    sys.exit(1)


def main():
    text = sys.stdin.read()
    problems = []

    if not text.strip():
        fail(["empty input"])

    helps, types, order = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if parts[2] in types:
                problems.append("second TYPE line for %s" % parts[2])
            types[parts[2]] = parts[3]
            order.append(parts[2])
        elif line.startswith("#") or not line.strip():
            continue

    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        fail(["parser rejected the text: %r" % (e,)])

    seen_series = set()
    seen_families = set()
    out = []
    for f in families:
        if f.type not in ("counter", "gauge", "histogram"):
            problems.append("family %s has type %s (no TYPE line?)" % (f.name, f.type))
        if f.name in seen_families:
            problems.append("family %s appears twice (samples not grouped)" % f.name)
        seen_families.add(f.name)
        type_name = f.name + "_total" if f.type == "counter" and f.name + "_total" in types else f.name
        if type_name not in types:
            problems.append("family %s has no TYPE line" % f.name)
        if not (helps.get(type_name) or "").strip():
            problems.append("family %s has no HELP text" % f.name)

        buckets = []
        sums = counts = 0
        count_value = None
        for s in f.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen_series:
                problems.append("series %s%s repeated" % (s.name, dict(s.labels)))
            seen_series.add(key)
            if math.isnan(s.value):
                problems.append("series %s is NaN" % s.name)
            if f.type == "counter":
                if not s.name.endswith("_total"):
                    problems.append("counter sample %s does not end in _total" % s.name)
                if s.value < 0:
                    problems.append("counter %s is negative" % s.name)
            if f.type == "histogram":
                if s.name == f.name + "_bucket":
                    buckets.append((s.labels.get("le"), s.value))
                elif s.name == f.name + "_sum":
                    sums += 1
                elif s.name == f.name + "_count":
                    counts += 1
                    count_value = s.value
                else:
                    problems.append("histogram %s has a stray sample %s" % (f.name, s.name))
            labels = ",".join('%s="%s"' % (k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
                              for k, v in sorted(s.labels.items()))
            value = s.value
            if value == int(value) and abs(value) < 2 ** 53:
                value = int(value)
            out.append("%s%s %s" % (s.name, "{" + labels + "}" if labels else "", value))

        if f.type == "histogram":
            if not buckets or buckets[-1][0] != "+Inf":
                problems.append("histogram %s does not end with le=\"+Inf\"" % f.name)
            else:
                bounds = [float(le) for le, _ in buckets]
                if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                    problems.append("histogram %s: le bounds not increasing: %s" % (f.name, bounds))
                values = [v for _, v in buckets]
                if values != sorted(values):
                    problems.append("histogram %s: bucket counts not cumulative: %s" % (f.name, values))
                if count_value is None or values[-1] != count_value:
                    problems.append("histogram %s: +Inf bucket %s differs from _count %s"
                                    % (f.name, values[-1], count_value))
            if sums != 1 or counts != 1:
                problems.append("histogram %s needs one _sum and one _count" % f.name)

    for name in types:
        base = name[:-6] if types[name] == "counter" and name.endswith("_total") else name
        if base not in seen_families and name not in seen_families:
            problems.append("TYPE line for %s but the parser found no such family" % name)

    if problems:
        fail(problems)
    print("\n".join(out))


if __name__ == "__main__":
    main()
