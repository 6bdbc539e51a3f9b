"""Draw the CDK app's CloudWatch dashboards from any CloudWatch endpoint, so an SRE sees them before deploying.

The dashboards are what the synthesized template deploys: each `AWS::CloudWatch::Dashboard`'s DashboardBody is
an Fn::Join of JSON text and tokens (Ref/Fn::GetAtt of the queues, functions, buckets, ...). `resolve` turns the
tokens into the physical names of one deployment (`PhysicalIds`: the local stack's, usually), every metric
widget's metrics become GetMetricData MetricStat queries, and drawing.py draws the result.

Metric math is evaluated here (dashboards/metric_math.py), per timestamp over the fetched series of the
widget's metric ids, since the local CloudWatch (moto) evaluates none; an expression using a function the
evaluator does not have is left out with a note. A plain SEARCH (`{Namespace,Dim,...} Dim="value"
MetricName="name"`, as the capacity dashboard's per-prefix widgets use) is expanded here with ListMetrics into
MetricStat queries, which is what CloudWatch does server-side.

What is left out, visibly (each widget lists its notes): statistics the endpoint cannot compute (moto: only
Average, Sum, Minimum, Maximum, SampleCount; a percentile is drawn as Maximum, its upper bound), widget types
other than metric and text. Rendered from a local endpoint, text widgets' links to the AWS console become the
local resource they name (`local_links`); the HTML page lists the alarms with their runbooks as local files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from dashboards import metric_math
from dashboards.template import PhysicalIds, Resolver, TemplateError
from dashboards.widgets import AlarmLine, Annotation, MathRow, QueryKey, Search, Series, Widget, Window

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
_RUNBOOK = re.compile(r"Runbook:\s*(\S+)")
_CONSOLE_LINK = re.compile(
    r"\[(?P<text>[^\]]*)\]\((?P<url>https://[^)\s]*console\.(?:aws\.amazon\.com|amazonaws\.cn)[^)\s]*)\)"
)
# What a console link's fragment names: a queue URL, a function, a table, a topic ARN.
_CONSOLE_TARGETS = (
    re.compile(r"#/queues/(?P<id>[^)\s]+)$"),
    re.compile(r"#/functions/(?P<id>[^/?)\s]+)"),
    re.compile(r"#tables:selected=(?P<id>[^;&)\s]+)"),
    re.compile(r"#/topic/(?P<id>[^)\s]+)$"),
)
_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
# The repository's runbooks, which alarm descriptions name relative to the repository root.
REPOSITORY = Path(__file__).resolve().parents[1]


class RenderError(TemplateError):
    """The template cannot be rendered: an unknown intrinsic function, or a body that is not a dashboard."""


# --- Dashboard bodies → widgets and queries ---------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    name: str
    threshold: float | None
    comparison: str
    description: str = ""

    @property
    def runbook(self) -> str | None:
        """The `Runbook: <link>` cdk-monitoring-constructs appends to the description."""
        match = _RUNBOOK.search(self.description)
        return match.group(1) if match else None


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
                description=str(resolver.resolve(properties.get("AlarmDescription", ""))),
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
    console_links: bool = True,
) -> Widget:
    """What to fetch for one widget (series without data yet) and the notes on what cannot be shown.

    Without `console_links` (a render of the local stack), links to the AWS console in text widgets become their
    text and the local resource they name (see `local_links`).
    """
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
        if not console_links:
            widget.markdown = local_links(widget.markdown)
        return widget
    if widget.type != "metric":
        widget.notes.append(f"{widget.type} widget: not rendered locally")
        return widget
    if properties.get("stacked"):
        widget.notes.append("stacked area drawn as lines")
    widget_stat = str(properties.get("stat", DEFAULT_STAT))
    widget_period = int(properties.get("period", DEFAULT_PERIOD_SECONDS))
    substitutes: dict[QueryKey, Series] = {}
    specs = parse_metrics(properties.get("metrics", []))
    taken = {str(spec.options["id"]) for spec in specs if spec.options.get("id")}
    numbers = {"m": 0, "e": 0}
    for spec in specs:
        kind = "m" if spec.expression is None else "e"
        numbers[kind] += 1
        identifier = str(spec.options.get("id") or _free_id(kind, numbers[kind], taken))
        axis = str(spec.options.get("yAxis", "left"))
        if spec.expression is not None:
            search = parse_search(spec.expression, label=str(spec.options.get("label", "")))
            if search is not None:
                if spec.visible:
                    widget.searches.append(search)
                continue
            widget.expressions.append(
                MathRow(
                    id=identifier,
                    expression=spec.expression,
                    label=spec.label(),
                    visible=spec.visible,
                    period=period_override or int(spec.options.get("period", widget_period)),
                    y_axis=axis,
                    color=spec.options.get("color"),
                )
            )
            continue
        requested = str(spec.options.get("stat", widget_stat))
        stat = requested
        if supported_stats is not None and requested not in supported_stats:
            if not _PERCENTILE.match(requested):
                widget.notes.append(f"{spec.label()}: statistic {requested} is not served by this CloudWatch")
                continue
            stat = "Maximum"
        period = period_override or int(spec.options.get("period", widget_period))
        key = QueryKey(spec.namespace, spec.name, spec.dimensions, stat, period)
        widget.inputs[identifier] = key
        if not spec.visible:  # an input of an expression; CloudWatch does not draw it either
            if stat != requested:
                widget.notes.append(f"{identifier}: {requested} read as Maximum (an upper bound)")
            continue
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
    if not widget.series and not widget.searches and not any(row.visible for row in widget.expressions):
        widget.notes.append("no metrics to draw")
    return widget


def local_links(markdown: str) -> str:
    """`[Work queue](https://…console.aws.amazon.com/sqs/…#/queues/<url>)` → `Work queue (local: <url>)`.

    A console link built from a local stack's names opens the AWS console on a queue URL at 127.0.0.1, or on a
    deployed function that happens to share the local one's name. Locally the useful thing is the resource's own
    identity: the queue URL, function, table or topic ARN that `aws --endpoint-url …` and imgops commands take,
    as text. A console link naming nothing recognisable keeps only its text. Other links are left alone.
    """

    def replace(link: re.Match[str]) -> str:
        for pattern in _CONSOLE_TARGETS:
            found = pattern.search(link.group("url"))
            if found is not None:
                return f"{link.group('text')} (local: {unquote(found.group('id'))})"
        return link.group("text")

    return _CONSOLE_LINK.sub(replace, markdown)


def is_aws_endpoint(cloudwatch: CloudWatchClient) -> bool:
    """Whether the client talks to AWS itself (console links then lead somewhere real)."""
    host = urlparse(str(cloudwatch.meta.endpoint_url)).hostname or ""
    return host.endswith(_AWS_HOSTS)


def runbook_href(runbook: str) -> str | None:
    """A link for an alarm's runbook: an http(s) URL as is, a file URL or a repository path if the file exists."""
    if runbook.startswith(("https://", "http://")):
        return runbook
    if runbook.startswith("file://"):
        return runbook if Path(urlparse(runbook).path).is_file() else None
    path = (REPOSITORY / runbook).resolve()
    return path.as_uri() if path.is_relative_to(REPOSITORY) and path.is_file() else None


