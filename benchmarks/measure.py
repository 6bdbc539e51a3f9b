"""Re-measure a documented benchmark: run its command exactly as the docs show it (plus the flags that capture its
output), keep what the docs cite in benchmarks/<name>.json with the command, date, commit and machine, then render
the docs from it. One step, so the prose cannot keep an old figure beside new data.

The run folders the measurements write go to runs/ (not committed); `cost` prices the runs that
benchmarks/closed-loop.json and benchmarks/sizing.json record, as a user would after running both.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.figures import DATA_DIR, ROOT, FiguresError, docs, render_all

RUNS = ROOT / "runs"
Extract = Callable[[Path, str], dict[str, Any]]  # (work folder, stdout) -> {"figures": ..., "table": ...}


@dataclass(frozen=True)
class Measurement:
    name: str
    what: str
    command: str  # exactly as the docs show it
    capture: tuple[str, ...]  # flags added to capture its output; "{work}" is the measurement's folder
    extract: Extract


def markdown_rows(text: str) -> dict[str, Any]:
    """The first Markdown table in a command's output, as columns and rows."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        raise FiguresError("the command printed no Markdown table")
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {"columns": cells[0], "rows": [row for row in cells[2:] if row != cells[0]]}


def _summary(work: Path) -> tuple[dict[str, Any], Path]:
    folders = sorted(path.parent for path in (work / "runs").glob("*/summary.json"))
    if not folders:
        raise FiguresError(f"the run wrote no summary.json under {work / 'runs'}")
    folder = folders[-1]
    return json.loads((folder / "summary.json").read_text(encoding="utf-8")), folder


def _keep(folder: Path) -> str:
    """Move a run folder to runs/ (where `cost` and users find it); returns its path from the repository root."""
    RUNS.mkdir(exist_ok=True)
    target = RUNS / folder.name
    if not target.exists():
        shutil.move(folder, target)
    return f"{RUNS.name}/{folder.name}"


def _per_kind_processing_p50(folder: Path) -> dict[str, float]:
    by_kind: dict[str, list[float]] = {}
    with (folder / "images.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["status"] == "DONE" and row["processing_ms"]:
                by_kind.setdefault(row["kind"], []).append(float(row["processing_ms"]))
    return {kind: round(statistics.median(values)) for kind, values in sorted(by_kind.items())}


def _p(figures: dict[str, Any], name: str, statistic: str) -> float | None:
    """One statistic of a summary's latency (or worker) entry; None where the run has none (--no-wait)."""
    return (figures.get(name) or {}).get(statistic)


def _seconds(ms: float | None) -> float | None:
    """Milliseconds as seconds; None stays None (a run with --no-wait has no end-to-end figures)."""
    return None if ms is None else ms / 1000


def _run_figures(work: Path, _stdout: str) -> dict[str, Any]:
    summary, folder = _summary(work)
    latency, worker, counts = summary["latency_ms"] or {}, summary["worker"] or {}, summary["counts"]
    done, failed = counts.get("DONE", 0), counts.get("FAILED", 0)
    figures = {
        "run": _keep(folder),
        "images": summary["images"],
        "done": done,
        "failed": failed,
        "lost": summary["images"] - done - failed,
        "seconds": summary["duration_s"],
        "throughput": summary["throughput_images_per_s"],
        "upload_rate": summary["upload_images_per_s"],
        "upload_mb_per_s": summary["upload_mb_per_s"],
        "presign_p50_ms": _p(latency, "presign", "p50"),
        "upload_p50_ms": _p(latency, "upload", "p50"),
        "processing_p50_ms": _p(latency, "processing", "p50"),
        "processing_p99_ms": _p(latency, "processing", "p99"),
        "e2e_p50_ms": _p(latency, "end to end", "p50"),
        "e2e_p90_ms": _p(latency, "end to end", "p90"),
        "e2e_p99_ms": _p(latency, "end to end", "p99"),
        "e2e_p50_s": _seconds(_p(latency, "end to end", "p50")),
        "e2e_p99_s": _seconds(_p(latency, "end to end", "p99")),
        "invocations": worker.get("invocations"),
        "invocation_p50_s": _seconds(_p(worker, "duration_ms", "p50")),
        "billed_ms_per_image": worker.get("billed_ms_per_image"),
        "memory_size_mb": worker.get("memory_size_mb"),
        "max_memory_used_mb": worker.get("max_memory_used_mb"),
        "cost_per_1000": summary["cost_per_1000_images_usd"],
    }
    figures |= {f"processing_p50_ms_{kind}": ms for kind, ms in _per_kind_processing_p50(RUNS / folder.name).items()}
    return {"figures": figures}


_TABLE_EDGES = frozenset("┏┃┡│└")


def _main_job(work: Path, stdout: str) -> dict[str, Any]:
    """The run's figures and what it printed: its summary, from the `Run <id>` line to the report's path."""
    extracted = _run_figures(work, stdout)
    lines = stdout.replace(f"{work}/", "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Run ")), None)
    end = next((i for i, line in enumerate(lines) if line.startswith("report: ")), None)
    if start is None or end is None:
        raise FiguresError("the main job printed no summary (no `Run <id>` … `report:` lines)")
    summary = [line.rstrip() for line in lines[start : end + 1]]
    tables = [line for line in summary if line.strip()[:1] in _TABLE_EDGES or line.startswith(" ")]
    shown = [line for line in summary if line not in tables]
    shown[2:2] = ["[two latency tables, p50 to max: by stage, and by component (presign … end to end)]"]
    extracted["figures"]["excerpt"] = "\n".join(shown)
    return extracted


