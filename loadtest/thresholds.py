"""Pass/fail criteria over a run's summary, as k6 thresholds: `e2e_p99<5s`, `failed_rate<1%`, `throughput>8/s`.

A threshold is `METRIC OP VALUE` with OP one of < <= > >= == !=. Latencies take a unit (us, ms, s, m, h; a bare number
is ms), rates `/s` or `/m` (a bare number is per second), fractions a `%` or a plain fraction, costs an optional `$`.
A metric without data (no image completed, no REPORT line) breaches its threshold: a gate that measured nothing
must not pass. `imgops loadtest run` exits 99 on any breach (k6's code) and names each one with what was observed.

Evaluated on the running state too (`--abort-on-fail`, k6's abortOnFail): only the metrics marked `live` - the
latencies, counts and error rates; throughput, rates and cost are only meaningful once the run is over, and a
metric without data yet is not a breach while the run goes on.

A thresholds file (TOML or JSON) holds the same expressions, to be checked into a repository:

    abort_on_fail = true        # optional: stop the run at the first breach
    abort_delay = "10s"         # optional: not before this much of the run has passed (k6's delayAbortEval)
    thresholds = [
        "e2e_p99 < 30s",
        { expr = "failed_rate < 1%", abort_on_fail = true },   # per threshold
    ]
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

from pipeline.errors import ImgopsError

# Exit code of a run whose thresholds were breached (k6's ThresholdsHaveFailed).
THRESHOLDS_EXIT_CODE = 99

Kind = Literal["duration", "rate", "fraction", "count", "usd"]


class ThresholdError(ImgopsError, ValueError):
    pass


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    read: Callable[[dict[str, Any]], Any]
    live: bool
    description: str


def _path(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def read(summary: dict[str, Any]) -> Any:
        value: Any = summary
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    return read


def _failed_count(summary: dict[str, Any]) -> int:
    counts = summary.get("counts", {})
    return sum(int(counts.get(status, 0)) for status in ("FAILED", "UPLOAD_ERROR", "OUTSTANDING"))


PERCENTILE_KEYS = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
_STAGE_TEXT = {
    "presign": "intended start → presign answered",
    "upload": "intended start → file stored (presign + POST)",
    "e2e": "intended start → DONE/FAILED notification",
}
_COMPONENTS = {
    "post": ("upload", "the presigned POST alone"),
    "queue_wait": ("queue wait", "upload stored → processing started"),
    "processing": ("processing", "the worker's processing"),
    "notify": ("end to end", "upload stored → notification"),
}


def _metrics() -> dict[str, Metric]:
    metrics: list[Metric] = []
    for stage, text in _STAGE_TEXT.items():
        actual = text.replace("intended start", "actual start")
        for key in PERCENTILE_KEYS:
            intended_path = _path("stages_ms", stage, "intended", key)
            metrics.append(Metric(f"{stage}_{key}", "duration", intended_path, True, text))
            actual_path = _path("stages_ms", stage, "actual", key)
            metrics.append(Metric(f"{stage}_actual_{key}", "duration", actual_path, True, actual))
    for name, (stage, text) in _COMPONENTS.items():
        for key in PERCENTILE_KEYS:
            metrics.append(Metric(f"{name}_{key}", "duration", _path("latency_ms", stage, key), True, text))
    for key in PERCENTILE_KEYS:
        lag = "start lag: actual − intended start"
        metrics.append(Metric(f"start_lag_{key}", "duration", _path("starts", "lag_ms", key), True, lag))
    metrics += [
        Metric("failed_rate", "fraction", _path("rates", "failed_rate"), True, "failed / sent uploads"),
        Metric("dropped_rate", "fraction", _path("rates", "dropped_rate"), True, "dropped / scheduled starts"),
        Metric("late_rate", "fraction", _path("rates", "late_rate"), True, "late / sent starts"),
        Metric("failed", "count", _failed_count, True, "FAILED + UPLOAD_ERROR + OUTSTANDING images"),
        Metric("dropped", "count", _path("starts", "dropped"), True, "starts dropped (past --max-lag)"),
        Metric("late", "count", _path("starts", "late"), True, "starts sent late"),
        Metric("throughput", "rate", _path("throughput_images_per_s"), False, "images finished per second"),
        Metric("upload_rate", "rate", _path("upload_images_per_s"), False, "uploads stored per second"),
        Metric("start_rate", "rate", _path("starts", "achieved_rate_per_s"), False, "achieved start rate"),
        Metric("cost_per_1000", "usd", _path("cost_per_1000_images_usd"), False, "USD per 1,000 images"),
        Metric(
            "billed_ms_per_image", "duration", _path("worker", "billed_ms_per_image"), False, "worker billed ms/image"
        ),
    ]
    return {metric.name: metric for metric in metrics}


METRICS = _metrics()
_EXPRESSION = re.compile(r"^\s*([A-Za-z][\w.]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DURATION_UNITS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0, "h": 3_600_000.0}
_RATE_UNITS = {"": 1.0, "/s": 1.0, "/m": 1 / 60, "/min": 1 / 60, "/h": 1 / 3600}


@dataclass(frozen=True)
class Threshold:
    expression: str  # as written, normalised: `e2e_p99<5s`
    metric: str
    op: str
    value: float  # in the metric's unit: ms, per second, fraction, count or USD
    abort_on_fail: bool = False

    def holds(self, observed: float) -> bool:
        return {
            "<": observed < self.value,
            "<=": observed <= self.value,
            ">": observed > self.value,
            ">=": observed >= self.value,
            "==": observed == self.value,
            "!=": observed != self.value,
        }[self.op]


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    observed: float | None
    ok: bool

    @property
    def observed_text(self) -> str:
        if self.observed is None:
            return "no data"
        return format_value(METRICS[self.threshold.metric].kind, self.observed)

    @property
    def message(self) -> str:
        verdict = "ok" if self.ok else "BREACHED"
        return f"{self.threshold.expression}: observed {self.observed_text} - {verdict}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold.expression,
            "metric": self.threshold.metric,
            "op": self.threshold.op,
            "limit": self.threshold.value,
            "observed": self.observed,
            "observed_text": self.observed_text,
            "ok": self.ok,
        }


def parse_threshold(text: str, *, abort_on_fail: bool = False) -> Threshold:
    match = _EXPRESSION.match(text)
    if match is None:
        raise ThresholdError(f"{text!r}: expected METRIC OP VALUE, e.g. e2e_p99<5s or failed_rate<1%")
    name, op, value_text = match.groups()
    metric = METRICS.get(name)
    if metric is None:
        close = difflib.get_close_matches(name, list(METRICS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `imgops loadtest thresholds`)"
        raise ThresholdError(f"{text!r}: unknown metric {name!r}{hint}")
    value = parse_value(metric.kind, value_text, context=text)
    return Threshold(f"{name}{op}{value_text.replace(' ', '')}", name, op, value, abort_on_fail)


def parse_value(kind: Kind, text: str, *, context: str = "") -> float:
    cleaned = text.strip().replace(",", "").replace(" ", "")
    where = f"{context!r}: " if context else ""
    units: dict[str, float]
    if kind == "duration":
        units, example = _DURATION_UNITS | {"": 1.0}, "5s, 800ms or 250 (ms)"
    elif kind == "rate":
        units, example = _RATE_UNITS, "8/s or 480/m"
    elif kind == "fraction":
        units, example = {"": 1.0, "%": 0.01}, "1% or 0.01"
    elif kind == "usd":
        cleaned = cleaned.removeprefix("$")
        units, example = {"": 1.0}, "0.10 or $0.10"
    else:
        units, example = {"": 1.0}, "5"
    match = re.fullmatch(f"({_NUMBER})(.*)", cleaned)
    if match is None or match.group(2) not in units:
        raise ThresholdError(f"{where}{text!r} is not a {kind.replace('usd', 'cost')} value: expected e.g. {example}")
    return float(match.group(1)) * units[match.group(2)]


def format_value(kind: Kind, value: float) -> str:
    if kind == "duration":
        return format_ms(value)
    if kind == "rate":
        return f"{value:,.2f}/s"
    if kind == "fraction":
        return f"{value * 100:,.2f}%"
    if kind == "usd":
        return f"${value:,.4f}"
    return f"{value:,.0f}"


def format_ms(value: float) -> str:
    """Milliseconds for people: `0.42 ms`, `812 ms`, `4.21 s`, `2 min 5 s`."""
    if value < 10:
        return f"{value:,.2f} ms"
    if value < 1000:
        return f"{value:,.0f} ms"
    if value < 120_000:
        return f"{value / 1000:,.2f} s"
    minutes, seconds = divmod(value / 1000, 60)
    return f"{minutes:,.0f} min {seconds:.0f} s"


def evaluate(thresholds: Iterable[Threshold], summary: dict[str, Any], *, live: bool = False) -> list[Verdict]:
    """Every threshold against `summary`. `live`: the running state - only live metrics with data are judged."""
    verdicts: list[Verdict] = []
    for threshold in thresholds:
        metric = METRICS[threshold.metric]
        raw = metric.read(summary)
        observed = float(raw) if isinstance(raw, int | float) else None
        if live and (not metric.live or observed is None):
            continue
        verdicts.append(Verdict(threshold, observed, observed is not None and threshold.holds(observed)))
    return verdicts


@dataclass(frozen=True)
class ThresholdSet:
    thresholds: tuple[Threshold, ...] = ()
    abort_on_fail: bool = False  # every threshold aborts the run on a breach
    abort_delay_s: float = 0.0

    def aborting(self) -> tuple[Threshold, ...]:
        return tuple(t for t in self.thresholds if t.abort_on_fail or self.abort_on_fail)

    def __bool__(self) -> bool:
        return bool(self.thresholds)


def load_file(path: Path) -> ThresholdSet:
    """A thresholds file: TOML (`.toml`) or JSON (anything else), as in the module docstring."""
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ThresholdError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("thresholds"), list):
        raise ThresholdError(f"{path}: expected a `thresholds` list of expressions")
    unknown = set(data) - {"thresholds", "abort_on_fail", "abort_delay"}
    if unknown:
        raise ThresholdError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    parsed: list[Threshold] = []
    for item in data["thresholds"]:
        if isinstance(item, str):
            parsed.append(parse_threshold(item))
        elif isinstance(item, dict) and isinstance(item.get("expr"), str):
            parsed.append(parse_threshold(item["expr"], abort_on_fail=bool(item.get("abort_on_fail", False))))
        else:
            raise ThresholdError(f"{path}: {item!r} is neither an expression nor {{ expr = ..., abort_on_fail = ... }}")
    delay = data.get("abort_delay", 0)
    return ThresholdSet(
        tuple(parsed),
        abort_on_fail=bool(data.get("abort_on_fail", False)),
        abort_delay_s=parse_value("duration", str(delay), context="abort_delay") / 1000,
    )


def threshold_set(
    expressions: Iterable[str], *, file: Path | None = None, abort_on_fail: bool = False, abort_delay_s: float = 0.0
) -> ThresholdSet:
    """The command line's `--threshold`s plus a `--thresholds-file`; the command line's abort options win."""
    from_file = load_file(file) if file is not None else ThresholdSet()
    parsed = tuple(parse_threshold(text) for text in expressions)
    return ThresholdSet(
        from_file.thresholds + parsed,
        abort_on_fail=abort_on_fail or from_file.abort_on_fail,
        abort_delay_s=max(abort_delay_s, from_file.abort_delay_s),
    )


def junit_xml(verdicts: list[Verdict], *, run_id: str, duration_s: float = 0.0, aborted: str | None = None) -> str:
    """JUnit XML with one test case per threshold: CI shows each as passed or failed with the observed value."""
    failures = sum(not v.ok for v in verdicts)
    suites = ElementTree.Element(
        "testsuites", name="imgops loadtest", tests=str(len(verdicts)), failures=str(failures), errors="0"
    )
    suite = ElementTree.SubElement(
        suites,
        "testsuite",
        name=f"imgops loadtest thresholds ({run_id})",
        tests=str(len(verdicts)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{duration_s:.3f}",
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    properties = ElementTree.SubElement(suite, "properties")
    ElementTree.SubElement(properties, "property", name="run_id", value=run_id)
    if aborted:
        ElementTree.SubElement(properties, "property", name="aborted", value=aborted)
    for verdict in verdicts:
        case = ElementTree.SubElement(
            suite, "testcase", classname="imgops.loadtest.thresholds", name=verdict.threshold.expression, time="0"
        )
        ElementTree.SubElement(case, "system-out").text = verdict.message
        if not verdict.ok:
            failure = ElementTree.SubElement(
                case, "failure", type="ThresholdBreached", message=f"observed {verdict.observed_text}"
            )
            failure.text = f"{verdict.message}\n{METRICS[verdict.threshold.metric].description}"
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def metric_help() -> list[tuple[str, str, str]]:
    """(name pattern, unit, meaning) for the documented metrics, grouped as a person reads them; `{…}` stands for
    one of PERCENTILE_KEYS."""
    rows = [(f"{stage}_{{…}}", "duration", text) for stage, text in _STAGE_TEXT.items()]
    rows += [
        (f"{stage}_actual_{{…}}", "duration", text.replace("intended", "actual")) for stage, text in _STAGE_TEXT.items()
    ]
    rows += [(f"{name}_{{…}}", "duration", text) for name, (_, text) in _COMPONENTS.items()]
    rows.append(("start_lag_{…}", "duration", "actual − intended start"))
    seen = {m.name for m in METRICS.values() if m.name.split("_")[-1] in PERCENTILE_KEYS}
    rows += [(m.name, m.kind, m.description) for m in METRICS.values() if m.name not in seen]
    return rows