def _free_id(prefix: str, number: int, taken: set[str]) -> str:
    """The id the CloudWatch console gives a row without one (m1, m2, ... for metrics; e1, ... for expressions)."""
    while f"{prefix}{number}" in taken:
        number += 1
    taken.add(f"{prefix}{number}")
    return f"{prefix}{number}"


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
                label = search.label.strip() or f"{key.name} {' '.join(value for _, value in key.dimensions)}"
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


def fetch_keys(widgets: Iterable[Widget]) -> list[QueryKey]:
    """What GetMetricData must return for these widgets: the drawn metrics and every input of an expression."""
    keys: list[QueryKey] = []
    for widget in widgets:
        keys += [series.key for series in widget.series if series.fetched]
        if widget.expressions:
            keys += widget.inputs.values()
    return list(dict.fromkeys(keys))


def fill(widgets: Sequence[Widget], data: Mapping[QueryKey, tuple[list[datetime], list[float]]]) -> None:
    """Put the fetched points into the series and expand dynamic labels (${AVG}, ${MAX}, ${PROP('Dim.X')}, ...)."""
    for widget in widgets:
        for series in widget.series:
            if not series.fetched:
                continue
            timestamps, values = data.get(series.key, ([], []))
            series.timestamps, series.values = list(timestamps), list(values)
            series.label = dynamic_label(series.label, series)


