"""One load-test run end to end: corpus → uploads → results folder (rows, summary, report.html)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from loadtest.corpus import CorpusImage
from loadtest.cost import cost_breakdown, load_prices, workload_from_run
from loadtest.harness import LoadTest, RunOptions, RunState, records_as_rows
from loadtest.report import write_report
from loadtest.reports import Report, parse_reports
from loadtest.summary import summarize
from loadtest.targets import LoadTarget

# In the run folder when the run started an embedded local stack: its output (worker REPORT lines, logs, warnings).
STACK_LOG = "local-stack.log"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    folder: Path
    summary: dict[str, Any]
    frame: pd.DataFrame
    reports: list[Report]


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


def execute_run(
    *,
    target: LoadTarget,
    plan: list[CorpusImage],
    options: RunOptions,
    out_dir: Path,
    region: str = "us-east-1",
    on_tick: Callable[[RunState], None] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Send `plan`, wait for its results, and write the run folder `out_dir/<run_id>` (a fresh id unless given: a
    caller that needs the folder before the run, for the embedded stack's log, picks it with `new_run_id`)."""
    run_id = run_id or new_run_id()
    offset = target.report_log.stat().st_size if target.report_log and target.report_log.exists() else 0
    state = LoadTest(target, plan, options).run(on_tick)
    if target.report_log is not None:
        time.sleep(0.5)  # the last invocation's REPORT line is written right after its deletes
        reports = read_local_reports(target.report_log, offset)
    else:
        reports = read_aws_reports(target, state.started)
    frame = pd.DataFrame(records_as_rows(state))
    summary = summarize(
        frame,
        reports,
        run_id=run_id,
        target=target.name,
        started=state.started,
        finished=state.finished or time.time(),
    )
    folder = out_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "images.parquet", index=False)
    frame.to_csv(folder / "images.csv", index=False)
    pd.DataFrame([r.__dict__ for r in reports]).to_csv(folder / "worker-reports.csv", index=False)
    costs = cost_breakdown(workload_from_run(summary), load_prices(region))
    summary["cost_per_1000_images_usd"] = round(float(costs["per_1000_images"]["Total"]), 5)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    costs.to_csv(folder / "cost.csv")
    write_report(folder / "report.html", frame=frame, reports=reports, summary=summary, costs=costs)
    return RunResult(run_id, folder, summary, frame, reports)
