"""Draw the CDK app's CloudWatch dashboards from any CloudWatch endpoint, so an SRE sees them before deploying.

The dashboards are what the synthesized template deploys: each `AWS::CloudWatch::Dashboard`'s DashboardBody is
an Fn::Join of JSON text and tokens (Ref/Fn::GetAtt of the queues, functions, buckets, ...). `resolve` turns the
tokens into the physical names of one deployment (`PhysicalIds`: the local stack's, usually), every metric
widget's metrics become GetMetricData MetricStat queries, and drawing.py draws the result.

What is left out, visibly (each widget lists its notes): metric math (the local CloudWatch, moto, evaluates
none), statistics the endpoint cannot compute (moto: only Average, Sum, Minimum, Maximum, SampleCount; a
percentile is drawn as Maximum, its upper bound), widget types other than metric and text. A plain SEARCH
(`{Namespace,Dim,...} Dim="value" MetricName="name"`, as the capacity dashboard's per-prefix widgets use) is
expanded here with ListMetrics into MetricStat queries, which is what CloudWatch does server-side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashboards.template import PhysicalIds, Resolver, TemplateError
from dashboards.widgets import Annotation, QueryKey, Search, Series, Widget, Window

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef

DEFAULT_PERIOD_SECONDS = 300
DEFAULT_STAT = "Average"
# What moto's GetMetricData computes; anything else makes it answer HTTP 500 for the whole request.
BASIC_STATISTICS = frozenset({"Average", "Sum", "Minimum", "Maximum", "SampleCount"})
# GetMetricData: at most 500 queries per call.
MAX_QUERIES_PER_CALL = 500
NOT_EVALUATED = "expression not evaluated locally"
_PERCENTILE = re.compile(r"^p\d{1,2}(\.\d+)?$", re.IGNORECASE)
_DYNAMIC_LABEL = re.compile(r"\$\{([A-Z_]+)(?:\('([^']*)'\))?\}")
_SEARCH = re.compile(r"^SEARCH\(\s*'(?P<query>[^']*)'\s*,\s*'(?P<stat>[^']+)'\s*(?:,\s*(?P<period>\d+)\s*)?\)$")
_SCHEMA = re.compile(r"^\s*\{(?P<schema>[^}]*)\}")
_TERM = re.compile(r'\s*"?(?P<key>[A-Za-z0-9_.:/-]+)"?\s*=\s*"(?P<value>[^"]*)"')


class RenderError(TemplateError):
    """The template cannot be rendered: an unknown intrinsic function, or a body that is not a dashboard."""


# --- Dashboard bodies → widgets and queries ---------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    name: str
    threshold: float | None
    comparison: str


@dataclass(frozen=True)
class Dashboard:
    name: str
    body: Mapping[str, Any]
    alarms: Mapping[str, Alarm]  # by ARN, for widgets that annotate alarms


def dashboards_in(template: Mapping[str, Any], resolver: Resolver) -> list[Dashboard]:
    """Every AWS::CloudWatch::Dashboard of the template, tokens resolved, in template order."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    alarms: dict[str, Alarm] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::CloudWatch::Alarm":
            properties = resource.get("Properties", {})
            threshold = properties.get("Threshold")
            alarms[resolver.resolve({"Fn::GetAtt": [logical_id, "Arn"]})] = Alarm(
                name=str(resolver.resolve(properties.get("AlarmName", logical_id))),
                threshold=None if threshold is None else float(resolver.resolve(threshold)),
                comparison=str(properties.get("ComparisonOperator", "")),
            )
    found: list[Dashboard] = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::CloudWatch::Dashboard":
            continue
        properties = resource.get("Properties", {})
        text = resolver.resolve(properties.get("DashboardBody", "{}"))
        try:
            body = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise RenderError(f"{logical_id}: DashboardBody is not JSON after resolving tokens: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("widgets"), list):
            raise RenderError(f"{logical_id}: DashboardBody has no widgets list")
        name = str(resolver.resolve(properties.get("DashboardName", logical_id)))
        found.append(Dashboard(name=name, body=body, alarms=alarms))
    return found


@dataclass(frozen=True)
class MetricSpec:
    """One row of a metric widget's `metrics`: a metric with its options, or an expression."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    options: Mapping[str, Any]
    expression: str | None = None

    @property
    def visible(self) -> bool:
        return bool(self.options.get("visible", True))

    def label(self) -> str:
        return str(self.options.get("label") or self.options.get("id") or self.name or self.expression or "")


def parse_metrics(rows: Sequence[Any]) -> list[MetricSpec]:
    """Dashboard metric rows, including CloudWatch's shorthand ("." repeats a field, "..." the rest)."""
    specs: list[MetricSpec] = []
    previous: list[str] = []
    for row in rows:
        items = list(row) if isinstance(row, list) else [row]
        options: dict[str, Any] = dict(items.pop()) if items and isinstance(items[-1], dict) else {}
        if not items and "expression" in options:
            specs.append(MetricSpec("", "", (), options, expression=str(options["expression"])))
            continue
        if "..." in items:  # everything of the previous row between what is given before and after it
            cut = items.index("...")
            head, tail = items[:cut], items[cut + 1 :]
            middle = previous[len(head) : max(len(head), len(previous) - len(tail))]
            items = [*head, *middle, *tail]
        fields = [previous[i] if item == "." and i < len(previous) else str(item) for i, item in enumerate(items)]
        previous = fields
        if len(fields) < 2:
            raise RenderError(f"metric row {row!r} has no namespace and metric name")
        dimensions = tuple(zip(fields[2::2], fields[3::2], strict=False))
        specs.append(MetricSpec(fields[0], fields[1], dimensions, options))
    return specs


def parse_search(expression: str, *, label: str = "") -> Search | None:
    """None for anything but `SEARCH('{Namespace,Dim,...} Key="value" ...', 'Stat'[, period])`."""
    match = _SEARCH.match(expression.strip())
    if match is None:
        return None
    query = match.group("query")
    schema_match = _SCHEMA.match(query)
    if schema_match is None:
        return None
    schema = [item.strip().strip('"') for item in schema_match.group("schema").split(",")]
    rest, position, filters = query[schema_match.end() :], 0, []
    while position < len(rest.rstrip()):
        term = _TERM.match(rest, position)
        if term is None:
            return None  # free text, OR, wildcards: CloudWatch's search language, not ours
        filters.append((term.group("key"), term.group("value")))
        position = term.end()
    metric_names = [value for key, value in filters if key == "MetricName"]
    period = match.group("period")
    return Search(
        namespace=schema[0],
        schema=tuple(schema[1:]),
        filters=tuple((key, value) for key, value in filters if key != "MetricName"),
        metric_name=metric_names[0] if metric_names else None,
        stat=match.group("stat"),
        period=int(period) if period else None,
        label=label,
    )


def plan_widget(
    index: int,
    raw: Mapping[str, Any],
    *,
    alarms: Mapping[str, Alarm],
    period_override: int | None,
    supported_stats: frozenset[str] | None,
) -> Widget:
    """What to fetch for one widget (series without data yet) and the notes on what cannot be shown."""
    properties: Mapping[str, Any] = raw.get("properties", {})
    widget = Widget(
        index=index,
        type=str(raw.get("type", "")),
        x=int(raw.get("x", 0)),
        y=int(raw.get("y", 0)),
        width=int(raw.get("width", 6)),
        height=int(raw.get("height", 6)),
        title=str(properties.get("title", "")),
        view=str(properties.get("view", "timeSeries")),
        markdown=str(properties.get("markdown", "")),
        y_axis=dict(properties.get("yAxis", {})),
        period_override=period_override,
    )
    if widget.type == "text":
        return widget
    if widget.type != "metric":
        widget.notes.append(f"{widget.type} widget: not rendered locally")
        return widget
    if properties.get("stacked"):
        widget.notes.append("stacked area drawn as lines")
    widget_stat = str(properties.get("stat", DEFAULT_STAT))
    widget_period = int(properties.get("period", DEFAULT_PERIOD_SECONDS))
    substitutes: dict[QueryKey, Series] = {}
    for spec in parse_metrics(properties.get("metrics", [])):
        if spec.expression is not None:
            search = parse_search(spec.expression, label=str(spec.options.get("label", "")))
            if search is not None and spec.visible:
                widget.searches.append(search)
            elif spec.visible:
                widget.notes.append(f"{NOT_EVALUATED}: {spec.label()} = {spec.expression}")
            continue
        if not spec.visible:
            continue  # an input of an expression; CloudWatch does not draw it either
        requested = str(spec.options.get("stat", widget_stat))
        stat = requested
        if supported_stats is not None and requested not in supported_stats:
            if not _PERCENTILE.match(requested):
                widget.notes.append(f"{spec.label()}: statistic {requested} is not served by this CloudWatch")
                continue
            stat = "Maximum"
        period = period_override or int(spec.options.get("period", widget_period))
        key = QueryKey(spec.namespace, spec.name, spec.dimensions, stat, period)
        axis = str(spec.options.get("yAxis", "left"))
        if stat != requested:
            if key in substitutes:  # p50/p90/p99 of one metric: one Maximum line stands in for all of them
                substitutes[key].requested_stat += f", {requested}"
                continue
            series = Series("", key, requested, axis, spec.options.get("color"))
            substitutes[key] = series
        else:
            series = Series(spec.label(), key, requested, axis, spec.options.get("color"))
        widget.series.append(series)
    if substitutes:
        stats = ", ".join(sorted({s.requested_stat for s in substitutes.values()}))
        widget.notes.append(f"{stats} drawn as Maximum (an upper bound): this CloudWatch computes no percentiles")
        for series in substitutes.values():
            series.label = f"{series.key.name} Maximum (for {series.requested_stat})"
    annotations = properties.get("annotations", {})
    for item in annotations.get("horizontal", []):
        for band_edge in item if isinstance(item, list) else [item]:
            if "value" in band_edge:
                widget.annotations.append(
                    Annotation(
                        float(band_edge["value"]),
                        str(band_edge.get("label", "")),
                        str(band_edge.get("yAxis", "left")),
                        band_edge.get("color"),
                    )
                )
    for arn in annotations.get("alarms", []):
        alarm = alarms.get(str(arn))
        if alarm is None or alarm.threshold is None:
            widget.notes.append(f"alarm {arn}: threshold unknown")
            continue
        widget.annotations.append(Annotation(alarm.threshold, f"{alarm.name} ({alarm.comparison})"))
    if not widget.series and not widget.searches and not any(NOT_EVALUATED in note for note in widget.notes):
        widget.notes.append("no metrics to draw")
    return widget


def expand_searches(cloudwatch: CloudWatchClient, widgets: Sequence[Widget]) -> None:
    """Each widget's SEARCH expressions → one series per matching metric (ListMetrics, then MetricStat)."""
    for widget in widgets:
        for search in widget.searches:
            kwargs: dict[str, Any] = {
                "Namespace": search.namespace,
                "Dimensions": [{"Name": key, "Value": value} for key, value in search.filters],
            }
            if search.metric_name:
                kwargs["MetricName"] = search.metric_name
            matches: list[QueryKey] = []
            period = widget.period_override or search.period or DEFAULT_PERIOD_SECONDS
            for page in cloudwatch.get_paginator("list_metrics").paginate(**kwargs):
                for metric in page.get("Metrics", []):
                    dimensions = tuple((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
                    if sorted(name for name, _ in dimensions) != sorted(search.schema):
                        continue
                    matches.append(
                        QueryKey(search.namespace, metric.get("MetricName", ""), dimensions, search.stat, period)
                    )
            for key in sorted(set(matches), key=lambda k: (k.name, k.dimensions)):
                label = search.label or f"{key.name} {' '.join(value for _, value in key.dimensions)}"
                widget.series.append(Series(label, key, search.stat, search.y_axis))
            widget.notes.append(f"SEARCH expanded locally with ListMetrics: {len(set(matches))} metrics")


# --- Fetch ------------------------------------------------------------------------------------------------


def fetch(
    cloudwatch: CloudWatchClient, keys: Iterable[QueryKey], window: Window
) -> dict[QueryKey, tuple[list[datetime], list[float]]]:
    """GetMetricData for every key (MetricStat only), batched per period and 500 queries per call."""
    by_period: dict[int, list[QueryKey]] = {}
    for key in dict.fromkeys(keys):
        by_period.setdefault(key.period, []).append(key)
    results: dict[QueryKey, tuple[list[datetime], list[float]]] = {}
    for period, period_keys in by_period.items():
        start, end = window.aligned(period)
        for first in range(0, len(period_keys), MAX_QUERIES_PER_CALL):
            batch = period_keys[first : first + MAX_QUERIES_PER_CALL]
            queries: list[MetricDataQueryTypeDef] = [
                {
                    "Id": f"q{number}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": key.namespace,
                            "MetricName": key.name,
                            "Dimensions": [{"Name": n, "Value": v} for n, v in key.dimensions],
                        },
                        "Period": period,
                        "Stat": key.stat,
                    },
                    "ReturnData": True,
                }
                for number, key in enumerate(batch)
            ]
            points: dict[str, dict[datetime, float]] = {f"q{number}": {} for number in range(len(batch))}
            token: str | None = None
            while True:
                extra: dict[str, Any] = {"NextToken": token} if token else {}
                answer = cloudwatch.get_metric_data(
                    MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending", **extra
                )
                for result in answer["MetricDataResults"]:
                    for timestamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        points[result["Id"]][timestamp.astimezone(UTC)] = float(value)
                token = answer.get("NextToken")
                if not token:
                    break
            for number, key in enumerate(batch):
                ordered = sorted(points[f"q{number}"].items())
                results[key] = ([t for t, _ in ordered], [v for _, v in ordered])
    return results


def fill(widgets: Sequence[Widget], data: Mapping[QueryKey, tuple[list[datetime], list[float]]]) -> None:
    """Put the fetched points into the series and expand dynamic labels (${AVG}, ${MAX}, ${PROP('Dim.X')}, ...)."""
    for widget in widgets:
        for series in widget.series:
            timestamps, values = data.get(series.key, ([], []))
            series.timestamps, series.values = list(timestamps), list(values)
            series.label = dynamic_label(series.label, series)


def dynamic_label(label: str, series: Series) -> str:
    values = series.values

    def number(value: float) -> str:
        return f"{value:.4g}"

    def replace(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2)
        if name == "PROP" and argument is not None:
            if argument.startswith("Dim."):
                return dict(series.key.dimensions).get(argument[4:], match.group(0))
            props = {
                "MetricName": series.key.name,
                "Namespace": series.key.namespace,
                "Period": str(series.key.period),
                "Stat": series.key.stat,
            }
            return props.get(argument, match.group(0))
        if not values:
            return "–"
        computed = {
            "AVG": sum(values) / len(values),
            "MAX": max(values),
            "MIN": min(values),
            "SUM": sum(values),
            "LAST": values[-1],
            "FIRST": values[0],
            "DATAPOINT_COUNT": float(len(values)),
        }
        return number(computed[name]) if name in computed else match.group(0)

    return _DYNAMIC_LABEL.sub(replace, label)


# --- The whole job ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    hours: float = 3.0
    period: int | None = None  # None: each widget's own period, as deployed
    supported_stats: frozenset[str] | None = BASIC_STATISTICS
    now: datetime | None = None


@dataclass(frozen=True)
class RenderedDashboard:
    name: str
    png: Path
    sidecar: Path
    widgets: int
    metric_widgets: int
    with_data: int


@dataclass(frozen=True)
class RenderResult:
    dashboards: tuple[RenderedDashboard, ...]
    html: Path
    unresolved: tuple[str, ...]


def plan_dashboard(dashboard: Dashboard, options: RenderOptions) -> list[Widget]:
    return [
        plan_widget(
            index,
            raw,
            alarms=dashboard.alarms,
            period_override=options.period,
            supported_stats=options.supported_stats,
        )
        for index, raw in enumerate(dashboard.body["widgets"])
    ]


def render(
    template: Mapping[str, Any],
    cloudwatch: CloudWatchClient,
    ids: PhysicalIds,
    out: Path,
    options: RenderOptions | None = None,
    *,
    on_step: Callable[[str], None] | None = None,
) -> RenderResult:
    """PNG + JSON sidecar per dashboard and one HTML page with all of them, into `out`."""
    from dashboards import drawing  # matplotlib: only when something is drawn

    options = options or RenderOptions()
    resolver = Resolver(template, ids)
    dashboards = dashboards_in(template, resolver)
    if not dashboards:
        raise RenderError("the template has no AWS::CloudWatch::Dashboard")
    window = Window.last(options.hours, options.now)
    out.mkdir(parents=True, exist_ok=True)
    rendered: list[RenderedDashboard] = []
    pages: list[tuple[str, list[Widget], dict[int, bytes]]] = []
    for dashboard in dashboards:
        widgets = plan_dashboard(dashboard, options)
        if on_step is not None:
            on_step(f"{dashboard.name}: ListMetrics and GetMetricData")
        expand_searches(cloudwatch, widgets)
        fill(widgets, fetch(cloudwatch, (s.key for w in widgets for s in w.series), window))
        if on_step is not None:
            on_step(f"{dashboard.name}: drawing {len(widgets)} widgets")
        png = out / f"{_file_name(dashboard.name)}.png"
        cell_pngs = drawing.draw_dashboard(dashboard.name, widgets, window, png)
        sidecar = png.with_suffix(".json")
        sidecar.write_text(
            json.dumps(
                {
                    "dashboard": dashboard.name,
                    "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
                    "period_override": options.period,
                    "widgets": [widget.to_json() for widget in widgets],
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        metric_widgets = [w for w in widgets if w.type == "metric"]
        rendered.append(
            RenderedDashboard(
                name=dashboard.name,
                png=png,
                sidecar=sidecar,
                widgets=len(widgets),
                metric_widgets=len(metric_widgets),
                with_data=sum(w.has_data for w in metric_widgets),
            )
        )
        pages.append((dashboard.name, widgets, cell_pngs))
    if on_step is not None:
        on_step("HTML page")
    html = out / "dashboards.html"
    drawing.write_html(pages, window, html)
    return RenderResult(tuple(rendered), html, tuple(sorted(resolver.unresolved)))


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "dashboard"
