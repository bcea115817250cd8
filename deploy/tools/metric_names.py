#!/usr/bin/env python3
"""Metric names that deploy/ uses, and metric names that a /metrics page exposes.

    python3 deploy/tools/metric_names.py              # every name deploy/ uses, with where
    python3 deploy/tools/metric_names.py --check URL...  # compare with live /metrics pages

The alert rules (deploy/prometheus/*.rules.yml) and the Grafana dashboards
(deploy/grafana/*.json) may only use names that the TECL processes expose; the deploy tests
compare this set with the source code and with the /metrics pages of a running local cluster.

PromQL is not parsed fully: string literals, label matchers, ranges, grouping clauses, numbers and
durations are removed, and the identifiers left that are not followed by "(" and are not
keywords are metric names. Grafana variables ($var, ${var}, $__rate_interval) are replaced first.
"""
import argparse
import json
import pathlib
import re
import sys
import urllib.request

import yaml

DEPLOY_DIR = pathlib.Path(__file__).resolve().parent.parent

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "Inf", "NaN", "atan2", "start", "end",
}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)"
                     r"(?:ms|s|m|h|d|w|y)*(?![\w:])")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+|\[\[\w+\]\]")


def promql_metric_names(expr):
    """The metric names an expression selects."""
    text = _GRAFANA_VARIABLE.sub(lambda m: "1m" if m.group(0).startswith("$__") else "x", expr)
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    text = _STRING.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    # Nested ranges (subqueries) need more than one pass.
    while _RANGES.search(text):
        text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def grafana_query_names(query):
    """Names in a Grafana template variable query (label_values(metric, label), query_result(expr))."""
    match = re.fullmatch(r"\s*label_values\s*\((.*)\)\s*", query, re.S)
    if match:
        arguments = match.group(1)
        if "," not in arguments:
            return set()  # label_values(label): no metric
        return promql_metric_names(arguments.rsplit(",", 1)[0])
    match = re.fullmatch(r"\s*(?:query_result|metrics)\s*\((.*)\)\s*", query, re.S)
    if match:
        return promql_metric_names(match.group(1))
    return promql_metric_names(query)


def rule_files(deploy_dir=DEPLOY_DIR):
    return sorted((deploy_dir / "prometheus").glob("*.rules.yml"))


def dashboard_files(deploy_dir=DEPLOY_DIR):
    return sorted((deploy_dir / "grafana").glob("*.json"))


def _dashboard_panels(panels):
    for panel in panels:
        yield panel
        yield from _dashboard_panels(panel.get("panels", []))


def used_names(deploy_dir=DEPLOY_DIR):
    """{metric name: [where it is used]} over the alert rules and the dashboards."""
    used = {}

    def add(names, where):
        for name in names:
            used.setdefault(name, []).append(where)

    for path in rule_files(deploy_dir):
        document = yaml.safe_load(path.read_text())
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                label = rule.get("alert") or rule.get("record")
                add(promql_metric_names(str(rule["expr"])), f"{path.name}: {label}")
    for path in dashboard_files(deploy_dir):
        dashboard = json.loads(path.read_text())
        for panel in _dashboard_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if "expr" in target:
                    add(promql_metric_names(target["expr"]), f"{path.name}: {panel.get('title')}")
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable.get("query")
                if isinstance(query, dict):
                    query = query.get("query", "")
                add(grafana_query_names(query or ""), f"{path.name}: variable {variable.get('name')}")
    return used


def exposed_names(exposition):
    """Sample names and family names of a Prometheus text exposition (0.0.4)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            match = _IDENTIFIER.match(line)
            if match:
                names.add(match.group(0))
    return names


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", nargs="+", metavar="URL",
                        help="/metrics URLs whose union must expose every used name")
    args = parser.parse_args(argv)
    used = used_names()
    if not args.check:
        for name in sorted(used):
            print(f"{name}\t{'; '.join(sorted(set(used[name])))}")
        return 0
    exposed = set()
    for url in args.check:
        with urllib.request.urlopen(url, timeout=10) as response:
            exposed |= exposed_names(response.read().decode())
    missing = sorted(set(used) - exposed)
    for name in missing:
        print(f"not exposed: {name} (used by {'; '.join(sorted(set(used[name])))})")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