def evaluate_math(
    widgets: Sequence[Widget], data: Mapping[QueryKey, tuple[list[datetime], list[float]]], window: Window
) -> None:
    """Each visible metric math row → its series (one per member for an array), evaluated over the fetched data.

    Rows may read metrics and other rows of the same widget by id, as CloudWatch allows; a row that cannot be
    evaluated (an unsupported function, an unknown id, a cycle) gets a note instead of a line.
    """
    for widget in widgets:
        if widget.expressions:
            _evaluate_widget(widget, data, window)


def _evaluate_widget(
    widget: Widget, data: Mapping[QueryKey, tuple[list[datetime], list[float]]], window: Window
) -> None:
    fetched = {
        identifier: metric_math.TimeSeries.of(dict(zip(*data.get(key, ([], [])), strict=True)), key.period)
        for identifier, key in widget.inputs.items()
    }
    rows = {row.id: row for row in widget.expressions}
    results: dict[str, metric_math.Value] = {}
    running: set[str] = set()

    def lookup(identifier: str) -> metric_math.TimeSeries:
        if identifier in fetched:
            return fetched[identifier]
        if identifier not in rows:
            raise metric_math.MathError(f"no metric or expression with id {identifier!r}")
        value = value_of(identifier)
        if not isinstance(value, metric_math.TimeSeries):
            raise metric_math.MathError(f"{identifier} is not one time series")
        return value

    def value_of(identifier: str) -> metric_math.Value:
        if identifier not in results:
            if identifier in running:
                raise metric_math.MathError(f"{identifier} depends on itself")
            running.add(identifier)
            try:
                results[identifier] = metric_math.evaluate(
                    rows[identifier].expression, lookup, window.timestamps, metrics=list(widget.inputs)
                )
            finally:
                running.discard(identifier)
        return results[identifier]

    for row in widget.expressions:
        if not row.visible:
            continue
        try:
            value = value_of(row.id)
        except metric_math.MathError as exc:
            widget.notes.append(f"{NOT_EVALUATED}: {row.label} = {row.expression} ({exc})")
            continue
        if isinstance(value, float):
            widget.notes.append(f"{row.label} = {row.expression} is a number ({value:.4g}), not a time series")
            continue
        members = (
            list(zip(value.members, value.labels, strict=True))
            if isinstance(value, metric_math.Array)
            else [(value, "")]
        )
        for member, member_label in members:
            key = QueryKey("", row.id, (), "", member.period or row.period)
            series = Series(
                f"{row.label} {member_label}".strip(),
                key,
                "",
                row.y_axis,
                row.color,
                timestamps=member.timestamps,
                values=member.values,
                expression=row.expression,
            )
            series.label = dynamic_label(series.label, series)
            widget.series.append(series)
    if any(row.visible for row in widget.expressions):
        widget.notes.append("metric math evaluated locally")


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
    # Keep links to the AWS console in text widgets; None: only when the CloudWatch endpoint is AWS's own.
    console_links: bool | None = None


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
            console_links=options.console_links is not False,
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
    if options.console_links is None:
        options = replace(options, console_links=is_aws_endpoint(cloudwatch))
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
        data = fetch(cloudwatch, fetch_keys(widgets), window)
        fill(widgets, data)
        evaluate_math(widgets, data, window)
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
    alarms = sorted(dashboards[0].alarms.values(), key=lambda alarm: alarm.name)
    drawing.write_html(
        pages,
        window,
        html,
        alarms=[
            AlarmLine(
                alarm.name,
                f"{alarm.comparison} {alarm.threshold:.12g}" if alarm.threshold is not None else alarm.comparison,
                alarm.runbook or "",
                runbook_href(alarm.runbook) if alarm.runbook else None,
            )
            for alarm in alarms
        ],
    )
    return RenderResult(tuple(rendered), html, tuple(sorted(resolver.unresolved)))


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "dashboard"
