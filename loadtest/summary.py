"""From per-image rows and REPORT lines to the figures an SRE reads: throughput, percentiles, errors.

Latency percentiles come from HDR histograms (the `hdrhistogram` package, as Gatling and wrk2 use): values are
recorded in microseconds from 1 µs to 1 h with 3 significant digits, so a reported percentile is within 0.1% of
the exact one; a value above 1 h is recorded as 1 h. Histograms are encoded (compressed, base64) to travel:
Locust workers send theirs to the master, which adds them up - the merged percentiles are those of all images.

Two kinds of latency:

- `stages_ms`: how long after an image's start each stage had finished - presign (grant received), upload (file
  stored: presign + POST) and e2e (its DONE/FAILED notification received) - measured both from the *intended*
  start (coordinated omission corrected: a start the harness or a saturated system delayed counts against the
  system, as the user who wanted to upload then waited too) and from the *actual* start.
- `latency_ms`: each component on its own, from its own start: presign, upload (the POST alone), queue wait,
  processing, and end to end (upload stored → notification).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from loadtest.reports import Report
from loadtest.stages import LATE_AFTER_SECONDS, Schedule

STAGES = {
    "presign": "presign_ms",
    "upload": "upload_ms",
    "queue wait": "queue_wait_ms",
    "processing": "processing_ms",
    "end to end": "end_to_end_ms",
}
# Stage → the column holding when it finished (epoch seconds); "presigned_at" is derived from presign_ms.
STAGE_ENDS = {"presign": "presigned_at", "upload": "uploaded_at", "e2e": "completed_at"}
VIEWS = ("intended", "actual")
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}

HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000  # 1 h
HDR_SIGNIFICANT_DIGITS = 3
HDR_PRECISION = {
    "unit": "microseconds",
    "lowest_us": HDR_LOWEST_US,
    "highest_us": HDR_HIGHEST_US,
    "significant_digits": HDR_SIGNIFICANT_DIGITS,
    "text": "HDR histograms, 1 µs to 1 h, 3 significant digits (percentiles within 0.1%)",
}
# Statuses that never sent anything: not counted in the failure rate.
UNSENT = ("DROPPED", "NOT_STARTED", "ABORTED")
FAILED = ("FAILED", "UPLOAD_ERROR", "OUTSTANDING")


# --- HDR histograms ------------------------------------------------------------------------------------------


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)


def histogram_of(values_ms: Any) -> HdrHistogram:
    """A histogram of millisecond values (NaN and None skipped; negative values as 0; above 1 h as 1 h)."""
    histogram = new_histogram()
    array = pd.to_numeric(pd.Series(values_ms, dtype=object), errors="coerce").dropna().to_numpy(dtype=float)
    microseconds = np.clip(np.rint(array * 1000), 0, HDR_HIGHEST_US).astype(np.int64)
    for value, count in zip(*np.unique(microseconds, return_counts=True), strict=True):
        histogram.record_value(int(value), int(count))
    return histogram


def stage_values(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Every latency the summary reports, per image, in ms: `<stage>.<view>`, `component.<name>`, `start_lag`."""
    started = _numeric(frame, "started_at")
    intended = _numeric(frame, "intended_at").fillna(started)
    finished = frame["status"].isin(["DONE", "FAILED"]) if "status" in frame else pd.Series(True, index=frame.index)
    ends = {
        "presigned_at": started + _numeric(frame, "presign_ms") / 1000,
        "uploaded_at": _numeric(frame, "uploaded_at"),
        "completed_at": _numeric(frame, "completed_at").where(finished),
    }
    values: dict[str, pd.Series] = {}
    for stage, column in STAGE_ENDS.items():
        values[f"{stage}.intended"] = (ends[column] - intended) * 1000
        values[f"{stage}.actual"] = (ends[column] - started) * 1000
    for stage, column in STAGES.items():
        values[f"component.{stage}"] = _numeric(frame, column)
    values["start_lag"] = (started - intended) * 1000
    return {name: series.dropna() for name, series in values.items()}


def histograms_from_frame(frame: pd.DataFrame) -> dict[str, HdrHistogram]:
    return {name: histogram_of(series) for name, series in stage_values(frame).items()}


def encode_histograms(histograms: Mapping[str, HdrHistogram]) -> dict[str, str]:
    """Name → the histogram's compressed, base64 encoding (HdrHistogram's V2 format, readable by every port)."""
    return {name: histogram.encode().decode("ascii") for name, histogram in histograms.items()}


def decode_histograms(encoded: Mapping[str, str]) -> dict[str, HdrHistogram]:
    return {name: HdrHistogram.decode(text.encode("ascii")) for name, text in encoded.items()}


