"""From per-image rows and REPORT lines to the figures an SRE reads: throughput, percentiles, errors."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.reports import Report

STAGES = {
    "presign": "presign_ms",
    "upload": "upload_ms",
    "queue wait": "queue_wait_ms",
    "processing": "processing_ms",
    "end to end": "end_to_end_ms",
}
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def latency_table(frame: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    table: dict[str, dict[str, float | None]] = {}
    for stage, column in STAGES.items():
        values = pd.to_numeric(frame[column], errors="coerce").dropna() if column in frame else pd.Series(dtype=float)
        row: dict[str, float | None] = {
            name: _round(values.quantile(q)) if len(values) else None for name, q in PERCENTILES.items()
        }
        row["max"] = _round(values.max()) if len(values) else None
        row["count"] = float(len(values))
        table[stage] = row
    return table


def worker_figures(reports: list[Report]) -> dict[str, Any]:
    if not reports:
        return {"invocations": 0}
    durations = pd.Series([r.duration_ms for r in reports])
    billed = pd.Series([r.billed_duration_ms for r in reports])
    return {
        "invocations": len(reports),
        "duration_ms": {name: _round(durations.quantile(q)) for name, q in PERCENTILES.items()}
        | {"max": _round(durations.max())},
        "billed_ms_p50": _round(billed.quantile(0.5)),
        "billed_ms_total": float(billed.sum()),
        "memory_size_mb": reports[0].memory_size_mb,
        "max_memory_used_mb": max(r.max_memory_used_mb for r in reports),
        "cold_starts": sum(r.init_duration_ms is not None for r in reports),
    }


def summarize(
    frame: pd.DataFrame, reports: list[Report], *, run_id: str, target: str, started: float, finished: float
) -> dict[str, Any]:
    counts = {str(k): int(v) for k, v in frame["status"].value_counts().items()}
    completed = frame[frame["status"].isin(["DONE", "FAILED"])]
    uploaded = frame[frame["uploaded_at"].notna()]
    end = float(completed["completed_at"].max()) if len(completed) else finished
    window = max(1e-9, end - started)
    upload_window = max(1e-9, float(uploaded["uploaded_at"].max()) - started) if len(uploaded) else 1e-9
    failures = frame[frame["status"].isin(["FAILED", "UPLOAD_ERROR", "OUTSTANDING"])]
    reasons = failures.assign(reason=failures["reason"].replace("", "(no reason: still outstanding at the timeout)"))
    grouped = reasons.groupby(["status", "reason"]).size().reset_index()
    errors = {f"{status}: {reason}": int(count) for status, reason, count in grouped.itertuples(index=False)}
    return {
        "run_id": run_id,
        "target": target,
        "images": len(frame),
        "counts": counts,
        "duration_s": _round(finished - started),
        "throughput_images_per_s": _round(len(completed) / window) if len(completed) else 0.0,
        "upload_images_per_s": _round(len(uploaded) / upload_window) if len(uploaded) else 0.0,
        "upload_mb_per_s": _round(float(uploaded["bytes_in"].sum()) / 1e6 / upload_window) if len(uploaded) else 0.0,
        "bytes_in_per_image": _round(float(uploaded["bytes_in"].mean())) if len(uploaded) else None,
        "bytes_out_per_image": _round(float(pd.to_numeric(completed["bytes_out"], errors="coerce").mean()))
        if len(completed) and completed["bytes_out"].notna().any()
        else None,
        "latency_ms": latency_table(frame),
        "errors": errors,
        "worker": worker_figures(reports),
    }


def _round(value: Any) -> float:
    return round(float(value), 2)
