"""What a rendered dashboard is made of: widgets on CloudWatch's 24-column grid, their series and the time window.

Shared by render.py (which plans and fills them) and drawing.py (which draws them), so neither imports the other's
internals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Search:
    """A SEARCH expression simple enough to expand with ListMetrics: exact schema, exact key="value" terms."""

    namespace: str
    schema: tuple[str, ...]  # dimension names a match must have, no more, no fewer
    filters: tuple[tuple[str, str], ...]
    metric_name: str | None
    stat: str
    period: int | None
    label: str
    y_axis: str = "left"


@dataclass(frozen=True)
class QueryKey:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int


@dataclass(frozen=True)
class MathRow:
    """A metric math row of a widget: evaluated locally (dashboards/metric_math.py) over the widget's series."""

    id: str
    expression: str
    label: str
    visible: bool
    period: int
    y_axis: str = "left"
    color: str | None = None


@dataclass
class Series:
    """A line: a metric fetched with GetMetricData, or (`expression` set) the result of metric math."""

    label: str
    key: QueryKey
    requested_stat: str
    y_axis: str = "left"
    color: str | None = None
    timestamps: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    expression: str = ""

    @property
    def fetched(self) -> bool:
        return not self.expression

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            **({"expression": self.expression} if self.expression else {}),
            "namespace": self.key.namespace,
            "metric": self.key.name,
            "dimensions": dict(self.key.dimensions),
            "stat": self.key.stat,
            "requested_stat": self.requested_stat,
            "period": self.key.period,
            "y_axis": self.y_axis,
            "timestamps": [t.isoformat() for t in self.timestamps],
            "values": self.values,
        }


@dataclass(frozen=True)
class AlarmLine:
    """An alarm as the HTML page lists it: what it watches for and where its runbook is."""

    name: str
    condition: str
    runbook: str
    runbook_href: str | None  # None: the runbook is named but not found here


@dataclass(frozen=True)
class Annotation:
    value: float
    label: str
    y_axis: str = "left"
    color: str | None = None


@dataclass
class Widget:
    """One widget as drawn: its place on the 24-column grid, its series and why anything is missing."""

    index: int
    type: str
    x: int
    y: int
    width: int
    height: int
    title: str = ""
    view: str = "timeSeries"
    markdown: str = ""
    series: list[Series] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    y_axis: Mapping[str, Any] = field(default_factory=dict)
    searches: list[Search] = field(default_factory=list)
    period_override: int | None = None
    # Metric math: the rows to evaluate, and every metric of the widget by id (drawn or not), in row order.
    expressions: list[MathRow] = field(default_factory=list)
    inputs: dict[str, QueryKey] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return any(series.values for series in self.series)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "title": self.title,
            "view": self.view,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "markdown": self.markdown,
            "has_data": self.has_data,
            "series": [series.to_json() for series in self.series],
            "annotations": [vars(annotation) for annotation in self.annotations],
            "searches": len(self.searches),
            "inputs": {
                identifier: {
                    "namespace": key.namespace,
                    "metric": key.name,
                    "dimensions": dict(key.dimensions),
                    "stat": key.stat,
                    "period": key.period,
                }
                for identifier, key in self.inputs.items()
            },
            "expressions": [vars(row) for row in self.expressions],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, hours: float, now: datetime | None = None) -> Window:
        end = (now or datetime.now(UTC)).astimezone(UTC)
        return cls(end - timedelta(hours=hours), end)

    def aligned(self, period: int) -> tuple[datetime, datetime]:
        """Start and end on period boundaries, as CloudWatch aligns datapoints, with the current period included."""
        start = math.floor(self.start.timestamp() / period) * period
        end = math.ceil(self.end.timestamp() / period) * period
        return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(max(end, start + period), UTC)

    def timestamps(self, period: int) -> list[datetime]:
        """The datapoint timestamps CloudWatch would return for `period` over this window (what FILL fills)."""
        start, end = self.aligned(period)
        step = timedelta(seconds=period)
        found: list[datetime] = []
        while start < end:
            found.append(start)
            start += step
        return found