def merge_histograms(parts: list[Mapping[str, HdrHistogram]]) -> dict[str, HdrHistogram]:
    """Adds each name's histograms up (counts add; percentiles are then those of every recorded value)."""
    merged: dict[str, HdrHistogram] = {}
    for part in parts:
        for name, histogram in part.items():
            merged.setdefault(name, new_histogram()).add(histogram)
    return merged


def percentiles(histogram: HdrHistogram | None) -> dict[str, float | None]:
    """p50…p99.9, max and mean in ms, and the count; None for every figure of an empty histogram."""
    count = histogram.get_total_count() if histogram is not None else 0
    if histogram is None or count == 0:
        return dict.fromkeys(PERCENTILES) | {"max": None, "mean": None, "count": 0.0}
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))
    row: dict[str, float | None] = {name: _ms(values[q]) for name, q in PERCENTILES.items()}
    row["max"] = _ms(histogram.get_max_value())
    row["mean"] = _ms(histogram.get_mean_value())
    row["count"] = float(count)
    return row


def _ms(microseconds: float) -> float:
    return round(float(microseconds) / 1000, 3)


# --- Tables --------------------------------------------------------------------------------------------------


def latency_table(
    frame: pd.DataFrame, histograms: Mapping[str, HdrHistogram] | None = None
) -> dict[str, dict[str, float | None]]:
    """Each component from its own start (the POST alone for upload), HDR percentiles in ms."""
    histograms = histograms if histograms is not None else histograms_from_frame(frame)
    return {stage: percentiles(histograms.get(f"component.{stage}")) for stage in STAGES}


def stage_table(histograms: Mapping[str, HdrHistogram]) -> dict[str, dict[str, dict[str, float | None]]]:
    return {stage: {view: percentiles(histograms.get(f"{stage}.{view}")) for view in VIEWS} for stage in STAGE_ENDS}


def worker_figures(reports: list[Report], completed: int = 0) -> dict[str, Any]:
    if not reports:
        return {"invocations": 0}
    durations = pd.Series([r.duration_ms for r in reports])
    billed = pd.Series([r.billed_duration_ms for r in reports])
    return {
        "invocations": len(reports),
        "duration_ms": {name: _round(durations.quantile(q / 100)) for name, q in PERCENTILES.items()}
        | {"max": _round(durations.max())},
        "billed_ms_p50": _round(billed.quantile(0.5)),
        "billed_ms_total": float(billed.sum()),
        "billed_ms_per_image": _round(billed.sum() / completed) if completed else None,
        "memory_size_mb": reports[0].memory_size_mb,
        "max_memory_used_mb": max(r.max_memory_used_mb for r in reports),
        "cold_starts": sum(r.init_duration_ms is not None for r in reports),
    }


def starts_figures(
    frame: pd.DataFrame,
    histograms: Mapping[str, HdrHistogram],
    *,
    schedule: Schedule | None,
    max_lag_s: float | None,
    started: float,
) -> dict[str, Any]:
    """Scheduled vs sent, late and dropped starts, and the start lag (actual − intended)."""
    status = frame["status"]
    sent = int(_numeric(frame, "started_at").notna().sum())
    late = int(frame["late"].fillna(False).astype(bool).sum()) if "late" in frame else 0
    dropped = int((status == "DROPPED").sum())
    starts_at = _numeric(frame, "started_at").dropna()
    window = float(starts_at.max() - started) if len(starts_at) > 1 else 0.0
    return {
        "scheduled": int(len(frame) - (status == "NOT_STARTED").sum()),
        "sent": sent,
        "late": late,
        "dropped": dropped,
        "not_started": int((status == "NOT_STARTED").sum()),
        "late_after_ms": LATE_AFTER_SECONDS * 1000 if schedule is not None else None,
        "max_lag_ms": max_lag_s * 1000 if schedule is not None and max_lag_s is not None else None,
        "lag_ms": percentiles(histograms.get("start_lag")),
        "target_rate_per_s": _round(schedule.total_arrivals / schedule.duration_s) if schedule else None,
        # Starts per second over the window they happened in (the first to the last start).
        "achieved_rate_per_s": _round((sent - 1) / window) if window > 0 else None,
    }


