"""One load-test run end to end: corpus → uploads → results folder.

The run folder `runs/<id>/`: images.parquet and images.csv (one row per image), worker-reports.csv (the worker's
REPORT lines), summary.json (loadtest/summary.schema.json), histograms.json (the HDR histograms behind the
percentiles, encoded), timeline.csv (per second: target vs achieved starts, errors, latency), cost.csv,
thresholds.xml when asked (JUnit) and report.html. The Locust scale-out (loadtest/locustfile.py) writes the same
folder from its workers' rows and histograms through `write_run`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from loadtest.corpus import CorpusImage
from loadtest.cost import cost_breakdown, load_prices, workload_from_run
from loadtest.harness import LoadTest, RunOptions, RunState, records_as_rows
from loadtest.report import write_report
from loadtest.reports import Report, parse_reports
from loadtest.stages import Schedule
from loadtest.summary import encode_histograms, histograms_from_frame, summarize
from loadtest.targets import LoadTarget
from loadtest.thresholds import ThresholdSet, Verdict, evaluate, junit_xml

# In the run folder when the run started an embedded local stack: its output (worker REPORT lines, logs, warnings).
STACK_LOG = "local-stack.log"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    folder: Path
    summary: dict[str, Any]
    frame: pd.DataFrame
    reports: list[Report]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def breached(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if not verdict.ok]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def read_local_reports(path: Path | None, offset: int) -> list[Report]:
    if path is None or not path.exists():
        return []
    with path.open("r", encoding="utf-8") as handle:
        handle.seek(offset)
        return parse_reports(handle.readlines())


def read_aws_reports(target: LoadTarget, started: float) -> list[Report]:
    logs = target.client("logs")
    lines: list[str] = []
    paginator = logs.get_paginator("filter_log_events")
    for page in paginator.paginate(
        logGroupName=f"/aws/lambda/{target.worker_function}",
        startTime=int(started * 1000),
        filterPattern='"REPORT RequestId"',
    ):
        lines += [event["message"] for event in page.get("events", [])]
    return parse_reports(lines)


def read_reports(target: LoadTarget, offset: int, started: float) -> list[Report]:
    """The worker's REPORT lines since the run started: the local runtime's file, or CloudWatch Logs."""
    if target.report_log is not None:
        time.sleep(0.5)  # the last invocation's REPORT line is written right after its deletes
        return read_local_reports(target.report_log, offset)
    return read_aws_reports(target, started)


def report_log_offset(target: LoadTarget) -> int:
    return target.report_log.stat().st_size if target.report_log and target.report_log.exists() else 0


def live_check(
    thresholds: ThresholdSet, *, schedule: Schedule | None, max_lag_s: float | None
) -> Callable[[RunState], str | None] | None:
    """`should_stop` for LoadTest.run: the aborting thresholds on the running state (after the abort delay),
    over what has started so far; None when no threshold aborts."""
    aborting = thresholds.aborting()
    if not aborting:
        return None

    def check(state: RunState) -> str | None:
        if time.time() - state.started < thresholds.abort_delay_s:
            return None
        frame = pd.DataFrame(records_as_rows(state))
        frame = frame[frame["started_at"].notna() | (frame["status"] == "DROPPED")]
        if frame.empty:
            return None
        summary = summarize(
            frame,
            [],
            run_id="live",
            target="",
            started=state.started,
            finished=time.time(),
            schedule=schedule,
            max_lag_s=max_lag_s,
            with_timeline=False,
        )
        breached = [verdict for verdict in evaluate(aborting, summary, live=True) if not verdict.ok]
        if not breached:
            return None
        elapsed = time.time() - state.started
        return f"aborted after {elapsed:.1f} s: " + "; ".join(verdict.message for verdict in breached)

    return check


def execute_run(
    *,
    target: LoadTarget,
    plan: list[CorpusImage],
    options: RunOptions,
    out_dir: Path,
    region: str = "us-east-1",
    on_tick: Callable[[RunState], None] | None = None,
    run_id: str | None = None,
    thresholds: ThresholdSet | None = None,
    junit: Path | None = None,
) -> RunResult:
    """Send `plan`, wait for its results, and write the run folder `out_dir/<run_id>` (a fresh id unless given: a
    caller that needs the folder before the run, for the embedded stack's log, picks it with `new_run_id`).
    `thresholds` are evaluated on the summary (and, those that abort, on the running state)."""
    run_id = run_id or new_run_id()
    offset = report_log_offset(target)
    test = LoadTest(target, plan, options)
    thresholds = thresholds or ThresholdSet()
    should_stop = live_check(thresholds, schedule=test.schedule, max_lag_s=options.max_lag_seconds)
    state = test.run(on_tick, should_stop)
    reports = read_reports(target, offset, state.started)
    return write_run(
        out_dir=out_dir,
        run_id=run_id,
        target_name=target.name,
        rows=records_as_rows(state),
        reports=reports,
        started=state.started,
        finished=state.finished or time.time(),
        schedule=test.schedule,
        max_lag_s=options.max_lag_seconds,
        region=region,
        thresholds=thresholds,
        aborted=state.aborted,
        junit=junit,
    )


def write_run(
    *,
    out_dir: Path,
    run_id: str,
    target_name: str,
    rows: list[dict[str, Any]],
    reports: list[Report],
    started: float,
    finished: float,
    schedule: Schedule | None = None,
    max_lag_s: float | None = None,
    region: str = "us-east-1",
    thresholds: ThresholdSet | None = None,
    aborted: str | None = None,
    histograms: Mapping[str, HdrHistogram] | None = None,
    junit: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RunResult:
    """The run folder from per-image rows (and, from Locust workers, their merged histograms)."""
    frame = pd.DataFrame(rows)
    histograms = histograms if histograms is not None else histograms_from_frame(frame)
    summary = summarize(
        frame,
        reports,
        run_id=run_id,
        target=target_name,
        started=started,
        finished=finished,
        schedule=schedule,
        max_lag_s=max_lag_s,
        histograms=histograms,
    )
    summary["aborted"] = aborted
    summary.update(extra or {})
    folder = out_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "images.parquet", index=False)
    frame.to_csv(folder / "images.csv", index=False)
    pd.DataFrame([r.__dict__ for r in reports]).to_csv(folder / "worker-reports.csv", index=False)
    pd.DataFrame(summary["timeline"]).to_csv(folder / "timeline.csv", index=False)
    (folder / "histograms.json").write_text(json.dumps(encode_histograms(histograms), indent=1), encoding="utf-8")
    costs = cost_breakdown(workload_from_run(summary), load_prices(region))
    summary["cost_per_1000_images_usd"] = round(float(costs["per_1000_images"]["Total"]), 5)
    verdicts = evaluate((thresholds or ThresholdSet()).thresholds, summary)
    summary["thresholds"] = [verdict.as_dict() for verdict in verdicts]
    summary["thresholds_ok"] = all(verdict.ok for verdict in verdicts)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    costs.to_csv(folder / "cost.csv")
    if junit is not None:
        xml = junit_xml(verdicts, run_id=run_id, duration_s=float(summary["duration_s"]), aborted=aborted)
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(xml, encoding="utf-8")
    write_report(folder / "report.html", frame=frame, reports=reports, summary=summary, costs=costs)
    return RunResult(run_id, folder, summary, frame, reports, verdicts)