def _selfcheck(_work: Path, stdout: str) -> dict[str, Any]:
    return {"figures": json.loads(stdout)}


def _thumbnails(work: Path, stdout: str) -> dict[str, Any]:
    approaches = {entry["name"]: entry for entry in json.loads((work / "thumbnails.json").read_text())}
    imgops, tutorial = approaches["imgops"], approaches["tutorial"]
    ratio = statistics.median(tutorial["times_ms"]) / statistics.median(imgops["times_ms"])
    cpu_ratio = statistics.median(tutorial["cpu_ms"]) / statistics.median(imgops["cpu_ms"])
    figures = {"imgops_ms": statistics.median(imgops["times_ms"]), "tutorial_ratio": ratio, "cpu_ratio": cpu_ratio}
    return {"figures": figures, "table": markdown_rows(stdout)}


def _batch(work: Path, stdout: str) -> dict[str, Any]:
    document = json.loads((work / "batch.json").read_text())
    rows = {(row["latency"], row["mode"]): row for row in document["results"]}
    figures: dict[str, Any] = {"load_average": round(document["load_average"][0], 1)}
    for (latency, mode), row in rows.items():
        key = "none" if latency in ("none", "0", "") else "aws_like"
        figures[f"{key}_{mode}_billed_ms"] = row["billed_ms_per_image"]
    for key in ("none", "aws_like"):
        sequential, overlapped = figures.get(f"{key}_sequential_billed_ms"), figures.get(f"{key}_overlapped_billed_ms")
        if sequential and overlapped:
            figures[f"{key}_ratio"] = overlapped / sequential
    return {"figures": figures, "table": markdown_rows(stdout)}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _sizing(work: Path, _stdout: str) -> dict[str, Any]:
    paths = sorted((work / "runs").glob("sizing-*/sizing.json"))
    if not paths:
        raise FiguresError("sizing wrote no sizing.json")
    document = json.loads(paths[-1].read_text(encoding="utf-8"))
    arch = document["architecture"]
    rows = []
    for row in document["table"]:
        error = row.get("model_error_pct")
        measured = row.get("measured_p50_ms")
        rows.append([
            row["memory_mb"],
            "–" if measured is None else f"{_ms(measured)}/{_ms(row.get('measured_p95_ms'))}",
            f"{_ms(row['modeled_p50_ms'])}/{_ms(row['modeled_p95_ms'])}",
            "–" if error is None else f"{error:+.0f} %".replace("-", "−"),
            f"{1000 * (row.get('measured_cost_' + arch) or row['modeled_cost_' + arch]):.5f}",
            row.get("worst_case") or "–",  # sizing's own word: survives, OOM, OOM (RSS) or timeout
        ])  # fmt: skip
    floor = document["floor"] or {}
    picks = document["recommendations_mb"]
    caps = [
        f"{row['memory_mb']:,} MB → {row['max_pixels_here'] / 1e6:.1f} MP"
        for row in document["table"]
        if row.get("worst_case") not in (None, "survives") and row.get("max_pixels_here")
    ]
    calibration = ", ".join(
        f"{point['quota_pct']} % → {point['ratio']:.2f}×" for point in document.get("calibration", [])
    )
    figures = {
        "run": _keep(paths[-1].parent),
        "architecture": arch,
        "sample": ", ".join(f"{entry['kind']} {entry['count']}" for entry in document["sample"]),
        "images": sum(entry["count"] for entry in document["sample"]),
        "cost_mb": picks["cost"],
        "speed_mb": picks["speed"],
        "balanced_mb": picks["balanced"],
        "worst_kind": floor.get("kind", "–"),
        "worst_pixels": floor.get("pixels", 0),
        "worst_peak_mb": floor.get("peak_mb_uncapped", 0.0),
        "floor_mb": floor.get("floor_mb", 0),
        "pixel_caps": "; ".join(caps) or "none needed",
        "calibration": calibration or "not measured",
    }
    columns = ["memory MB", "measured p50/p95 ms", "modeled p50/p95 ms", "model error", "$ / 1,000 images"]
    columns.append("worst accepted input")
    return {"figures": figures, "table": {"columns": columns, "rows": rows}}