def timeline(frame: pd.DataFrame, *, started: float, schedule: Schedule | None) -> list[dict[str, Any]]:
    """One row per second since the run started: target vs achieved start rate, late/dropped starts, uploads,
    completions, errors, and the latency of the images meant to start in that second."""
    started_s = _second(frame, "started_at", started)
    intended_s = _second(frame, "intended_at", started).fillna(started_s)
    completed_s = _second(frame, "completed_at", started)
    uploaded_s = _second(frame, "uploaded_at", started)
    status = frame["status"]
    expected = schedule.expected_per_second() if schedule is not None else []
    horizon = max([len(expected), *(int(s.max()) + 1 for s in (started_s, completed_s, intended_s) if s.notna().any())])
    values = stage_values(frame)
    rows: list[dict[str, Any]] = []
    by_second = {
        "scheduled": intended_s[status != "NOT_STARTED"],
        "started": started_s,
        "late": started_s[frame["late"].fillna(False).astype(bool)] if "late" in frame else started_s.iloc[0:0],
        "dropped": intended_s[status == "DROPPED"],
        "uploaded": uploaded_s,
        "completed": completed_s[status.isin(["DONE", "FAILED"])],
        "failed": pd.concat([completed_s[status == "FAILED"], started_s[status == "UPLOAD_ERROR"]]),
    }
    counts = {name: series.dropna().astype(int).value_counts() for name, series in by_second.items()}
    latency_by_second = {
        name: values[key].groupby(intended_s.loc[values[key].index].astype(int))
        for name, key in (("e2e", "e2e.intended"), ("e2e_actual", "e2e.actual"), ("upload", "upload.intended"))
    }
    quantiles = {
        name: {q: groups.quantile(q / 100) if len(groups) else pd.Series(dtype=float) for q in (50, 99)}
        for name, groups in latency_by_second.items()
    }
    for second in range(horizon):
        row: dict[str, Any] = {"second": second}
        row["target_per_s"] = round(expected[second], 3) if second < len(expected) else None
        for name, series in counts.items():
            row[name] = int(series.get(second, 0))
        for name, by_q in quantiles.items():
            for q, series in by_q.items():
                value = series.get(second)
                row[f"{name}_p{q}_ms"] = None if value is None or math.isnan(value) else round(float(value), 1)
        rows.append(row)
    return rows


def summarize(
    frame: pd.DataFrame,
    reports: list[Report],
    *,
    run_id: str,
    target: str,
    started: float,
    finished: float,
    schedule: Schedule | None = None,
    max_lag_s: float | None = None,
    histograms: Mapping[str, HdrHistogram] | None = None,
    with_timeline: bool = True,
) -> dict[str, Any]:
    """summary.json (documented in loadtest/summary.schema.json). `histograms`, if given (merged from Locust
    workers), must be those of `frame`'s rows; otherwise they are built from them."""
    histograms = histograms if histograms is not None else histograms_from_frame(frame)
    counts = {str(k): int(v) for k, v in frame["status"].value_counts().items()}
    completed = frame[frame["status"].isin(["DONE", "FAILED"])]
    uploaded = frame[frame["uploaded_at"].notna()]
    end = float(completed["completed_at"].max()) if len(completed) else finished
    window = max(1e-9, end - started)
    upload_window = max(1e-9, float(uploaded["uploaded_at"].max()) - started) if len(uploaded) else 1e-9
    failures = frame[frame["status"].isin(FAILED)]
    reasons = failures.assign(reason=failures["reason"].replace("", "(no reason: still outstanding at the timeout)"))
    grouped = reasons.groupby(["status", "reason"]).size().reset_index()
    errors = {f"{status}: {reason}": int(count) for status, reason, count in grouped.itertuples(index=False)}
    attempted = len(frame) - int(frame["status"].isin(UNSENT).sum())
    offered = len(frame) - counts.get("NOT_STARTED", 0)
    starts = starts_figures(frame, histograms, schedule=schedule, max_lag_s=max_lag_s, started=started)
    return {
        "run_id": run_id,
        "target": target,
        "model": "open" if schedule is not None else "closed",
        "schedule": schedule.as_dict() if schedule is not None else None,
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
        "rates": {
            "failed_rate": round(len(failures) / attempted, 6) if attempted else None,
            "dropped_rate": round(starts["dropped"] / offered, 6) if offered else None,
            "late_rate": round(starts["late"] / max(1, starts["sent"]), 6) if starts["sent"] else None,
        },
        "starts": starts,
        "hdr": HDR_PRECISION,
        "stages_ms": stage_table(histograms),
        "latency_ms": latency_table(frame, histograms),
        "errors": errors,
        "worker": worker_figures(reports, len(completed)),
        "timeline": timeline(frame, started=started, schedule=schedule) if with_timeline else [],
        "aborted": None,
    }


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _second(frame: pd.DataFrame, column: str, started: float) -> pd.Series:
    return (_numeric(frame, column) - started).floordiv(1).clip(lower=0)


def _round(value: Any) -> float:
    return round(float(value), 2)
