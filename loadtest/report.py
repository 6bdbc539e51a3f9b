"""report.html: one self-contained page (plots inlined as PNG) for a load-test run, for an SRE to read.

Top to bottom: the headline, the thresholds with pass/fail, the stage latencies from the intended and the actual
start, starts (scheduled, late, dropped), then plots over time - target vs achieved start rate, throughput,
latency per second (a ramp's knee shows there), errors per second - and the distributions, the worker's REPORT
lines and the cost. Numbers are written for people: thousands separators, ms or s, never `2.168e+04`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from loadtest.reports import Report
from loadtest.summary import STAGES
from loadtest.thresholds import format_ms


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=96)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


# --- Numbers for people --------------------------------------------------------------------------------------


def human(value: Any) -> str:
    """1234567 → `1,234,567`; 0.000123 → `0.000123`; 21680.4 → `21,680`; None/NaN → `–`. Never scientific."""
    if value is None or isinstance(value, str):
        return "–" if value is None else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = float(value)
    if math.isnan(number):
        return "–"
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    magnitude = abs(number)
    if magnitude >= 100:
        return f"{number:,.0f}"
    if magnitude >= 1:
        return f"{number:,.2f}"
    if magnitude >= 0.01:
        return f"{number:.4f}"
    return f"{number:.6f}".rstrip("0")


def human_ms(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format_ms(float(value))


def _plain_axis(axis: Axes, *, y_ms: bool = False) -> None:
    """Tick labels with thousands separators (no offset, no 1e4), or ms/s on a latency axis."""
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    if y_ms:
        axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else format_ms(v) if v > 0 else ""))
    else:
        axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"))
    axis.grid(alpha=0.3)


# --- Plots ---------------------------------------------------------------------------------------------------


def _timeline(summary: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(summary.get("timeline") or [])
    return frame if not frame.empty else pd.DataFrame({"second": [0]})


def start_rate_plot(summary: dict[str, Any]) -> str:
    """Per second: the rate the schedule asked for vs the starts achieved, with late and dropped starts."""
    timeline = _timeline(summary)
    figure, axis = plt.subplots(figsize=(8, 3.4))
    seconds = timeline["second"].to_numpy()
    # Second s is [s, s + 1): bars from its left edge, the target as a step over it.
    if "started" in timeline:
        axis.bar(
            seconds, timeline["started"], width=0.9, align="edge", color="#4c72b0", alpha=0.6, label="achieved starts/s"
        )
    if "target_per_s" in timeline and timeline["target_per_s"].notna().any():
        target = pd.to_numeric(timeline["target_per_s"], errors="coerce")
        axis.step(seconds, target, where="post", color="black", linewidth=1.6, label="target starts/s")
    if "dropped" in timeline and timeline["dropped"].sum():
        axis.bar(seconds, timeline["dropped"], width=0.9, align="edge", color="#c44e52", label="dropped/s")
    if "late" in timeline and timeline["late"].sum():
        late = timeline[timeline["late"] > 0]
        axis.plot(late["second"] + 0.45, late["late"], "o", color="#dd8452", markersize=4, label="late/s")
    title = "Start rate: target vs achieved" if summary.get("model") == "open" else "Start rate (closed model)"
    axis.set(xlabel="seconds since start", ylabel="starts per second", title=title)
    _plain_axis(axis)
    axis.legend(loc="upper left", fontsize="small")
    return _png(figure)


def throughput_plot(summary: dict[str, Any]) -> str:
    timeline = _timeline(summary)
    figure, axis = plt.subplots(figsize=(8, 3.2))
    for column, label in (("uploaded", "uploads stored/s"), ("completed", "completions/s")):
        if column in timeline:
            axis.plot(timeline["second"], timeline[column], label=label)
    axis.set(xlabel="seconds since start", ylabel="images per second", title="Throughput over time")
    _plain_axis(axis)
    axis.legend(loc="upper left", fontsize="small")
    return _png(figure)


def latency_over_time_plot(summary: dict[str, Any]) -> str:
    """p50/p99 per second of intended start: from the intended start (solid) and the actual one (dashed)."""
    timeline = _timeline(summary)
    figure, axis = plt.subplots(figsize=(8, 3.6))
    series = (
        ("e2e_p99_ms", "e2e p99 (from intended)", "-", "#c44e52"),
        ("e2e_p50_ms", "e2e p50 (from intended)", "-", "#4c72b0"),
        ("e2e_actual_p99_ms", "e2e p99 (from actual)", "--", "#c44e52"),
        ("upload_p99_ms", "upload p99 (from intended)", ":", "#55a868"),
    )
    for column, label, style, color in series:
        if column in timeline and timeline[column].notna().any():
            values = pd.to_numeric(timeline[column], errors="coerce")
            axis.plot(timeline["second"], values, style, color=color, label=label, marker=".", markersize=3)
    axis.set(xlabel="second the upload was meant to start", ylabel="latency", title="Latency over time")
    _plain_axis(axis, y_ms=True)
    axis.set_ylim(bottom=0)
    handles, labels = axis.get_legend_handles_labels()
    if "target_per_s" in timeline and timeline["target_per_s"].notna().any():
        # The offered rate on a second axis: where latency turns up against it is the knee.
        rate = axis.twinx()
        target = pd.to_numeric(timeline["target_per_s"], errors="coerce")
        rate.step(timeline["second"], target, where="post", color="grey", alpha=0.6, label="target starts/s")
        rate.set_ylabel("target starts per second", color="grey")
        rate.set_ylim(bottom=0)
        more_handles, more_labels = rate.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axis.legend(handles, labels, loc="upper left", fontsize="small")
    return _png(figure)


def errors_over_time_plot(summary: dict[str, Any]) -> str:
    timeline = _timeline(summary)
    figure, axis = plt.subplots(figsize=(8, 3.0))
    bottom = np.zeros(len(timeline))
    for column, label, color in (("failed", "failed/s", "#c44e52"), ("dropped", "dropped/s", "#8172b3")):
        if column in timeline:
            values = timeline[column].to_numpy(dtype=float)
            axis.bar(timeline["second"], values, bottom=bottom, width=0.9, align="edge", color=color, label=label)
            bottom = bottom + values
    axis.set(xlabel="seconds since start", ylabel="images per second", title="Errors over time")
    axis.set_ylim(bottom=0, top=max(1.0, float(bottom.max()) * 1.2 if len(bottom) else 1.0))
    _plain_axis(axis)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(loc="upper left", fontsize="small")
    return _png(figure)


def latency_cdf_plot(frame: pd.DataFrame) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.6))
    for stage, column in STAGES.items():
        if column not in frame:
            continue
        values = np.sort(pd.to_numeric(frame[column], errors="coerce").dropna().to_numpy())
        values = values[values > 0]
        if len(values):
            axis.plot(values, np.arange(1, len(values) + 1) / len(values), label=stage)
    axis.set(xscale="log", xlabel="latency (log)", ylabel="fraction of images", title="Latency CDF per component")
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_ms(v)))
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _png(figure)


def latency_histogram_plot(frame: pd.DataFrame) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.2))
    column = frame["end_to_end_ms"] if "end_to_end_ms" in frame else pd.Series(dtype=float)
    values = pd.to_numeric(column, errors="coerce").dropna()
    if len(values):
        axis.hist(values, bins=40)
    axis.set(xlabel="upload stored → notification", ylabel="images", title="End-to-end latency")
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_ms(v) if v >= 0 else ""))
    axis.grid(alpha=0.3)
    return _png(figure)


def worker_plot(reports: list[Report]) -> str:
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    left.plot([r.max_memory_used_mb for r in reports], marker=".", linestyle="")
    if reports:
        left.axhline(reports[0].memory_size_mb, color="red", linestyle="--", label="memory size")
        left.legend(fontsize="small")
    left.set(xlabel="invocation", ylabel="MB", title="Worker max memory used")
    right.hist([r.duration_ms for r in reports], bins=30)
    right.set(xlabel="duration", ylabel="invocations", title="Worker invocation duration")
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_ms(v) if v >= 0 else ""))
    return _png(figure)


def cost_plot(costs: pd.DataFrame) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.6))
    series = costs.drop(index="Total", errors="ignore")["per_1000_images"].sort_values()
    axis.barh(series.index, series.to_numpy())
    axis.set(xlabel="USD per 1,000 images", title="Cost breakdown")
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.4f}".rstrip("0").rstrip(".")))
    return _png(figure)


# --- Tables --------------------------------------------------------------------------------------------------


def _table(rows: dict[str, dict[str, Any]] | pd.DataFrame, *, ms: bool = False, table_id: str = "") -> str:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows).T
    cells = pd.DataFrame(
        {
            column: frame[column].map(human_ms if ms and column not in {"count", "n"} else human)
            for column in frame.columns
        },
        index=frame.index,
    )
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    body = "".join(
        f"<tr><th>{html.escape(str(index))}</th>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for index, row in zip(frame.index, cells.itertuples(index=False), strict=True)
    )
    attribute = f" id='{table_id}'" if table_id else ""
    return f"<table class='table'{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def thresholds_section(summary: dict[str, Any]) -> str:
    verdicts = summary.get("thresholds") or []
    if not verdicts:
        return (
            "<p id='thresholds-none'>No thresholds were set "
            "(<code>--threshold</code>, <code>--thresholds-file</code>).</p>"
        )
    rows = "".join(
        f"<tr class='{'pass' if v['ok'] else 'fail'}'><th>{html.escape(v['threshold'])}</th>"
        f"<td>{html.escape(v['observed_text'])}</td><td>{'PASS' if v['ok'] else 'FAIL'}</td></tr>"
        for v in verdicts
    )
    failed = sum(not v["ok"] for v in verdicts)
    verdict = f"{failed} of {len(verdicts)} breached" if failed else f"all {len(verdicts)} passed"
    return (
        f"<p class='{'fail' if failed else 'pass'}'>Thresholds: {verdict}.</p>"
        "<table class='table' id='thresholds'><thead><tr><th>threshold</th><th>observed</th><th>result</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def stages_table(summary: dict[str, Any]) -> str:
    rows: dict[str, dict[str, Any]] = {}
    for stage, views in (summary.get("stages_ms") or {}).items():
        row: dict[str, Any] = {}
        for view, label in (("intended", "from intended"), ("actual", "from actual")):
            for key in ("p50", "p95", "p99", "max"):
                row[f"{label} {key}"] = views[view][key]
        row["n"] = int(views["intended"]["count"] or 0)
        rows[stage] = row
    return _table(rows, ms=True, table_id="stages") if rows else "<p>No data.</p>"


def _timeline_table(summary: dict[str, Any], limit: int = 120) -> str:
    timeline = pd.DataFrame(summary.get("timeline") or [])
    if timeline.empty:
        return "<p>No data.</p>"
    step = max(1, math.ceil(len(timeline) / limit))
    timeline["bucket"] = timeline["second"] // step * step
    sums = timeline.groupby("bucket")[["started", "late", "dropped", "completed", "failed"]].sum() / step
    target = pd.to_numeric(timeline["target_per_s"], errors="coerce").groupby(timeline["bucket"]).mean()
    worst = {
        column: pd.to_numeric(timeline[column], errors="coerce").groupby(timeline["bucket"]).max()
        for column in ("e2e_p50_ms", "e2e_p99_ms")
    }
    table = pd.DataFrame(
        {
            "target/s": target,
            "achieved/s": sums["started"],
            "late/s": sums["late"],
            "dropped/s": sums["dropped"],
            "completed/s": sums["completed"],
            "failed/s": sums["failed"],
            "e2e p50": worst["e2e_p50_ms"].map(human_ms),
            "e2e p99": worst["e2e_p99_ms"].map(human_ms),
        }
    )
    table.index = [f"{int(s):,}" if step == 1 else f"{int(s):,}–{int(s) + step - 1:,}" for s in table.index]
    table.index.name = "second"
    caption = "" if step == 1 else f"<p>Averaged over {step}-second buckets; latency: the bucket's worst second.</p>"
    return caption + _table(table, table_id="timeline")


def _headline(summary: dict[str, Any]) -> dict[str, str]:
    starts = summary.get("starts") or {}
    rates = summary.get("rates") or {}
    headline = {
        "target": str(summary["target"]),
        "images": human(summary["images"]),
        "outcomes": ", ".join(f"{k} {human(v)}" for k, v in summary["counts"].items()),
        "load model": "open: " + _schedule_text(summary) if summary.get("model") == "open" else "closed loop",
        "start rate (target / achieved)": f"{human(starts.get('target_rate_per_s'))} / "
        f"{human(starts.get('achieved_rate_per_s'))} per s",
        "late / dropped starts": f"{human(starts.get('late', 0))} / {human(starts.get('dropped', 0))}",
        "throughput": f"{human(summary['throughput_images_per_s'])} images/s",
        "uploads": f"{human(summary['upload_images_per_s'])} images/s, {human(summary['upload_mb_per_s'])} MB/s",
        "failure rate": f"{(rates.get('failed_rate') or 0) * 100:.2f}%",
        "cost per 1,000 images": f"${summary.get('cost_per_1000_images_usd', 0):,.4f}",
        "duration": f"{human(summary['duration_s'])} s",
    }
    if summary.get("aborted"):
        headline["aborted"] = str(summary["aborted"])
    return headline


def _schedule_text(summary: dict[str, Any]) -> str:
    schedule = summary.get("schedule") or {}
    stages = schedule.get("stages") or []
    parts = [f"{human(s['duration_s'])}s → {human(s['target_rate'])}/s" for s in stages]
    start = schedule.get("start_rate") or 0
    return (f"from {human(start)}/s, " if start else "from 0/s, ") + ", ".join(parts)


def write_report(
    path: Path,
    *,
    frame: pd.DataFrame,
    reports: list[Report],
    summary: dict[str, Any],
    costs: pd.DataFrame,
    extra_sections: list[tuple[str, str]] | None = None,
) -> Path:
    plots = {
        "start-rate": ("Start rate: target vs achieved, per second", start_rate_plot(summary)),
        "throughput": ("Throughput", throughput_plot(summary)),
        "latency-over-time": ("Latency over time", latency_over_time_plot(summary)),
        "errors-over-time": ("Errors over time", errors_over_time_plot(summary)),
        "latency-cdf": ("Latency per component", latency_cdf_plot(frame)),
        "latency-histogram": ("End-to-end latency", latency_histogram_plot(frame)),
        "worker": ("Worker invocations", worker_plot(reports)),
        "cost": ("Cost per 1,000 images", cost_plot(costs)),
    }
    figures = {
        key: f"<figure id='plot-{key}'><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for key, (title, data) in plots.items()
    }
    starts = summary.get("starts") or {}
    lag = starts.get("lag_ms") or {}
    starts_rows = {
        "starts": {
            "scheduled": starts.get("scheduled"),
            "sent": starts.get("sent"),
            "late": starts.get("late"),
            "dropped": starts.get("dropped"),
            "lag p50": human_ms(lag.get("p50")),
            "lag p99": human_ms(lag.get("p99")),
            "lag max": human_ms(lag.get("max")),
        }
    }
    policy = ""
    if starts.get("max_lag_ms") is not None:
        policy = (
            f"<p>A start more than {human_ms(starts.get('late_after_ms'))} behind its intended time is late; one "
            f"that could not begin within {human_ms(starts.get('max_lag_ms'))} was dropped (not sent).</p>"
        )
    precision = html.escape(str((summary.get("hdr") or {}).get("text", "")))
    worker = {k: v for k, v in summary["worker"].items() if not isinstance(v, dict)}
    sections = [
        f"<h1>imgops load test {html.escape(summary['run_id'])}</h1>",
        "<table class='table' id='headline'>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _headline(summary).items())
        + "</table>",
        "<h2>Thresholds</h2>" + thresholds_section(summary),
        "<h2>Stage latency</h2><p>Time from the image's start until the stage finished: presign (grant received), "
        "upload (file stored) and e2e (notification received), measured from the <em>intended</em> start "
        "(coordinated omission corrected) and from the <em>actual</em> start. "
        f"{precision}.</p>" + stages_table(summary),
        "<h2>Start rate</h2>" + figures["start-rate"] + policy + _table(starts_rows),
        "<h2>Over time</h2>" + figures["latency-over-time"] + figures["throughput"] + figures["errors-over-time"],
        "<h2>Components (each from its own start)</h2>" + _table(summary["latency_ms"], ms=True),
        figures["latency-cdf"] + figures["latency-histogram"],
        "<h2>Errors</h2>"
        + (_table({k: {"images": v} for k, v in summary["errors"].items()}) if summary["errors"] else "<p>None.</p>"),
        "<h2>Worker (REPORT lines)</h2>" + _table({"worker": worker}) + figures["worker"],
        "<h2>Cost</h2>" + _table(costs) + figures["cost"],
        "<h2>Per second</h2>" + _timeline_table(summary),
    ]
    sections += [f"<h2>{html.escape(title)}</h2>{body}" for title, body in extra_sections or []]
    # Lets a headless browser (and the test that drives one) confirm every plot decoded.
    script = (
        "<script>addEventListener('load',()=>{document.body.dataset.plotsLoaded="
        "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length})</script>"
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        ".table{border-collapse:collapse;font-variant-numeric:tabular-nums}"
        ".table td,.table th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}"
        ".table thead th{border-bottom:2px solid #999}"
        "tr.pass td:last-child,p.pass{color:#1a7f37;font-weight:bold}"
        "tr.fail td:last-child,p.fail{color:#cf222e;font-weight:bold}"
        "figure{margin:1.5em 0}img{max-width:100%}"
    )
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>imgops load test {html.escape(summary['run_id'])}</title>"
        f"<style>{style}</style>{script}</head><body>{''.join(sections)}</body></html>",
        encoding="utf-8",
    )
    return path