def _cost(_work: Path, stdout: str) -> dict[str, Any]:
    document = json.loads(stdout)
    compare = document["compare"]
    total = compare.get("Total") or compare.get("total") or {}
    columns = list(total)
    figures = {
        "prices_as_of": document["prices_valid_as_of"],
        "region": document["region"],
        "architecture": document["architecture"],
        "run_label": columns[0] if columns else "",
        "run_total": total.get(columns[0], 0.0) if columns else 0.0,
        "recommended_label": columns[1] if len(columns) > 1 else "",
        "recommended_total": total.get(columns[1], 0.0) if len(columns) > 1 else 0.0,
        "other_label": columns[2] if len(columns) > 2 else "",
        "other_total": total.get(columns[2], 0.0) if len(columns) > 2 else 0.0,
        "storage": document["breakdown"]["S3 storage (first month)"]["per_1000_images"],
        "puts": document["breakdown"]["S3 PUT"]["per_1000_images"],
        # The capacity metrics' line: its 4 object events per image, and what it costs a month whatever changes.
        "capacity_events": document["breakdown"]["Capacity metrics (events)"]["per_1000_images"],
        "capacity_events_month": document["breakdown"]["Capacity metrics (events)"]["per_month"],
        "capacity_fixed_month": document["breakdown"]["Capacity metrics (fixed)"]["per_month"],
    }
    return {"figures": figures}


def _drills(_work: Path, stdout: str) -> dict[str, Any]:
    """`imgops drill all` prints each drill's seconds, then `DRILL PASSED: N drills in T s, nothing lost.`"""
    times = [line.split() for line in stdout.splitlines() if line.startswith("  ") and line.rstrip().endswith(" s")]
    rows = [[words[0], f"{float(words[1]):.0f} s"] for words in times if len(words) == 3]
    passed = next((line for line in stdout.splitlines() if line.startswith("DRILL PASSED")), None)
    if passed is None or not rows:
        raise FiguresError("the drills printed no `DRILL PASSED` line or no times")
    seconds = sum(float(words[1]) for words in times if len(words) == 3)
    figures = {"drills": len(rows), "drill_seconds": seconds}
    return {"figures": figures, "table": {"columns": ["drill", "time"], "rows": rows}}


def alarm_scenarios(_work: Path, stdout: str) -> dict[str, Any]:
    """`imgops alarms test --json`: each scenario's limits (dashboards/scenarios.py) and when each alarm fired in the
    worst alignment of the story to CloudWatch's periods."""

    def minutes(alarms: dict[str, int]) -> str:
        return ", ".join(f"{alarm} {minute}" for alarm, minute in alarms.items()) or "nothing: every alarm quiet"

    results = json.loads(stdout)
    rows = [
        [result["scenario"], result["story"], minutes(result["must_fire_within_minutes"]),
         minutes(result["fired_after_minutes"]), "; ".join(result["problems"]) or "ok"]
        for result in results
    ]  # fmt: skip
    figures = {"scenarios": len(rows), "failed": sum(bool(result["problems"]) for result in results)}
    columns = ["scenario", "the story", "must fire within (min)", "fired after (min)", "result"]
    return {"figures": figures, "table": {"columns": columns, "rows": rows}}


