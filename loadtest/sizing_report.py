"""The sizing run's folder: table (CSV/JSON), the duration-and-cost plot, and report.html."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from loadtest.report import _png


def sizing_plot(table: pd.DataFrame) -> str:
    figure, duration_axis = plt.subplots(figsize=(8, 3.6))
    memory = table.index.to_numpy()
    duration_axis.plot(memory, table["duration_mean_ms"], marker="o", color="tab:blue", label="duration (mean)")
    duration_axis.set(xlabel="memory (MB)", ylabel="ms", title="Worker duration and cost vs memory")
    cost_axis = duration_axis.twinx()
    cost_axis.plot(memory, table["cost_per_1000_images_usd"], marker="s", color="tab:orange", label="cost")
    cost_axis.set_ylabel("USD per 1,000 images")
    figure.legend(loc="upper center")
    return _png(figure)


def write_sizing(
    folder: Path,
    *,
    table: pd.DataFrame,
    recommendations: dict[str, int],
    measured: dict[str, Any],
    notes: list[str],
    arch: str,
    measurements: list[dict[str, Any]] | None = None,
) -> Path:
    table.to_csv(folder / "sizing.csv")
    payload = {
        "architecture": arch,
        "recommendations_mb": recommendations,
        "measured": measured,
        "notes": notes,
        "table": json.loads(table.reset_index().to_json(orient="records")),
        "measurements": measurements or [],  # lets `imgops cost --compare` model sizes not in the table
    }
    (folder / "sizing.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    plot = sizing_plot(table)
    body = (
        f"<h1>imgops worker memory sizing ({html.escape(arch)})</h1>"
        + "<ul>"
        + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        + "</ul>"
        + "<p>Recommended: "
        + ", ".join(f"<b>{html.escape(k)}</b> {v} MB" for k, v in recommendations.items())
        + "</p>"
        + table.to_html(border=0)
        + f"<figure id='plot-sizing'><img alt='duration and cost vs memory' src='data:image/png;base64,{plot}'>"
        "<figcaption>Duration and cost vs memory</figcaption></figure>"
    )
    path = folder / "report.html"
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>imgops sizing</title></head>"
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )
    return path
