"""The monitoring files in ``deploy/``: the Prometheus alerting rules and the Grafana dashboard.

Every ``ostiary_*`` name their queries use is one that ``/metrics`` exposes, as
``server.observe.metrics.exposed_names()`` lists them, and every label they select, group by
or name in a template is one that metric has (``label_names()``). PromQL is read with a
small tokenizer, not a parser: enough to find selectors, matchers and grouping clauses, and
checked itself on planted mistakes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yaml"
#: the same rules for the Prometheus Operator
PROMETHEUS_RULE = REPO_ROOT / "deploy" / "prometheus" / "prometheusrule.yaml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "ostiary.json"

#: a made-up exposition for checking the checker: sample names and their labels
PLANTED: dict[str, frozenset[str]] = {
    name: frozenset(labels)
    for name, labels in {
        "ostiary_build_info": ("version", "python"),
        "ostiary_http_requests_total": ("route", "method", "status"),
        "ostiary_http_request_duration_seconds_bucket": ("route", "method", "le"),
        "ostiary_http_request_duration_seconds_sum": ("route", "method"),
        "ostiary_tokens_issued_total": ("grant_type",),
        "ostiary_lockouts_total": ("factor",),
        "ostiary_outbox_pending": (),
        "ostiary_signing_key_age_seconds": ("alg",),
    }.items()
}
#: labels Prometheus adds to every sample it scrapes
TARGET_LABELS = frozenset({"job", "instance"})

#: the alerts issue 20 asks for, each with the metric it must watch
REQUIRED_ALERTS = {
    "OstiaryHighErrorRate": "ostiary_http_requests_total",
    "OstiaryOutboxStuck": "ostiary_outbox_oldest_pending_age_seconds",
    "OstiarySigningKeyRotationOverdue": "ostiary_signing_key_next_rotation_seconds",
    "OstiaryRefreshTokenReuseSpike": "ostiary_refresh_reuse_detected_total",
    "OstiaryReadinessFailing": "ostiary_readiness_check_ok",
}
SEVERITIES = frozenset({"critical", "warning", "info"})
RULE_KEYS = frozenset({"alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
#: the data source every panel and query goes through: the dashboard's own variable
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


#: sample name -> its labels
Exposition = Mapping[str, frozenset[str]]


@pytest.fixture(scope="module")
def exposed() -> Exposition:
    """What ``/metrics`` shows: ``exposed_names()``, each with its labels from ``label_names()``."""
    try:
        from server.observe.metrics import exposed_names, label_names
    except ImportError as error:
        pytest.fail(f"the monitoring files are checked against server.observe.metrics: {error}", pytrace=False)
    labels = label_names()
    assert set(labels) == exposed_names(), "label_names() and exposed_names() name different samples"
    return {name: frozenset(labels[name]) for name in exposed_names()}


# PromQL, as far as these checks need it.

TOKEN = re.compile(
    r"""\s+|\#[^\n]*
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<variable>\$\{\w+\}|\$\w+)
    |(?P<name>[A-Za-z_][A-Za-z0-9_:]*)
    |(?P<number>\d[\w.]*)
    |(?P<punct>=~|!~|!=|==|>=|<=|[-+*/%^<>=,:@(){}\[\]])""",
    re.VERBOSE,
)
OPENING = {"(": ")", "{": "}", "[": "]"}
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
)
GROUPINGS = frozenset({"by", "without"})
MATCHINGS = frozenset({"on", "ignoring", "group_left", "group_right"})


class Token(NamedTuple):
    kind: str
    text: str


class Selector(NamedTuple):
    metric: str
    labels: tuple[str, ...]


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position : position + 20]!r} in {expr!r}")
        if match.lastgroup is not None:
            tokens.append(Token(match.lastgroup, match.group()))
        position = match.end()
    return tokens


def bracket_problems(tokens: list[Token]) -> list[str]:
    """Each (, { and [ closed by its own kind, strings left aside."""
    stack: list[str] = []
    for token in tokens:
        if token.kind != "punct":
            continue
        if token.text in OPENING:
            stack.append(OPENING[token.text])
        elif token.text in OPENING.values() and (not stack or stack.pop() != token.text):
            return [f"unbalanced {token.text!r}"]
    return [f"unclosed, expected {''.join(reversed(stack))!r}"] if stack else []


def closing(tokens: list[Token], start: int) -> int:
    """The index of the bracket that closes the one at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index].text in OPENING:
            depth += 1
        elif tokens[index].text in OPENING.values():
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unclosed bracket")


def names_in(tokens: list[Token], start: int) -> tuple[list[str], int]:
    """The names in the parenthesised list at ``start``, and the index after it."""
    end = closing(tokens, start)
    return [token.text for token in tokens[start + 1 : end] if token.kind == "name"], end + 1


def selectors(tokens: list[Token]) -> Iterator[Selector]:
    """Each ``ostiary_*`` selector with the label names of its matchers."""
    for index, token in enumerate(tokens):
        if token.kind != "name" or not token.text.startswith("ostiary_"):
            continue
        labels: list[str] = []
        if index + 1 < len(tokens) and tokens[index + 1].text == "{":
            end = closing(tokens, index + 1)
            labels = [
                inner.text
                for inner, after in zip(tokens[index + 2 : end], tokens[index + 3 : end], strict=False)
                if inner.kind == "name" and after.text in ("=", "!=", "=~", "!~")
            ]
        yield Selector(token.text, tuple(labels))


def groupings(tokens: list[Token]) -> Iterator[tuple[list[str], list[Token]]]:
    """Each aggregation's ``by``/``without`` labels with the expression it aggregates, in
    both orders PromQL takes: ``sum by (l) (expr)`` and ``sum (expr) by (l)``."""
    for index, token in enumerate(tokens[:-1]):
        if token.kind != "name" or token.text not in AGGREGATIONS:
            continue
        after = tokens[index + 1].text
        if after in GROUPINGS:
            labels, body = names_in(tokens, index + 2)
            yield labels, tokens[body : closing(tokens, body) + 1]
        elif after == "(":
            end = closing(tokens, index + 1)
            if end + 1 < len(tokens) and tokens[end + 1].text in GROUPINGS:
                yield names_in(tokens, end + 2)[0], tokens[index + 1 : end + 1]


def promql_problems(expr: str, exposed: Exposition) -> list[str]:
    """What is wrong with ``expr``: unknown metrics, labels a metric lacks, unbalanced brackets."""
    try:
        tokens = tokenize(expr)
    except ValueError as error:
        return [str(error)]
    problems = bracket_problems(tokens)
    if problems:
        return problems

    def labels_of(metric: str) -> frozenset[str]:
        return exposed.get(metric, frozenset()) | TARGET_LABELS

    found = list(selectors(tokens))
    if not found:
        problems.append("uses no ostiary_* metric")
    for metric, labels in found:
        if metric not in exposed:
            problems.append(f"{metric} is not exposed")
        problems += [f"{metric} has no label {label!r}" for label in labels if label not in labels_of(metric)]
    for labels, body in groupings(tokens):
        metrics = {selector.metric for selector in selectors(body)}
        if not metrics:
            problems.append(f"groups by {labels} over no ostiary_* metric")
            continue
        shared = frozenset.intersection(*(labels_of(metric) for metric in metrics))
        problems += [
            f"groups by {label!r}, which not all of {sorted(metrics)} have" for label in labels if label not in shared
        ]
    every = frozenset().union(*(labels_of(selector.metric) for selector in found))
    for index, token in enumerate(tokens[:-1]):
        if token.text in MATCHINGS and tokens[index + 1].text == "(":
            problems += [
                f"matches on {label!r}, which no metric has"
                for label in names_in(tokens, index + 1)[0]
                if label not in every
            ]
    return problems


def label_problems(labels: list[str], expr: str, exposed: Exposition) -> list[str]:
    """Labels (of a template, an annotation or a legend) that no metric of ``expr`` has."""
    metrics = {selector.metric for selector in selectors(tokenize(expr))}
    every = TARGET_LABELS.union(*(exposed.get(metric, frozenset()) for metric in metrics))
    return [f"names the label {label!r}, which no metric of {expr!r} has" for label in labels if label not in every]


# The files.


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}, f"a rules file has only groups: {sorted(document)}"
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def query_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in query_panels() for target in panel["targets"]]