def bundles(_work: Path, stdout: str) -> dict[str, Any]:
    """`imgops dashboards bundle --json`: each Lambda bundle's files, sizes, native libraries and newest glibc."""
    rows = [
        [entry["bundle"], f"{entry['files']:,}", f"{entry['unzipped_bytes'] / 2**20:.1f} MB",
         f"{entry['zipped_bytes'] / 2**20:.1f} MB", entry["native_files"], entry["newest_glibc"] or "–"]
        for entry in json.loads(stdout)
    ]  # fmt: skip
    columns = ["bundle", "files", "unzipped", "zipped", "native files", "newest glibc"]
    return {"figures": {"bundles": len(rows)}, "table": {"columns": columns, "rows": rows}}


def _capacity_churn(_work: Path, stdout: str) -> dict[str, Any]:
    """`imgops bench churn --json`: the churn, how long until CustomS3 equalled the listings, drift, the top owner."""
    result = json.loads(stdout)
    at_end = list(result["objects_at_end"].values())
    figures = {
        **{key: result[key] for key in ("objects", "owners", "created", "overwritten", "deleted", "expired")},
        "object_events": result["object_events"],
        "churn_seconds": result["churn_seconds"],
        "converged_seconds": result["converged_seconds"],
        "uploads_at_end": at_end[0],
        "processed_at_end": at_end[1],
        "drift_objects": max(abs(values[0]) for values in result["drift"].values()),
        "drift_bytes": max(abs(values[1]) for values in result["drift"].values()),
        "runaway_found": "yes" if result["top_owner"] == result["runaway_owner"] else "no",
    }
    return {"figures": figures}


def _capacity_counter(_work: Path, stdout: str) -> dict[str, Any]:
    """`imgops bench capacity --json`: events per second the counter applies against the embedded DynamoDB."""
    return {"figures": {key: value for key, value in json.loads(stdout).items() if value is not None}}


def _capacity_lag(work: Path, stdout: str) -> dict[str, Any]:
    """`imgops bench capacity --offered-rate R --json`: how far behind the counter falls, and at how many times the
    rate it applies."""
    figures = _capacity_counter(work, stdout)["figures"]
    figures["offered_times_applied"] = figures["offered_events_per_second"] / figures["events_per_second"]
    figures["behind_per_offered_second"] = figures["behind_seconds_at_last_arrival"] / figures["offered_seconds"]
    return {"figures": figures}


def _measured_run(name: str) -> str:
    """The run folder another measurement recorded (the cost report prices exactly the runs the docs show)."""
    path = DATA_DIR / f"{name}.json"
    if not path.exists():
        raise FiguresError(f"{path.name} does not exist: measure {name} first")
    run = json.loads(path.read_text(encoding="utf-8"))["figures"]["run"]
    if not (ROOT / run).is_dir():
        raise FiguresError(f"{run} ({path.name}'s run folder) is not on this machine: measure {name} again")
    return str(run)


