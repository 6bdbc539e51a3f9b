"""The sizing run's folder: sizing.csv, sizing.json (with a Power Tuning-shaped result), the invocations, the
classic chart (duration and cost against memory, two y axes) and report.html."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from loadtest.report import _png
from sizing.memory import DEATHS, SizingResult, power_tuning_json


def megapixels(pixels: Any) -> str:
    if pixels is None or (isinstance(pixels, float) and not math.isfinite(pixels)):
        return "–"
    return "none" if int(pixels) <= 0 else f"{int(pixels) / 1e6:.1f} MP"


def sample_line(result: SizingResult) -> str:
    kinds = ", ".join(f"{entry['kind']} {entry['count']}" for entry in result.sample)
    mix = "/".join(f"{entry['mix_share'] * 100:.0f}" for entry in result.sample)
    total = sum(entry["count"] for entry in result.sample)
    return f"Sample: {total} images: {kinds} (mix {mix} %, weighted back to it)"


def floor_line(result: SizingResult) -> str:
    floor = result.floor
    if floor is None:
        return "Worst case: not checked (no writable cgroup memory controller here)."
    smaller = [
        f"{size} MB {megapixels(state.get('max_pixels'))}{'' if state.get('max_pixels_verified') else ' (unverified)'}"
        for size, state in sorted(floor.by_size.items())
        if state["outcome"] != "survives"
    ]
    text = (
        f"Worst case: {floor.kind} {floor.width}x{floor.height} ({floor.pixels / 1e6:.1f} MP, "
        f"{floor.file_bytes / 1e6:.1f} MB file) peaks at {floor.peak_mb:.0f} MB with no cap; floor: "
        + (f"{floor.floor_mb} MB" if floor.floor_mb else "none of the sizes tried")
        + f" (pixel cap {result.spec.max_pixels / 1e6:.1f} MP)."
    )
    if smaller:
        text += " Pixel cap that fits a smaller size: " + " · ".join(smaller) + " (verified under its real cap)."
    return text


def calibration_line(result: SizingResult) -> str:
    if not result.calibration:
        return "CFS calibration: not run (no writable cgroup CPU controller here)."
    points = ", ".join(
        f"{point.quota_pct} % quota {point.ratio:.2f}x (linear {point.linear:.0f}x)" for point in result.calibration
    )
    load = result.calibration[-1].load_average
    return f"CFS calibration (a CPU loop; wall / CPU time): {points}; load average {load:.1f} on {os.cpu_count()} CPUs."


def sizing_plot(result: SizingResult) -> str:
    """Power Tuning's chart: memory on x (one slot per size), duration on the left axis, cost on the right."""
    table = result.table
    figure, duration_axis = plt.subplots(figsize=(8.5, 4.4))
    positions = list(range(len(table)))
    labels = [str(size) for size in table.index]
    duration_axis.plot(
        positions, table["measured_mean_ms"], marker="o", color="tab:blue", label="duration, measured (mean)"
    )
    duration_axis.plot(
        positions, table["modeled_mean_ms"], marker=".", linestyle="--", color="tab:blue", alpha=0.6,
        label="duration, modeled (mean)",
    )  # fmt: skip
    duration_axis.set(xlabel="memory (MB)", ylabel="ms per invocation", title="Worker duration and cost vs memory")
    duration_axis.set_xticks(positions, labels)
    cost_axis = duration_axis.twinx()
    colors = {"arm64": "tab:orange", "x86_64": "tab:red"}
    for arch in result.options.architectures:
        cost_axis.plot(
            positions, table[f"cost_per_invocation_usd_{arch}"] * 1e6, marker="s", color=colors.get(arch, "tab:gray"),
            label=f"cost, {arch}",
        )  # fmt: skip
    cost_axis.set_ylabel("µUSD per invocation (one image)")
    dies = [i for i, outcome in enumerate(table.get("worst_case", pd.Series(dtype=str))) if outcome in DEATHS]
    if dies:
        duration_axis.axvspan(min(dies) - 0.5, max(dies) + 0.5, color="tab:red", alpha=0.08)
        low = duration_axis.get_ylim()[0]
        duration_axis.text(
            (min(dies) + max(dies)) / 2, low + (duration_axis.get_ylim()[1] - low) * 0.93,
            "dies on the worst-case input", ha="center", color="tab:red", fontsize=8,
        )  # fmt: skip
    handles = duration_axis.get_legend_handles_labels()[0] + cost_axis.get_legend_handles_labels()[0]
    duration_axis.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False
    )
    return _png(figure)


