#!/usr/bin/python3
"""check_dashboard.py: structural checks of contrib/grafana/ft_orders.json.

  check_dashboard.py DASHBOARD SCHEMA METRICS RULES QUERIES PROMTOOL

DASHBOARD  the Grafana dashboard (JSON model)
SCHEMA     JSON schema of the fields it relies on (python3-jsonschema)
METRICS    the text ft_orders.metrics() returned on the build under test
RULES      contrib/prometheus/ft_orders.rules.yml
QUERIES    contrib/postgres_exporter/ft_orders_queries.yaml
PROMTOOL   promtool, to parse every PromQL expression

Prints TAP (run by tests/monitoring/dashboard.sh):
  - the dashboard validates against SCHEMA; panel ids and refIds are
    unique; panels lie within the 24-column grid and do not overlap; every
    $variable a query uses is defined; every expression parses;
  - every query names a metric that metrics() exports, and every other
    metric it names is one postgres_exporter exports with QUERIES (a
    fallback for the same figure, joined with "or");
  - every raw metric the alert rules read is exported by metrics() or
    postgres_exporter (QUERIES, or its built-ins listed below).
"""
import json
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

# postgres_exporter 0.11's own metrics that the rules use: the node's role
# (PostgreSQL 14+'s in_hot_standby setting) and replay lag per standby
EXPORTER_BUILTINS = {
    "pg_settings_in_hot_standby",
    "pg_stat_replication_pg_wal_lsn_diff",
}

N = 0
FAILED = 0


def tap(ok, desc, detail=None):
    global N, FAILED
    N += 1
    print("%s %d - %s" % ("ok" if ok else "not ok", N, desc))
    if not ok:
        FAILED += 1
        for line in (detail or []):
            print("#   " + line)


def metrics_names(text):
    """Series names metrics() exports, from its TYPE lines."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if not m:
            continue
        name, typ = m.groups()
        if typ == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def exporter_names(path):
    """Metric names postgres_exporter makes of the queries file."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    names = set()
    for prefix, spec in doc.items():
        for col in spec["metrics"]:
            (name, attrs), = col.items()
            if attrs["usage"] not in ("LABEL", "DISCARD"):
                names.add(prefix + "_" + name)
    return names


def names_in(expr):
    """Metric names in a PromQL expression: identifiers outside strings,
    label matchers and ranges that look like ft_orders' or the exporter's."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    return set(re.findall(r"\b((?:ft_orders|pg)[a-zA-Z0-9_:]*)\b", e))


def grafana_vars(expr):
    return set(re.findall(r"\$\{?([A-Za-z_]+)", expr))


def main():
    dash_path, schema_path, metrics_path, rules_path, queries_path, promtool = sys.argv[1:7]
    with open(dash_path) as f:
        dash = json.load(f)
    with open(schema_path) as f:
        schema = json.load(f)
    with open(metrics_path) as f:
        live = metrics_names(f.read())
    exporter = exporter_names(queries_path)

    # --- structure
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(dash), key=str)
    tap(not errors, "the dashboard validates against %s" % schema_path.split("/")[-1],
        ["%s: %s" % ("/".join(map(str, e.absolute_path)), e.message) for e in errors[:10]])
    if errors:
        return

    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    tap(len(ids) == len(set(ids)), "%d panels, every id unique" % len(ids))
    dup_ref = [p["title"] for p in panels
               if len({t["refId"] for t in p.get("targets", [])}) != len(p.get("targets", []))]
    tap(not dup_ref, "every refId unique within its panel", dup_ref)

    cells, overlap, outside = {}, [], []
    for p in panels:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            outside.append(p["title"])
        for x in range(g["x"], min(g["x"] + g["w"], 24)):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    overlap.append("%s / %s" % (cells[(x, y)], p["title"]))
                cells[(x, y)] = p["title"]
    tap(not outside and not overlap, "panels lie within the 24-column grid and do not overlap",
        outside + sorted(set(overlap))[:5])

    targets = [(p["title"], t) for p in panels for t in p.get("targets", [])]
    defined = {v["name"] for v in dash["templating"]["list"]}
    used = set()
    for _, t in targets:
        used |= grafana_vars(t["expr"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            used |= grafana_vars(q["query"])
    builtin = {"__rate_interval", "__interval", "__range"}
    tap(used - builtin <= defined, "every variable the queries use is defined (%s)" % " ".join(sorted(defined)),
        sorted(used - builtin - defined))

    # every expression parses: promtool checks them as recording rules, with
    # Grafana's variables replaced by values
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (_, t) in enumerate(targets):
        e = t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules["groups"][0]["rules"].append({"record": "dashboard:expr_%d" % i, "expr": e})
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    tap(r.returncode == 0, "promtool parses all %d PromQL expressions" % len(targets),
        (r.stdout + r.stderr).splitlines()[-10:])

    # --- metric names
    def known(name):
        return name in live

    no_native, unknown = [], []
    for title, t in targets:
        names = names_in(t["expr"])
        native = {n for n in names if known(n)}
        if not native:
            no_native.append("%s / %s: %s" % (title, t["refId"], " ".join(sorted(names)) or "no metric"))
        unknown += ["%s / %s: %s" % (title, t["refId"], n) for n in sorted(names - native - exporter)]
    tap(not no_native, "each of the %d queries names a metric that metrics() exports" % len(targets), no_native)
    tap(not unknown, "the other metrics they name are postgres_exporter's (ft_orders_queries.yaml) fallbacks",
        unknown)

    with open(rules_path) as f:
        rule_doc = yaml.safe_load(f)
    rule_names = set()
    for g in rule_doc["groups"]:
        for r in g["rules"]:
            rule_names |= {n for n in names_in(r["expr"]) if ":" not in n}
    bad = sorted(n for n in rule_names if not known(n) and n not in exporter and n not in EXPORTER_BUILTINS)
    tap(not bad, "the %d metrics the alert rules read are exported by metrics() or postgres_exporter"
        % len(rule_names), bad)


    families_unused = sorted(n for n in live if not n.endswith(("_sum", "_count"))
                             and not any(n in names_in(t["expr"]) for _, t in targets))
    if families_unused:
        print("# metrics() families not on the dashboard: %s" % " ".join(families_unused))


if __name__ == "__main__":
    main()
    print("1..%d" % N)
    sys.exit(1 if FAILED else 0)
