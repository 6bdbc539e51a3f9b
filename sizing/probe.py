"""The sizing probe: a child process that runs the real worker handler, as one Lambda execution environment would.

A process of its own so that its memory is the worker's alone and a cgroup can cap it (memory, and CPU at the
function's share). The parent (`run_probe`) starts it through `sh`, which joins the cgroups and then execs
Python, so everything the interpreter allocates is inside the cap. The child imports the handler (Lambda's init
phase, timed from the parent's spawn), then runs one invocation per object of its job, each an SQS event of one
S3 upload, and writes one JSON line per invocation to its results channel (the stdout it was given; the
handler's own output goes to stderr). A batch-item failure stops it with exit code 3: the parent reads why from
the last lines of its stderr. `--spin N` runs a fixed CPU-bound loop instead (CFS calibration).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from localaws.context import sqs_upload_record

SPAWNED_AT_ENV = "IMGOPS_SIZING_SPAWNED_AT"
FAILED_INVOCATION_EXIT = 3


@dataclass(frozen=True)
class ProbeRun:
    """What one probe process did: its per-invocation rows, init, and how it ended."""

    rows: list[dict[str, Any]]
    init_ms: float | None
    returncode: int
    oom_killed: bool
    error: str = ""  # one line: the probe's own words, when it failed other than by running out of memory
    stderr: str = field(default="", repr=False)

    @property
    def completed(self) -> bool:
        return self.returncode == 0


def sqs_event(bucket: str, key: str, etag: str) -> dict[str, Any]:
    """What the work queue hands the worker for one S3 upload (one record: one image per invocation)."""
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return {"Records": [sqs_upload_record(bucket, key, etag, region=region)]}


def probe_error(stderr: str, returncode: int) -> str:
    """One line from the probe's stderr: the worker's logged error if there is one (its `error` field), else a
    traceback's last line, else the last lines joined."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    logged_errors = []
    for line in lines:
        if line.startswith("{"):
            try:
                logged = json.loads(line)
            except ValueError:
                continue
            if isinstance(logged, dict) and logged.get("error"):
                logged_errors.append(logged)
    # The first error the worker logged: the probe stops at the first failed invocation, so it is that one's cause.
    first = next((e for e in logged_errors if str(e.get("level", "")).upper() in {"ERROR", "CRITICAL"}), None)
    if first or logged_errors:
        chosen = first or logged_errors[-1]
        return _one_line(f"{chosen.get('message', 'error')}: {chosen['error']}")
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Traceback"):
            return _one_line(lines[-1])
    tail = " | ".join(lines[-3:])
    return _one_line(tail or f"exit code {returncode}, nothing on stderr")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_probe(
    job: dict[str, Any],
    *,
    environment: dict[str, str],
    cgroup_procs: Sequence[str] = (),
    timeout: float = 900.0,
    oom_killed: Any = None,
) -> ProbeRun:
    """Run the probe on `job` ({"bucket", "invocations": [{"key", "etag", "image", "kind", "warmup"}, ...],
    "timeout_seconds", "memory_mb"}) in the cgroups whose `cgroup.procs` files are given. `oom_killed`: a callable
    saying whether the cgroup's OOM killer struck (the parent owns the cgroup)."""
    return _spawn(["-m", "sizing.probe"], json.dumps(job), environment, cgroup_procs, timeout, oom_killed)


def run_spin(iterations: int, *, cgroup_procs: Sequence[str] = ()) -> tuple[float, float]:
    """A fixed CPU-bound loop in the cgroups given: (CPU ms, wall ms)."""
    run = _spawn(["-m", "sizing.probe", "--spin", str(iterations)], "", dict(os.environ), cgroup_procs, 300, None)
    if not run.rows:
        raise RuntimeError(f"the calibration loop failed: {run.error}")
    return float(run.rows[0]["cpu_ms"]), float(run.rows[0]["wall_ms"])


