#!/usr/bin/env python3
"""promql_check.py - checks that the PromQL of a Grafana dashboard and of
Prometheus alert rules only names metrics that the given scrapes export, with
labels those metrics carry.

usage: promql_check.py --metrics SCRAPE [--metrics SCRAPE]... [--dashboard JSON]...
                       [--rules YAML]... [--keda YAML]... [--promtool PROMTOOL]

For every query (a panel target, a template variable's label_values(), a rule's
expr, the query of a KEDA ScaledObject's prometheus trigger) it checks:
  - each metric name is a sample name of some scrape (histogram series are
    NAME_bucket, NAME_sum, NAME_count), or Prometheus's own `up`;
  - each label in a selector ({label=...}) and in by/without/on/ignoring/
    group_left/group_right is carried by the metrics it applies to (an
    aggregation's argument; both sides of a binary operator);
  - each label a legend ({{label}}) or an annotation ({{ $labels.label }})
    prints is one the query's result has;
and, with --promtool, that each query parses: the dashboard's and KEDA's
queries, with Grafana's variables replaced, are checked as recording rules by
`promtool check rules`.
Prometheus adds `job` and `instance` to every scraped series: they are always
allowed. Prints one line per problem and exits 1 if there is any.
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile

from prometheus_client.parser import text_string_to_metric_families
import yaml

TARGET_LABELS = {"job", "instance"}
# What Prometheus records about each scrape itself.
PROMETHEUS_OWN = {"up": TARGET_LABELS}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}
# Grafana's variables, replaced by what they stand for in a query.
GRAFANA_VARS = [("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h")]

TOKEN = re.compile(r'''
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])
  | (?P<space>\s+)
''', re.VERBOSE)


def grafana_to_promql(expr):
    for var, value in GRAFANA_VARS:
        expr = expr.replace(var, value)
    return re.sub(r'\$\{?[A-Za-z_]\w*\}?', '.*', expr)


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError("cannot read %r" % expr[pos:pos + 20])
        pos = m.end()
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group()))
    return tokens


def closing(tokens, i):
    """Index of the ')' or '}' that closes the bracket at tokens[i]."""
    pairs = {"(": ")", "{": "}"}
    depth, open_ = 0, tokens[i][1]
    for j in range(i, len(tokens)):
        if tokens[j][1] == open_:
            depth += 1
        elif tokens[j][1] == pairs[open_]:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced %r" % open_)


class Query:
    """The metrics, labels and groupings of one PromQL expression."""

    def __init__(self, expr):
        self.tokens = tokenize(expr)
        self.selectors = []   # (token index, metric, [labels in its matchers])
        self.groupings = []   # (keyword, [labels], (first, last) token span it applies to)
        self._scan()

    def _scan(self):
        t = self.tokens
        i = 0
        while i < len(t):
            kind, text = t[i]
            nxt = t[i + 1][1] if i + 1 < len(t) else None
            if kind == "ident" and text in GROUPING and nxt == "(":
                end = closing(t, i + 1)
                labels = [x for k, x in t[i + 2:end] if k == "ident"]
                self.groupings.append((text, labels, self._scope(i, end)))
                i = end + 1
                continue
            if kind == "ident" and text not in KEYWORDS and (
                    nxt == "(" or (text in AGGREGATIONS and nxt in ("by", "without"))):
                i += 1  # a function or an aggregation
                continue
            if kind == "ident" and text not in KEYWORDS:
                labels = []
                if nxt == "{":
                    end = closing(t, i + 1)
                    inner = t[i + 2:end]
                    labels = [inner[j][1] for j in range(len(inner))
                              if inner[j][0] == "ident" and j + 1 < len(inner)
                              and inner[j + 1][1] in ("=", "!=", "=~", "!~")]
                    self.selectors.append((i, text, labels))
                    i = end + 1
                    continue
                self.selectors.append((i, text, labels))
            i += 1

    def _scope(self, at, end):
        """The tokens a grouping applies to: an aggregation's argument
        (`sum by (x) (ARG)` or `sum (ARG) by (x)`), or, for on/ignoring and
        the group modifiers, the whole expression (both operands)."""
        t = self.tokens
        keyword = t[at][1]
        if keyword in ("by", "without"):
            if end + 1 < len(t) and t[end + 1][1] == "(":
                return (end + 1, closing(t, end + 1))
            if at > 0 and t[at - 1][1] == ")":  # sum (ARG) by (x)
                depth = 0
                for j in range(at - 1, -1, -1):
                    depth += {")": 1, "(": -1}.get(t[j][1], 0)
                    if depth == 0:
                        return (j, at - 1)
        return (0, len(t) - 1)

    def metrics_in(self, span):
        return [m for i, m, _ in self.selectors if span[0] <= i <= span[1]]

    def result_labels(self, exported):
        """Labels the query's result has: the outermost by() of an
        aggregation (without `le` under histogram_quantile), else those of
        its first metric."""
        t = self.tokens
        if self.groupings:
            keyword, labels, span = min(self.groupings, key=lambda g: g[2][0])
            if keyword == "by" and (t[0][1] in AGGREGATIONS or t[0][1] == "histogram_quantile"):
                out = set(labels)
                if t[0][1] == "histogram_quantile":
                    out.discard("le")
                return out
        if not self.selectors:
            return set()
        return exported.get(self.selectors[0][1], set()) | TARGET_LABELS


def read_scrapes(paths):
    """Sample name -> labels, over every scrape."""
    exported = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for family in text_string_to_metric_families(f.read()):
                for s in family.samples:
                    exported.setdefault(s.name, set()).update(s.labels)
    for name, labels in PROMETHEUS_OWN.items():
        exported.setdefault(name, set()).update(labels)
    return exported


def check_query(where, expr, exported, printed):
    """Problems of one query; @p printed: labels its legend or annotations print."""
    problems = []
    try:
        q = Query(expr)
    except ValueError as e:
        return ["%s: %s" % (where, e)]
    for _, metric, labels in q.selectors:
        if metric not in exported:
            problems.append("%s: %s is not exported" % (where, metric))
            continue
        for label in labels:
            if label not in exported[metric] | TARGET_LABELS:
                problems.append("%s: %s has no label %s" % (where, metric, label))
    for keyword, labels, span in q.groupings:
        for metric in q.metrics_in(span):
            for label in labels:
                if metric in exported and label not in exported[metric] | TARGET_LABELS:
                    problems.append("%s: %s (%s) has no label %s" % (where, metric, keyword, label))
    result = q.result_labels(exported)
    for label in printed:
        if label not in result:
            problems.append("%s: prints {{%s}}, which the result (%s) lacks" %
                            (where, label, ", ".join(sorted(result)) or "no labels"))
    return problems


def dashboard_queries(path):
    """(where, expr, printed labels) of every target and template variable."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    for p in panels:
        for t in p.get("targets", []):
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            yield ("panel %r %s" % (p.get("title"), t.get("refId")), grafana_to_promql(t["expr"]),
                   legend)
    for v in dash.get("templating", {}).get("list", []):
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.match(r"\s*label_values\((.*),\s*(\w+)\)\s*$", query or "")
        if v.get("type") == "query" and m:
            yield ("variable %r" % v["name"], grafana_to_promql(m.group(1)), {m.group(2)})