MEASUREMENTS = {
    m.name: m
    for m in (
        Measurement(
            "main-job", "the README's main job: 1,000 images on an embedded local stack, as a user runs it",
            "imgops loadtest run", ("--out", "{work}/runs"), _main_job,
        ),
        Measurement(
            "closed-loop", "2,000 images as fast as 16 uploads in flight allow", "imgops loadtest run --images 2000",
            ("--out", "{work}/runs"), _run_figures,
        ),
        Measurement(
            "steady-state", "an open loop below capacity", "imgops loadtest run --images 300 --rate 4",
            ("--out", "{work}/runs"), _run_figures,
        ),
        Measurement(
            "upload-path", "the upload path alone (presign + POST), no waiting for the worker",
            "imgops loadtest run --images 1000 --no-wait --mix webp=1 --concurrency 32",
            ("--out", "{work}/runs"), _run_figures,
        ),
        Measurement(
            "selfcheck", "the load generator alone, against a loopback sink", "imgops loadtest selfcheck",
            ("--json",), _selfcheck,
        ),
        Measurement(
            "thumbnails", "three JPEG thumbnails from 12 MP phone JPEGs, per approach",
            "imgops bench thumbnails --images 6 --repeat 10", ("--json", "{work}/thumbnails.json", "--markdown"),
            _thumbnails,
        ),
        Measurement(
            "batch", "billed time per image of one SQS batch, sequential against overlapped",
            "imgops bench batch --runs 7 --markdown", ("--json", "{work}/batch.json"), _batch,
        ),
        Measurement(
            "sizing", "the worker's memory sizing on a fresh local stack", "imgops loadtest sizing",
            ("--out", "{work}/runs"), _sizing,
        ),
        Measurement(
            "drills", "every drill in a row on one local stack", "imgops drill all", (), _drills,
        ),
        Measurement(
            "alarm-scenarios", "the alarms against the scenario suite, worst alignment", "imgops alarms test",
            ("--json",), alarm_scenarios,
        ),
        Measurement(
            "bundles", "the three Lambda bundles as a deploy builds them (arm64)", "imgops dashboards bundle",
            ("--json",), bundles,
        ),
        Measurement(
            "capacity-churn", "50,000 objects churned on a local stack, their events duplicated and reordered",
            "imgops bench churn --objects 50000", ("--json",), _capacity_churn,
        ),
        Measurement(
            "capacity-counter", "object events per second the capacity counter applies here, batches of 100",
            "imgops bench capacity --events 3000 --batch-size 100", ("--json",), _capacity_counter,
        ),
        Measurement(
            "capacity-lag", "how far behind the capacity counter falls, offered about 10 times what it applies here",
            "imgops bench capacity --events 20000 --batch-size 100 --offered-rate 3200", ("--json",), _capacity_lag,
        ),
        Measurement(
            "cost", "cost per 1,000 images: the closed-loop run, re-priced at the sizing run's pick and at 1,792 MB",
            "imgops cost report --run {closed_loop} --sizing {sizing} --compare recommended,1792", ("--json",), _cost,
        ),
    )
}  # fmt: skip


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        raise FiguresError("git is needed to record the commit a figure was measured on")
    return subprocess.run([git, *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()  # noqa: S603


def commit() -> str:
    """The short commit, marked when tracked code differs from it (a figure of code nobody can check out). The docs
    and result files do not count: a measurement rewrites them itself."""
    changed = _git("status", "--porcelain", "-uno", "--", ".", ":(exclude)*.md", ":(exclude)benchmarks/*.json")
    return _git("rev-parse", "--short", "HEAD") + ("+uncommitted" if changed else "")


def machine() -> str:
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return (
        f"{os.cpu_count()} vCPU, {memory_kb / 2**20:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the start"
    )


def measure(name: str) -> Path:
    """Run measurement `name`, write benchmarks/<name>.json, render the docs; returns the data file."""
    measurement = MEASUREMENTS[name]
    command = measurement.command
    if "{closed_loop}" in command:
        command = command.format(closed_loop=_measured_run("closed-loop"), sizing=_measured_run("sizing"))
    started_on, revision, host = datetime.date.today().isoformat(), commit(), machine()
    with tempfile.TemporaryDirectory(prefix=f"imgops-{name}-") as folder:
        work = Path(folder)
        argv = [*shlex.split(command), *(arg.format(work=work) for arg in measurement.capture)]
        imgops = Path(sys.executable).with_name("imgops")
        started = time.monotonic()
        result = subprocess.run([str(imgops), *argv[1:]], cwd=ROOT, capture_output=True, text=True)  # noqa: S603
        if result.returncode != 0:
            raise FiguresError(f"`{command}` exited {result.returncode}:\n{result.stderr[-2000:]}")
        extracted = measurement.extract(work, result.stdout)
    extracted["figures"]["wall_seconds"] = round(time.monotonic() - started, 1)
    data = {
        "what": measurement.what,
        "command": command,
        "date": started_on,
        "commit": revision,
        "machine": host,
        **extracted,
    }
    path = DATA_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    render_all(docs(), sources={f"benchmarks/{name}.json"})
    return path