def _spawn(
    arguments: list[str],
    stdin: str,
    environment: dict[str, str],
    cgroup_procs: Sequence[str],
    timeout: float,
    oom_killed: Any,
) -> ProbeRun:
    # `sh` joins the cgroups, then becomes Python: the interpreter's own memory is charged to the cap too.
    join = "".join(f"echo $$ > {shlex.quote(procs)} && " for procs in cgroup_procs)
    command = ["sh", "-c", f'{join}exec "$0" "$@"', sys.executable, *arguments]
    env = {**environment, SPAWNED_AT_ENV: repr(time.time())}
    try:
        process = subprocess.run(  # noqa: S603 - our own module with our own arguments
            command, input=stdin, capture_output=True, text=True, env=env, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return ProbeRun([], None, -1, False, f"the probe did not finish in {timeout:.0f} s", stderr)
    rows: list[dict[str, Any]] = []
    init_ms: float | None = None
    for line in process.stdout.splitlines():
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if "init_ms" in row:
            init_ms = float(row["init_ms"])
        else:
            rows.append(row)
    # The cgroup's own OOM count; a SIGKILL inside a memory cap is one too where the kernel keeps no count.
    killed = bool(oom_killed()) if oom_killed is not None else False
    killed = killed or (oom_killed is not None and process.returncode == -signal.SIGKILL)
    error = "" if process.returncode == 0 or killed else probe_error(process.stderr, process.returncode)
    return ProbeRun(rows, init_ms, process.returncode, killed, error, process.stderr)


# --- The child ------------------------------------------------------------------------------------------------


def _results_channel() -> Any:
    """The stdout the parent reads, kept for results only; fd 1 then points at stderr, so whatever the handler
    and its libraries print cannot be mistaken for a result."""
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", closefd=False)
    return results


def _since_spawn_ms() -> float | None:
    spawned = os.environ.get(SPAWNED_AT_ENV)
    return (time.time() - float(spawned)) * 1000 if spawned else None


def _spin(iterations: int) -> None:
    results = _results_channel()
    cpu, wall = time.process_time(), time.perf_counter()
    total = 0
    for value in range(iterations):
        total += value * value
    measured = {"cpu_ms": (time.process_time() - cpu) * 1000, "wall_ms": (time.perf_counter() - wall) * 1000}
    results.write(json.dumps({**measured, "checksum": total % 7}) + "\n")
    results.flush()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--spin":
        _spin(int(sys.argv[2]))
        return
    results = _results_channel()
    job = json.loads(sys.stdin.read())
    # Lambda's init phase: the runtime starts and the handler module is imported.
    from localaws.context import LocalLambdaContext, peak_rss_kb, reset_peak_rss
    from pipeline.worker import handler

    results.write(json.dumps({"init_ms": _since_spawn_ms()}) + "\n")
    results.flush()
    release_heap = _heap_trimmer() if job.get("trim_heap") else None
    for index, item in enumerate(job["invocations"]):
        event = sqs_event(job["bucket"], item["key"], item["etag"])
        context = LocalLambdaContext.create(
            "sizing", timeout_seconds=float(job.get("timeout_seconds", 60)), memory_mb=int(job.get("memory_mb", 1024))
        )
        if release_heap is not None:  # what earlier invocations freed goes back: this peak is this input's alone
            release_heap()
        rss_before = _rss_mb()
        reset_peak_rss()
        waited = _run_delay_ms()
        cpu, wall = time.process_time(), time.perf_counter()
        result = handler(event, context)
        measured = {
            "index": index,
            "image": item["image"],
            "kind": item["kind"],
            "warmup": bool(item.get("warmup")),
            "wall_ms": (time.perf_counter() - wall) * 1000,
            "cpu_ms": (time.process_time() - cpu) * 1000,
            # Runnable but not running: waiting for a CPU (other load here) or throttled by the CFS quota.
            "wait_ms": _run_delay_ms() - waited,
            "peak_rss_mb": peak_rss_kb() / 1024,
            "rss_before_mb": rss_before,
        }
        results.write(json.dumps(measured) + "\n")
        results.flush()
        if result.get("batchItemFailures"):
            print(f"invocation {index} ({item['image']}) reported a batch item failure", file=sys.stderr)
            sys.exit(FAILED_INVOCATION_EXIT)


def _run_delay_ms() -> float:
    """Time this process spent runnable but waiting for a CPU (/proc/self/schedstat's run_delay; it includes
    time throttled by a CFS quota)."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as schedstat:  # noqa: PTH123 - a proc file
            return int(schedstat.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def _heap_trimmer() -> Any:
    """glibc's malloc_trim(0), or None where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return (lambda: libc.malloc_trim(0)) if libc is not None and hasattr(libc, "malloc_trim") else None


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:  # noqa: PTH123 - a proc file
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    main()