def sizing_payload(result: SizingResult, strategy: str, target: str) -> dict[str, Any]:
    """sizing.json: what `imgops cost --sizing` reads (table, recommendations_mb, measurements) and the rest."""
    return {
        "target": target,
        "architecture": result.lead,
        "architectures": list(result.options.architectures),
        "strategy": strategy,
        "recommendations_mb": result.recommendations[result.lead],
        "recommendations_by_architecture": result.recommendations,
        "basis": result.basis,
        "notes": result.notes,
        "sample": result.sample,
        "floor": result.floor.as_dict() if result.floor else None,
        "calibration": [point.__dict__ | {"versus_linear": point.versus_linear} for point in result.calibration],
        "table": json.loads(result.table.reset_index().to_json(orient="records")),
        "measurements": [m.__dict__ for m in result.baseline],  # lets `imgops cost --compare` model other sizes
        "power_tuning": power_tuning_json(result, strategy),
    }


def write_sizing(folder: Path, result: SizingResult, *, strategy: str, target: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(folder / "sizing.csv")
    pd.DataFrame(result.invocations).to_csv(folder / "invocations.csv", index=False)
    payload = sizing_payload(result, strategy, target)
    (folder / "sizing.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    plot = sizing_plot(result)
    path = folder / "report.html"
    path.write_text(_html(result, strategy, target, plot), encoding="utf-8")
    return path


def _cell(column: str, value: Any) -> str:
    """Numbers for people: ms whole, percentages signed, dollars to 5 places, pixels in megapixels."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if column == "max_pixels_here":
        return megapixels(value)
    if column.startswith("cost_"):
        return f"{value:.5f}"
    if column == "model_error_pct":
        return f"{value:+.0f}"
    if column == "cpu_quota_pct":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _html(result: SizingResult, strategy: str, target: str, plot: str) -> str:
    table = result.table
    columns = {
        "cpu_quota_pct": "CPU quota %",
        "measured_p50_ms": "measured p50 ms",
        "measured_p95_ms": "measured p95 ms",
        "modeled_p50_ms": "modeled p50 ms",
        "modeled_p95_ms": "modeled p95 ms",
        "model_error_pct": "model error %",
        "billed_ms_mean": "billed ms (mean)",
        **{f"cost_per_1000_images_usd_{arch}": f"$ / 1,000 images {arch}" for arch in result.options.architectures},
        "init_ms": "init ms",
        "first_invocation_ms": "1st invocation ms",
        "sample_peak_mb": "sample peak MB",
        "worst_case": "worst case",
        "max_pixels_here": "pixel cap that fits",
        "fails": "dies",
    }
    view = table[[c for c in columns if c in table]].copy()
    for column in view.columns:
        view[column] = [_cell(column, value) for value in view[column]]
    view = view.rename(columns=columns)
    lead = result.recommendations[result.lead]
    recommended = "; ".join(
        f"{html.escape(arch)}: " + ", ".join(f"<b>{html.escape(k)}</b> {v} MB" for k, v in picks.items())
        for arch, picks in result.recommendations.items()
    )
    sample = pd.DataFrame(result.sample).rename(columns={"mix_share": "share of the mix"})
    parts = [
        f"<h1>imgops worker memory sizing ({html.escape(', '.join(result.options.architectures))})</h1>",
        f"<p>Target: {html.escape(target)}. Recommended ({html.escape(strategy)}, {html.escape(result.lead)}): "
        f"<b>{lead[strategy]} MB</b>. All strategies: {recommended}.</p>",
        f"<p>{html.escape(sample_line(result))}</p>",
        sample.to_html(border=0, index=False),
        f"<p>{html.escape(floor_line(result))}</p>",
        f"<p>{html.escape(calibration_line(result))}</p>",
        "<h2>Per memory size</h2>",
        view.to_html(border=0),
        f"<figure id='plot-sizing'><img alt='duration and cost vs memory' src='data:image/png;base64,{plot}'>"
        "<figcaption>Duration (left) and cost per invocation (right) against memory, as AWS Lambda Power Tuning "
        "draws it</figcaption></figure>",
    ]
    if result.floor is not None:
        candidates = pd.DataFrame(result.floor.candidates)
        candidates["pixels"] = [megapixels(p) for p in candidates["pixels"]]
        fit = result.floor.as_dict()["fit"]
        parts += [
            "<h2>Worst case</h2>",
            "<p>Every accepted format and mode at a few megapixels (peak memory beyond the warm process):</p>",
            candidates.to_html(border=0, index=False),
            f"<p>Fit: {html.escape(fit['method'])}: peak ≈ {fit['intercept_mb']} MB + {fit['mb_per_megapixel']} MB "
            f"per megapixel (largest residual {fit['max_residual_mb']} MB).</p>",
        ]
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>imgops sizing</title>"
        "<style>body{font-family:sans-serif;max-width:75em}td,th{padding:2px 8px;text-align:right}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
