#!/usr/bin/python3
"""rule_tests.py: helpers for the promtool unit tests of the alert rules.

  rule_tests.py expand RULES TEST OUT
      Write TEST (a `promtool test rules` file) to OUT with rule_files
      pointing at RULES (absolute) and, in every expected alert, the
      alert's static annotations (all but "summary", which the test states
      rendered) copied from RULES.  The runbook text thus lives only in the
      rules file; the tests check the labels and the rendered summary.
  rule_tests.py shorten RULES OUT FOR
      Write RULES to OUT with every alert's "for" set to FOR (e.g. 5s) and
      nothing else changed, for tests/integration/prometheus.sh: a real
      Prometheus evaluating the very expressions within seconds.
  rule_tests.py coverage RULES TEST...
      Fail unless every alert of RULES has, across the TESTs, at least one
      case where it fires and one where it is expected not to fire.

Parsing is PyYAML's (Debian python3-yaml).
"""
import os
import sys

import yaml


def alerts_of(rules_path):
    with open(rules_path) as f:
        doc = yaml.safe_load(f)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def expand(rules_path, test_path, out_path):
    alerts = alerts_of(rules_path)
    with open(test_path) as f:
        doc = yaml.safe_load(f)
    doc["rule_files"] = [os.path.abspath(rules_path)]
    for tg in doc.get("tests", []):
        for case in tg.get("alert_rule_test", []):
            name = case["alertname"]
            if name not in alerts:
                sys.exit("%s: no alert %s in %s" % (test_path, name, rules_path))
            static = {k: v for k, v in alerts[name].get("annotations", {}).items()
                      if k != "summary"}
            for exp in case.get("exp_alerts") or []:
                ann = exp.setdefault("exp_annotations", {})
                for k, v in static.items():
                    ann.setdefault(k, v)
    with open(out_path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=1000)


def shorten(rules_path, out_path, duration):
    with open(rules_path) as f:
        doc = yaml.safe_load(f)
    for g in doc["groups"]:
        for r in g["rules"]:
            if "alert" in r and "for" in r:
                r["for"] = duration
    with open(out_path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=1000)
    with open(out_path) as f:
        check = yaml.safe_load(f)
    orig = [r["expr"] for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"]]
    if [r["expr"] for g in check["groups"] for r in g["rules"]] != orig:
        sys.exit("shorten: the expressions changed")


def coverage(rules_path, test_paths):
    fires, quiet = set(), set()
    for p in test_paths:
        with open(p) as f:
            doc = yaml.safe_load(f)
        for tg in doc.get("tests", []):
            for case in tg.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    missing = []
    for name in sorted(alerts_of(rules_path)):
        if name not in fires:
            missing.append("%s: no case where it fires" % name)
        if name not in quiet:
            missing.append("%s: no case where it must not fire" % name)
    for m in missing:
        print(m)
    return 1 if missing else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "expand":
        expand(*sys.argv[2:5])
    elif len(sys.argv) == 5 and sys.argv[1] == "shorten":
        shorten(*sys.argv[2:5])
    elif len(sys.argv) >= 4 and sys.argv[1] == "coverage":
        sys.exit(coverage(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit(__doc__)
