"""Two runs side by side (`imgops loadtest compare BASE NEW`): did the new one regress beyond a bound?

Each figure knows its direction: higher latency, error rate, billed time or cost is worse; lower throughput is
worse. A change is a regression when it moves the wrong way by more than `max_regression` (relative to the
base) *and* by more than a small absolute floor, so noise on tiny numbers (a 0.4 → 0.5 ms presign, 0 → 1 error
in 10,000) does not fail a build: 1 ms for latencies, 0.1 percentage point for error and drop rates. A figure
missing from either run (an older summary.json, no REPORT lines) is shown as n/a and never fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loadtest.thresholds import Kind, format_value
from pipeline.errors import ImgopsError

Direction = Literal["lower", "higher"]  # which way is better
DEFAULT_MAX_REGRESSION = 0.10
_FLOORS: dict[str, float] = {"duration": 1.0, "fraction": 0.001}


class CompareError(ImgopsError, ValueError):
    pass


@dataclass(frozen=True)
class Figure:
    label: str
    kind: Kind
    better: Direction
    read: Callable[[dict[str, Any]], Any]


def _get(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def read(summary: dict[str, Any]) -> Any:
        value: Any = summary
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return read


def _billed_per_image(summary: dict[str, Any]) -> float | None:
    worker = summary.get("worker") or {}
    if worker.get("billed_ms_per_image") is not None:
        return float(worker["billed_ms_per_image"])
    counts = summary.get("counts") or {}
    processed = int(counts.get("DONE", 0)) + int(counts.get("FAILED", 0))
    return float(worker["billed_ms_total"]) / processed if worker.get("billed_ms_total") and processed else None


def _failed_rate(summary: dict[str, Any]) -> float | None:
    rate = _get("rates", "failed_rate")(summary)
    if rate is not None:
        return float(rate)
    counts = summary.get("counts") or {}  # a summary.json from before `rates` existed
    total = sum(int(v) for v in counts.values())
    failed = sum(int(counts.get(s, 0)) for s in ("FAILED", "UPLOAD_ERROR", "OUTSTANDING"))
    return failed / total if total else None


def figures() -> list[Figure]:
    rows = [
        Figure("throughput (images/s)", "rate", "higher", _get("throughput_images_per_s")),
        Figure("error rate", "fraction", "lower", _failed_rate),
        Figure("dropped starts", "fraction", "lower", _get("rates", "dropped_rate")),
    ]
    for stage in ("presign", "upload", "e2e"):
        for key in ("p50", "p99"):
            rows.append(Figure(f"{stage} {key}", "duration", "lower", _get("stages_ms", stage, "intended", key)))
    for component in ("queue wait", "processing"):
        for key in ("p50", "p99"):
            rows.append(Figure(f"{component} {key}", "duration", "lower", _get("latency_ms", component, key)))
    rows += [
        Figure("worker billed ms/image", "duration", "lower", _billed_per_image),
        Figure("cost per 1,000 images", "usd", "lower", _get("cost_per_1000_images_usd")),
    ]
    return rows


@dataclass(frozen=True)
class Row:
    label: str
    kind: Kind
    better: Direction
    base: float | None
    new: float | None
    change: float | None  # relative: (new - base) / base
    verdict: Literal["ok", "better", "regression", "n/a"]

    def cells(self) -> tuple[str, str, str, str]:
        return (
            "–" if self.base is None else format_value(self.kind, self.base),
            "–" if self.new is None else format_value(self.kind, self.new),
            _change_text(self),
            self.verdict,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.label,
            "better": self.better,
            "base": self.base,
            "new": self.new,
            "change": self.change,
            "verdict": self.verdict,
        }


def _change_text(row: Row) -> str:
    if row.base is None or row.new is None:
        return "–"
    if row.change is None:
        return "new" if row.new else "="
    return f"{row.change * 100:+.1f}%"


def compare_summaries(base: dict[str, Any], new: dict[str, Any], max_regression: float) -> list[Row]:
    rows: list[Row] = []
    for figure in figures():
        before, after = _number(figure.read(base)), _number(figure.read(new))
        if before is None or after is None:
            rows.append(Row(figure.label, figure.kind, figure.better, before, after, None, "n/a"))
            continue
        change = (after - before) / abs(before) if before else None
        worse_by = (after - before) if figure.better == "lower" else (before - after)  # > 0: worse
        if before:
            relative_worse = worse_by / abs(before)
        else:  # from zero: any move is infinitely large
            relative_worse = float("inf") if worse_by > 0 else float("-inf") if worse_by < 0 else 0.0
        floor = _FLOORS.get(figure.kind, 0.0)
        verdict: Literal["ok", "better", "regression", "n/a"] = "ok"
        if worse_by > floor and relative_worse > max_regression:
            verdict = "regression"
        elif -worse_by > floor and -relative_worse > max_regression:
            verdict = "better"
        rows.append(Row(figure.label, figure.kind, figure.better, before, after, change, verdict))
    return rows


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_percent(text: str) -> float:
    """`10%` or `10` → 0.10."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if match is None:
        raise CompareError(f"{text!r}: expected a percentage, e.g. 10%")
    return float(match.group(1)) / 100


def load_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json: the file itself, or the run folder holding it."""
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise CompareError(f"{path}: no summary.json (give a run folder such as runs/<id> or its summary.json)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CompareError(f"{file}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "run_id" not in data:
        raise CompareError(f"{file}: not a load-test summary")
    return data


def _title(base: dict[str, Any], new: dict[str, Any]) -> str:
    def describe(summary: dict[str, Any]) -> str:
        return f"{summary['run_id']} ({summary.get('target', '?')}, {summary.get('images', '?'):,} images)"

    return f"base {describe(base)} vs new {describe(new)}"


def markdown(rows: list[Row], base: dict[str, Any], new: dict[str, Any], max_regression: float) -> str:
    """A table for a pull-request comment."""
    regressions = [row for row in rows if row.verdict == "regression"]
    head = f"**Load test:** {_title(base, new)} - " + (
        f"**{len(regressions)} regression{'s' if len(regressions) != 1 else ''}** beyond {max_regression:.0%}"
        if regressions
        else f"no regression beyond {max_regression:.0%}"
    )
    lines = [head, "", "| figure | base | new | change | verdict |", "|---|--:|--:|--:|---|"]
    for row in rows:
        base_text, new_text, change, verdict = row.cells()
        shown = "**regression**" if verdict == "regression" else verdict
        lines.append(f"| {row.label} | {base_text} | {new_text} | {change} | {shown} |")
    return "\n".join(lines) + "\n"


def title(base: dict[str, Any], new: dict[str, Any]) -> str:
    return _title(base, new)


def regressions(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.verdict == "regression"]