def families(names: frozenset[str]) -> set[str]:
    """The exposed names with each histogram's _bucket, _sum and _count as one."""
    histograms = {name.removesuffix("_bucket") for name in names if name.endswith("_bucket")}
    return {
        next((base for base in histograms if name in {f"{base}_bucket", f"{base}_sum", f"{base}_count"}), name)
        for name in names
    }


# The checker itself.


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(ostiary_http_requests_totl[5m]))",
        'ostiary_lockouts_total{reason="password"}',
        "sum by (routes) (rate(ostiary_http_requests_total[5m]))",
        "sum(rate(ostiary_http_requests_total[5m])) by (grant_type)",
        "sum without (alg) (ostiary_outbox_pending)",
        "histogram_quantile(0.9, sum by (le) (rate(ostiary_http_request_duration_seconds_sum[5m])))",
        "sum by (route) (rate(ostiary_http_requests_total[5m]) + rate(ostiary_tokens_issued_total[5m]))",
        "ostiary_outbox_pending > on (check) ostiary_db_pool_connections_in_use",
        "sum(rate(ostiary_http_requests_total[5m])",
        'ostiary_signing_key_age_seconds{alg="RS256"]',
        "sum(rate(up[5m]))",
    ],
)
def test_the_checker_finds_what_was_planted(expr: str) -> None:
    assert promql_problems(expr, PLANTED), f"no problem found in {expr!r}"


