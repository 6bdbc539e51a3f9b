"""report.html: one self-contained page (plots inlined as PNG) for a load-test run."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from loadtest.reports import Report
from loadtest.summary import STAGES


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=96)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def throughput_plot(frame: pd.DataFrame, started: float) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.2))
    for column, label in (("uploaded_at", "uploads/s"), ("completed_at", "completions/s")):
        seconds = (pd.to_numeric(frame[column], errors="coerce").dropna() - started).astype(int)
        if len(seconds):
            per_second = seconds.value_counts().sort_index().reindex(range(int(seconds.max()) + 1), fill_value=0)
            axis.plot(per_second.index, per_second.to_numpy(), label=label)
    axis.set(xlabel="seconds since start", ylabel="images per second", title="Throughput over time")
    axis.legend()
    return _png(figure)


def latency_cdf_plot(frame: pd.DataFrame) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.6))
    for stage, column in STAGES.items():
        values = np.sort(pd.to_numeric(frame[column], errors="coerce").dropna().to_numpy())
        if len(values):
            axis.plot(values, np.arange(1, len(values) + 1) / len(values), label=stage)
    axis.set(xscale="log", xlabel="milliseconds (log)", ylabel="fraction of images", title="Latency CDF per stage")
    axis.grid(alpha=0.3)
    axis.legend()
    return _png(figure)


def latency_histogram_plot(frame: pd.DataFrame) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.2))
    values = pd.to_numeric(frame["end_to_end_ms"], errors="coerce").dropna()
    if len(values):
        axis.hist(values, bins=40)
    axis.set(xlabel="upload finished → notification (ms)", ylabel="images", title="End-to-end latency")
    return _png(figure)


def worker_plot(reports: list[Report]) -> str:
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    left.plot([r.max_memory_used_mb for r in reports], marker=".", linestyle="")
    if reports:
        left.axhline(reports[0].memory_size_mb, color="red", linestyle="--", label="memory size")
        left.legend()
    left.set(xlabel="invocation", ylabel="MB", title="Worker max memory used")
    right.hist([r.duration_ms for r in reports], bins=30)
    right.set(xlabel="ms", ylabel="invocations", title="Worker invocation duration")
    return _png(figure)


def cost_plot(costs: pd.DataFrame) -> str:
    figure, axis = plt.subplots(figsize=(8, 3.6))
    series = costs.drop(index="Total", errors="ignore")["per_1000_images"].sort_values()
    axis.barh(series.index, series.to_numpy())
    axis.set(xlabel="USD per 1,000 images", title="Cost breakdown")
    return _png(figure)


def _table(rows: dict[str, dict[str, Any]] | pd.DataFrame) -> str:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows).T
    return frame.to_html(border=0, classes="table", float_format=lambda v: f"{v:,.4g}", na_rep="–")


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
        "throughput": ("Throughput", throughput_plot(frame, float(frame["started_at"].min() or 0))),
        "latency-cdf": ("Latency per stage", latency_cdf_plot(frame)),
        "latency-histogram": ("End-to-end latency", latency_histogram_plot(frame)),
        "worker": ("Worker invocations", worker_plot(reports)),
        "cost": ("Cost per 1,000 images", cost_plot(costs)),
    }
    headline = {
        "images": summary["images"],
        "outcomes": ", ".join(f"{k} {v}" for k, v in summary["counts"].items()),
        "throughput (images/s)": summary["throughput_images_per_s"],
        "uploads (images/s, MB/s)": f"{summary['upload_images_per_s']} / {summary['upload_mb_per_s']}",
        "duration (s)": summary["duration_s"],
        "target": summary["target"],
    }
    sections = [
        f"<h1>imgops load test {html.escape(summary['run_id'])}</h1>",
        "<table class='table'>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in headline.items())
        + "</table>",
        "<h2>Latency (ms)</h2>" + _table(summary["latency_ms"]),
        "<h2>Errors</h2>"
        + (_table({k: {"images": v} for k, v in summary["errors"].items()}) if summary["errors"] else "<p>None.</p>"),
        "<h2>Worker (REPORT lines)</h2>"
        + _table({"worker": {k: v for k, v in summary["worker"].items() if not isinstance(v, dict)}}),
        "<h2>Cost</h2>" + _table(costs),
    ]
    sections += [f"<h2>{html.escape(title)}</h2>{body}" for title, body in extra_sections or []]
    sections += [
        f"<figure id='plot-{key}'><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for key, (title, data) in plots.items()
    ]
    # Lets a headless browser (and the test that drives one) confirm every plot decoded.
    script = (
        "<script>addEventListener('load',()=>{document.body.dataset.plotsLoaded="
        "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length})</script>"
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        ".table{border-collapse:collapse}"
        ".table td,.table th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}"
        "figure{margin:1.5em 0}img{max-width:100%}"
    )
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>imgops load test {html.escape(summary['run_id'])}</title>"
        f"<style>{style}</style>{script}</head><body>{''.join(sections)}</body></html>",
        encoding="utf-8",
    )
    return path
