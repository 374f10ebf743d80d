"""Just enough PromQL reading to check a dashboard against the series that exist: the metric
names an expression selects, with the label names it filters on and groups by."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

import models.metrics

# Functions, aggregations and keywords: words that are not series names.
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<range>\[[^\]]*\])"
    r"|(?P<matchers>\{[^}]*\})"
    r"|(?P<word>[A-Za-z_:][\w:]*)"
    r"|(?P<other>\S)"
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


@dataclass
class Selector:
    metric: str
    labels: set[str] = field(default_factory=set)


@dataclass
class Expression:
    selectors: list[Selector]
    grouping: set[str]


def parse(expr: str) -> Expression:
    grouping = {
        label.strip()
        for match in _GROUPING.finditer(expr)
        for label in match.group(2).split(",")
        if label.strip()
    }
    rest = _GROUPING.sub(" ", expr)
    # Label values may hold anything ({{ }}, braces, words): blank them before tokenising.
    rest = _STRING.sub('""', rest)
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(rest)]
    selectors: list[Selector] = []
    for i, (kind, text) in enumerate(tokens):
        if kind == "word":
            following = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
            if following[1] == "(" or text in _KEYWORDS:
                continue  # a function or an aggregation
            selector = Selector(text)
            if following[0] == "matchers":
                selector.labels = set(_MATCHER.findall(following[1]))
            selectors.append(selector)
        elif kind == "matchers" and (i == 0 or tokens[i - 1][0] != "word"):
            raise ValueError(f"a selector without a metric name in {expr!r}")
    return Expression(selectors, grouping)


def leadflow_series() -> dict[str, set[str]]:
    """Every series name models/metrics.py produces, with its label names: counters as
    `<name>_total`, histograms as `<name>_bucket|_sum|_count` (`le` on buckets), gauges as is."""
    series: dict[str, set[str]] = {}
    for value in vars(models.metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        if isinstance(value, Counter):
            series[f"{name}_total"] = labels
        elif isinstance(value, Histogram):
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        elif isinstance(value, Gauge):
            series[name] = labels
        else:  # a new metric type in models/metrics.py: teach this function its names
            raise TypeError(f"{name}: {type(value).__name__}")
    return series


# Documented Temporal series the dashboard may use, with their labels.
# The server's (temporalio/temporal common/metrics/metric_defs.go; the matching service's
# task-queue gauges, labelled taskqueue and task_type):
TEMPORAL_SERVER_SERIES = {
    "approximate_backlog_count": {"namespace", "taskqueue", "task_type", "partition"},
    "approximate_backlog_age_seconds": {"namespace", "taskqueue", "task_type", "partition"},
}
# The Python SDK's, as workers/temporal_metrics.py exports them (unit suffix, durations in
# seconds): https://docs.temporal.io/references/sdk-metrics
_SDK_LABELS = {"namespace", "task_queue", "workflow_type", "activity_type", "worker_type", "le"}
TEMPORAL_SDK_SERIES = {
    f"temporal_{name}_seconds_bucket": _SDK_LABELS
    for name in (
        "workflow_task_schedule_to_start_latency",
        "activity_schedule_to_start_latency",
        "workflow_task_execution_latency",
        "activity_execution_latency",
    )
}
# Labels Prometheus adds to every series it scrapes (deploy/prometheus/prometheus.yml).
TARGET_LABELS = {"job", "instance", "component", "task_queue"}


def known_series() -> dict[str, set[str]]:
    return {**leadflow_series(), **TEMPORAL_SERVER_SERIES, **TEMPORAL_SDK_SERIES}


def problems(expr: str, known: dict[str, set[str]]) -> list[str]:
    """What in `expr` names a series or a label that does not exist."""
    parsed = parse(expr)
    found: list[str] = []
    if not parsed.selectors:
        found.append(f"selects no series: {expr}")
    labels_in_scope = set(TARGET_LABELS)
    for selector in parsed.selectors:
        if selector.metric not in known:
            found.append(f"unknown series {selector.metric}")
            continue
        labels_in_scope |= known[selector.metric]
        unknown = selector.labels - known[selector.metric] - TARGET_LABELS
        if unknown:
            found.append(f"{selector.metric} has no label(s) {sorted(unknown)}")
    if parsed.grouping - labels_in_scope:
        found.append(f"groups by unknown label(s) {sorted(parsed.grouping - labels_in_scope)}")
    return found