def test_the_checker_passes_what_is_right() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(ostiary_http_request_duration_seconds_bucket{job=~"$job", '
        'route!~"/readyz|/healthz"}[$__rate_interval]))) > on () group_left count(ostiary_build_info) by (version)'
    )
    assert promql_problems(expr, PLANTED) == []


def test_a_template_may_name_only_the_labels_of_its_metrics() -> None:
    expr = "sum by (factor) (rate(ostiary_lockouts_total[5m]))"
    assert label_problems(["factor", "instance"], expr, PLANTED) == []
    assert label_problems(["reason"], expr, PLANTED)


# The alerts.


def test_every_alert_uses_exposed_metrics_and_their_labels(exposed: Exposition) -> None:
    problems = {
        rule["alert"]: promql_problems(rule["expr"], exposed)
        + label_problems(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations", {}))), rule["expr"], exposed)
        for rule in alert_rules()
    }
    assert {alert: found for alert, found in problems.items() if found} == {}


def test_the_alerts_the_issue_asks_for_exist() -> None:
    watched = {
        rule["alert"]: {selector.metric for selector in selectors(tokenize(rule["expr"]))} for rule in alert_rules()
    }
    for alert, metric in REQUIRED_ALERTS.items():
        assert alert in watched, f"{ALERTS.name} has no alert {alert}"
        assert metric in watched[alert], f"{alert} does not watch {metric}"


def test_every_alert_waits_and_says_how_bad_and_what() -> None:
    rules = alert_rules()
    names = [rule.get("alert") for rule in rules]
    assert len(set(names)) == len(names), "alert names repeat"
    for rule in rules:
        assert set(rule) <= RULE_KEYS, f"{rule.get('alert')}: unknown keys {sorted(set(rule) - RULE_KEYS)}"
        assert rule.get("alert"), f"not an alerting rule: {rule}"
        assert DURATION.fullmatch(str(rule.get("for", ""))), f"{rule['alert']}: `for` is not a duration"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{rule['alert']}: severity"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), f"{rule['alert']}: summary, description"


def test_the_prometheus_operator_gets_the_same_rules() -> None:
    wrapped = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert (wrapped["apiVersion"], wrapped["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert wrapped["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8")), (
        f"{PROMETHEUS_RULE.name} must hold the groups of {ALERTS.name}, unchanged"
    )


# The dashboard.


def test_every_dashboard_query_uses_exposed_metrics_and_their_labels(exposed: Exposition) -> None:
    problems: dict[str, list[str]] = {}
    for panel in query_panels():
        for target in panel["targets"]:
            found = promql_problems(target["expr"], exposed)
            found += label_problems(
                re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")), target["expr"], exposed
            )
            if found:
                problems[f"{panel['title']} {target['refId']}"] = found
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            if query.startswith("label_values("):
                # label_values(selector, label): the selector is PromQL, the label one of its metric's
                selector, _, label = query.removeprefix("label_values(").removesuffix(")").rpartition(",")
                found = promql_problems(selector, exposed) + label_problems([label.strip()], selector, exposed)
            else:
                found = promql_problems(query, exposed)
            if found:
                problems[f"variable {variable['name']}"] = found
    assert problems == {}


def test_the_dashboard_shows_every_metric(exposed: Exposition) -> None:
    shown = {selector.metric for expr in dashboard_queries() for selector in selectors(tokenize(expr))}
    assert families(frozenset(exposed)) - families(frozenset(shown)) == set()


def test_every_panel_has_its_own_id_a_place_and_queries() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, f"{panel['title']} is wider than the dashboard"
        for cell in (
            (x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])
        ):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]
        if panel["type"] == "row":
            assert not panel.get("targets") and not panel.get("panels"), f"row {panel['title']} holds queries"
            continue
        references = [target["refId"] for target in panel.get("targets", [])]
        assert references, f"{panel['title']} has no query"
        assert len(set(references)) == len(references), f"{panel['title']}: refIds repeat"


def test_every_query_goes_through_the_datasource_variable() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in query_panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
    assert all(variable.get("datasource", DATASOURCE) == DATASOURCE for variable in variables.values())