def rule_queries(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            printed = set()
            for text in rule.get("annotations", {}).values():
                printed |= set(re.findall(r"\$labels\.(\w+)", text))
            yield ("rule %s" % name, rule["expr"], printed)


def keda_queries(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        if doc.get("kind") != "ScaledObject":
            continue
        for trigger in doc["spec"].get("triggers", []):
            if trigger.get("type") == "prometheus":
                yield ("ScaledObject %s" % doc["metadata"]["name"], trigger["metadata"]["query"], set())


def promtool_parses(queries, promtool):
    """Each query as a recording rule, through `promtool check rules`."""
    rules = {"groups": [{"name": "queries", "rules": [
        {"record": "query_%d" % i, "expr": expr} for i, (_, expr, _) in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        return ["promtool does not parse the dashboard's queries: " + (r.stdout + r.stderr).strip()]
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", action="append", required=True)
    ap.add_argument("--dashboard", action="append", default=[])
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--keda", action="append", default=[])
    ap.add_argument("--promtool")
    args = ap.parse_args()
    exported = read_scrapes(args.metrics)
    problems, checked, names = [], 0, set()
    dash_queries = [q for path in args.dashboard for q in dashboard_queries(path)]
    dash_queries += [q for path in args.keda for q in keda_queries(path)]
    for where, expr, printed in dash_queries + [q for p in args.rules for q in rule_queries(p)]:
        problems += check_query(where, expr, exported, printed)
        checked += 1
        try:
            names |= {m for _, m, _ in Query(expr).selectors}
        except ValueError:
            pass
    if args.promtool and dash_queries:
        problems += promtool_parses(dash_queries, args.promtool)
    for p in problems:
        print(p)
    print("%d queries naming %d metrics: %s" % (checked, len(names),
          "%d problem(s)" % len(problems) if problems else "every metric and label is exported"))
    return 1 if problems or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
