"""Lambda memory sizing without a deploy: measure the worker here, model it at each memory size.

Measured: per-invocation CPU time, wall time and peak RSS of the real handler (a child process, against
the local stack), and whether it survives a real cgroup memory cap of each size. Modeled: the duration at
each size, from Lambda's CPU share (1,769 MB = 1 vCPU; below it CPU time stretches in proportion; single-
threaded code gains nothing above it) plus the measured non-CPU (I/O) time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from loadtest.corpus import CorpusImage
from loadtest.local.cgroups import Cgroup, memory_writable
from monitoring.target import LOCAL_CREDENTIALS, Target
from pipeline.errors import ImgopsError

ONE_VCPU_MB = 1769
DEFAULT_MEMORY_SIZES = (128, 256, 512, 1024, 1536, 1769, 3008)


class SizingError(ImgopsError, RuntimeError):
    pass


@dataclass(frozen=True)
class Measurement:
    image: str
    wall_ms: float
    cpu_ms: float
    peak_rss_mb: float

    @property
    def io_ms(self) -> float:
        return max(0.0, self.wall_ms - self.cpu_ms)


def modeled_duration_ms(measurement: Measurement, memory_mb: int) -> float:
    """CPU time stretched by the CPU share below 1 vCPU, plus the measured waiting time."""
    return measurement.cpu_ms * max(1.0, ONE_VCPU_MB / memory_mb) + measurement.io_ms


def invocation_cost(duration_ms: float, memory_mb: int, *, gb_second: float, per_request: float) -> float:
    """Lambda bills each invocation's duration rounded up to 1 ms, plus the request charge."""
    return math.ceil(duration_ms) / 1000 * memory_mb / 1024 * gb_second + per_request


def sizing_table(
    measurements: list[Measurement],
    memory_sizes: tuple[int, ...],
    *,
    gb_second: float,
    per_request: float,
    oom: dict[int, bool | None],
) -> pd.DataFrame:
    rows = []
    for memory in memory_sizes:
        durations = pd.Series([modeled_duration_ms(m, memory) for m in measurements])
        costs = [invocation_cost(d, memory, gb_second=gb_second, per_request=per_request) for d in durations]
        rows.append(
            {
                "memory_mb": memory,
                "duration_p50_ms": round(float(durations.quantile(0.5)), 1),
                "duration_p95_ms": round(float(durations.quantile(0.95)), 1),
                "duration_mean_ms": round(float(durations.mean()), 1),
                "billed_ms_mean": round(float(sum(math.ceil(d) for d in durations) / len(durations)), 1),
                "cost_per_1000_images_usd": round(sum(costs) / len(costs) * 1000, 6),
                "oom": {True: "yes", False: "no", None: "not checked"}[oom.get(memory)],
            }
        )
    return pd.DataFrame(rows).set_index("memory_mb")


def recommend(table: pd.DataFrame, *, balanced_weight: float = 0.5) -> dict[str, int]:
    """Power Tuning's three strategies over the sizes that did not run out of memory."""
    usable = table[table["oom"] != "yes"]
    if usable.empty:
        raise SizingError("every memory size ran out of memory; try larger sizes")
    cost, speed = usable["cost_per_1000_images_usd"], usable["duration_mean_ms"]
    by_cost = usable.sort_values(["cost_per_1000_images_usd", "duration_mean_ms"]).index[0]
    by_speed = usable.sort_values(["duration_mean_ms", "cost_per_1000_images_usd"]).index[0]
    score = balanced_weight * cost / cost.max() + (1 - balanced_weight) * speed / speed.max()
    return {"cost": int(by_cost), "speed": int(by_speed), "balanced": int(score.idxmin())}


def measure(
    images: list[dict[str, str]], *, bucket: str, environment: dict[str, str], cgroup: Path | None = None
) -> tuple[list[Measurement], int]:
    """Run the probe; returns the measurements (warm-up dropped) and the probe's exit code."""
    job = json.dumps({"images": images, "bucket": bucket})
    env = {**os.environ, **environment}
    preexec = None
    if cgroup is not None:
        procs = cgroup / "cgroup.procs"

        def preexec() -> None:  # runs in the child before exec: join the capped cgroup
            procs.write_text(str(os.getpid()))

    process = subprocess.run(
        [sys.executable, "-m", "loadtest.sizing_probe"],
        input=job,
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=preexec,
        check=False,
        timeout=600,
    )
    rows = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    measurements = [
        Measurement(r["image"], r["wall_ms"], r["cpu_ms"], r["peak_rss_mb"])
        for r in rows
        if not r["warmup"] and not r["failed"]
    ]
    return measurements, process.returncode


def runs_out_of_memory(
    images: list[dict[str, str]], *, bucket: str, environment: dict[str, str], memory_mb: int
) -> bool | None:
    """Whether the worker dies under a real cgroup cap of `memory_mb`; None where caps are unavailable."""
    group = Cgroup.create("sizing", memory_mb=memory_mb)
    if group is None or group.memory is None:
        return None
    try:
        _, returncode = measure(images, bucket=bucket, environment=environment, cgroup=group.memory)
        return group.oom_killed() or returncode != 0
    finally:
        group.remove()


def sizing_summary(measurements: list[Measurement]) -> dict[str, Any]:
    frame = pd.DataFrame([m.__dict__ | {"io_ms": m.io_ms} for m in measurements])
    return {
        "invocations": len(frame),
        "cpu_ms_p50": round(float(frame["cpu_ms"].median()), 1),
        "wall_ms_p50": round(float(frame["wall_ms"].median()), 1),
        "io_ms_p50": round(float(frame["io_ms"].median()), 1),
        "peak_rss_mb_max": round(float(frame["peak_rss_mb"].max()), 1),
    }


def aws_sizing(
    target: Any, memory_sizes: tuple[int, ...], run_batch: Any, *, gb_second: float, per_request: float
) -> pd.DataFrame:
    """Set the deployed worker to each size, send a batch, read its REPORT lines; always restore the original."""
    from loadtest.runner import read_aws_reports

    client = target.client("lambda")
    original = client.get_function_configuration(FunctionName=target.worker_function)["MemorySize"]
    waiter = client.get_waiter("function_updated_v2")
    rows = []
    try:
        for memory in memory_sizes:
            client.update_function_configuration(FunctionName=target.worker_function, MemorySize=memory)
            waiter.wait(FunctionName=target.worker_function)
            started = run_batch()
            reports = read_aws_reports(target, started)
            durations = pd.Series([r.duration_ms for r in reports], dtype=float)
            billed = pd.Series([r.billed_duration_ms for r in reports], dtype=float)
            cost = (billed / 1000 * memory / 1024 * gb_second + per_request).mean() * 1000 if len(billed) else math.nan
            rows.append(
                {
                    "memory_mb": memory,
                    "duration_p50_ms": durations.quantile(0.5),
                    "duration_p95_ms": durations.quantile(0.95),
                    "duration_mean_ms": durations.mean(),
                    "billed_ms_mean": billed.mean(),
                    "cost_per_1000_images_usd": cost,  # per invocation here: batches of up to 10 images
                    "oom": "yes" if any(r.max_memory_used_mb >= memory for r in reports) else "no",
                }
            )
    finally:
        client.update_function_configuration(FunctionName=target.worker_function, MemorySize=original)
    return pd.DataFrame(rows).set_index("memory_mb")


def local_sizing(
    stack: Target,
    plan: Sequence[CorpusImage],
    sizes: tuple[int, ...],
    *,
    gb_second: float,
    per_request: float,
    on_step: Callable[[str], object] = lambda _step: None,
) -> tuple[pd.DataFrame, dict[str, Any], list[str], list[dict[str, Any]]]:
    """Run the real handler here over `plan` against the local stack `stack`: measure, then model each size."""
    images = [{"path": str(image.path), "content_type": image.content_type} for image in plan]
    bucket = f"{stack.prefix}-sizing"
    s3 = stack.client("s3")
    with contextlib.suppress(Exception):  # exists already from an earlier sizing run
        s3.create_bucket(Bucket=bucket)  # no notifications: the stack's own workers never see these
    environment = {
        **stack.handler_environment(),
        **(LOCAL_CREDENTIALS if stack.local else {}),
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
    on_step(f"Measuring the worker on {len(images)} images (CPU time, wall time, peak memory)…")
    measurements, returncode = measure(images, bucket=bucket, environment=environment)
    if not measurements:
        raise SizingError(f"the worker probe produced no measurements (exit code {returncode})")
    oom: dict[int, bool | None] = {}
    on_step("Running the worker under a real memory cap at each size…")
    for size in sizes:
        oom[size] = runs_out_of_memory(images, bucket=bucket, environment=environment, memory_mb=size)
    table = sizing_table(measurements, sizes, gb_second=gb_second, per_request=per_request, oom=oom)
    notes = [
        "Measured here: CPU time, wall time and peak memory of each invocation of the real handler "
        f"({len(measurements)} images, against the local stack).",
        "Modeled: duration at each memory = CPU time x max(1, 1769 MB / memory) + measured I/O wait; "
        "assumes a Lambda vCPU is as fast as this machine's core.",
        "Out-of-memory: measured under a real cgroup memory cap at each size"
        if memory_writable()
        else "Out-of-memory: NOT checked (cgroup memory controller not writable here).",
    ]
    return table, sizing_summary(measurements), notes, [asdict(m) for m in measurements]
