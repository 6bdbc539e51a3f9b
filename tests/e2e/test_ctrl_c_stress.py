"""Ctrl-C at random moments, under load: `imgops local up` always stops, in time, leaving nothing behind.

Each run starts a stack and sends it SIGINT at a moment drawn from a seeded RNG: while it starts, idle, mid-batch
(uploads going through its API, images in the workers), mid-publish (`imgops monitoring publish` running, besides
the SQS sampler publishing every second), during `imgops alarms check`, with an invocation stuck in the handler (a
30 s fault on its S3 read: the worker cannot finish in time and is killed) or with output nobody reads (its stdout a
full pipe: the workers block on their REPORT lines). Most runs send it to the process group, as a terminal's Ctrl-C
does, the others to the stack's process alone (`kill -INT`); some start the stack with SIGINT ignored, as a script's
`imgops local up &` does. Two lanes of stacks run side by side (more load, half the time).

Every run must exit 0 within STOP_BUDGET_SECONDS of the signal, with no process of its group left (multiprocessing's
resource tracker leaves once the stack is gone; a zombie is init's to reap), no cgroup of its execution environments
and no state file. The seed is printed and named in every failure: IMGOPS_CTRL_C_SEED=<seed> draws the same moments
again (IMGOPS_CTRL_C_RUNS: how many runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from localaws.environment import labelled_cgroups, remove_cgroups
from localaws.stack import cgroup_label
from monitoring.target import StackInfo, fetch_access_token
from tests.conftest import jpeg_bytes
from tests.e2e.conftest import LOCAL_UP_OUTPUT, local_up_output

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # ~3.5 minutes serially; more beside other files

RUNS = int(os.environ.get("IMGOPS_CTRL_C_RUNS", "30"))
LANES = 2
# From the signal to `imgops local up` exiting, and to the last process of its group gone: above the stack's own
# stop deadline (5 s, localaws.stack.STOP_SECONDS) and its watchdog's (8 s, imgops.local.FORCED_STOP_SECONDS).
STOP_BUDGET_SECONDS = 10.0
START_TIMEOUT_SECONDS = 90.0
MOMENTS = ("starting", "idle", "mid-batch", "mid-publish", "alarm-check", "stuck", "unread-output")
# The CLI commands run against the stack at those moments (each takes about a second).
COMMANDS = {
    "mid-publish": ("monitoring", "publish"),
    "alarm-check": ("alarms", "check"),
    "stuck": ("faults", "set", "s3:GetObject=1:DELAY30"),  # every invocation waits 30 s on its S3 read
}
SIGTERM_CAUGHT = 1 << (signal.SIGTERM - 1)  # in /proc/<pid>/status SigCgt: `local up` has installed its handlers
PHOTO = jpeg_bytes(800, 600)
TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Plan:
    """One run, drawn up front from the seed, so neither lane's timing changes what the other draws."""

    run: int
    moment: str
    delay: float  # seconds from the moment's start to SIGINT
    workers: int
    to_group: bool  # the process group (a terminal's Ctrl-C) or the stack's process alone
    sigint_ignored: bool  # started with SIGINT ignored, as a shell starts a script's background job

    def __str__(self) -> str:
        target = "group" if self.to_group else "process"
        ignored = ", started with SIGINT ignored" if self.sigint_ignored else ""
        return f"run {self.run}: {self.moment} +{self.delay:.2f} s, {self.workers} worker(s), to the {target}{ignored}"


def plans(seed: int, runs: int) -> list[Plan]:
    """Every moment equally often, in a random order, each with its random delay, workers and target."""
    rng = random.Random(seed)
    drawn = []
    for run in range(runs):
        moment = MOMENTS[run % len(MOMENTS)]
        if moment == "starting":
            delay = rng.uniform(0.0, 6.0)  # from the signal handlers' installation: anywhere in a 5-8 s start
        elif moment in ("mid-publish", "alarm-check"):
            delay = rng.uniform(0.3, 1.3)  # from the command's launch: while it talks to the stack
        else:
            delay = rng.uniform(0.2, 3.0)
        drawn.append(Plan(run, moment, round(delay, 2), rng.choice((1, 2)), rng.random() < 0.7, rng.random() < 0.3))
    rng.shuffle(drawn)
    return [dataclasses.replace(plan, run=index) for index, plan in enumerate(drawn)]


def test_ctrl_c_at_random_moments_under_load(tmp_path: Path) -> None:
    seed = int(os.environ.get("IMGOPS_CTRL_C_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nIMGOPS_CTRL_C_SEED={seed}", flush=True)
    runs = plans(seed, RUNS)
    with ThreadPoolExecutor(LANES) as pool:
        lanes = pool.map(lambda lane: run_lane(runs[lane::LANES], tmp_path), range(LANES))
        failures = [failure for lane in lanes for failure in lane]
    assert not failures, f"IMGOPS_CTRL_C_SEED={seed}:\n" + "\n\n".join(failures)


def run_lane(runs: list[Plan], tmp_path: Path) -> list[str]:
    failures: list[str] = []
    for plan in runs:
        started = time.monotonic()
        problems, detail = one_run(plan, tmp_path / f"run-{plan.run}")
        verdict = "; ".join(problems) if problems else "ok"
        print(f"{plan}: {detail} [{time.monotonic() - started:.1f} s] {verdict}", flush=True)
        if problems:
            output = local_up_output(tmp_path / f"run-{plan.run}")  # empty for unread-output: it went to the pipe
            failures.append(f"{plan}: {detail}: {verdict}\n{tail(output)}")
        if len(failures) >= 3:
            break  # enough to go on
    return failures


def one_run(plan: Plan, state_dir: Path) -> tuple[list[str], str]:
    """Start a stack, signal it at the planned moment, check what it leaves; returns (problems, what happened)."""
    state_dir.mkdir()
    env = {**os.environ, "IMGOPS_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    command = [sys.executable, "-m", "imgops", "local", "up", "--workers", str(plan.workers)]
    command += ["--sample-every", "1", "--metrics-every", "10"]  # the schedules busy too
    if plan.sigint_ignored:  # as the shell leaves it for the program it execs (same process)
        command = ["/bin/sh", "-c", f"trap '' INT; exec {shlex.join(command)}"]
    unread = plan.moment == "unread-output"
    with (state_dir / LOCAL_UP_OUTPUT).open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE if unread else output,  # a pipe this test never reads
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    load = Uploads()
    cli: subprocess.Popen[bytes] | None = None
    try:
        if not wait_until(lambda: handlers_installed(process.pid), process, START_TIMEOUT_SECONDS):
            return ["never installed its signal handlers"], f"exit {process.poll()}"
        if plan.moment != "starting":
            state_file = state_dir / "local-stack.json"
            if not wait_until(state_file.exists, process, START_TIMEOUT_SECONDS):
                return ["did not start"], f"exit {process.poll()}"
            info = StackInfo.from_json(state_file.read_text())
            if plan.moment in COMMANDS:
                cli = subprocess.Popen(  # its own outcome does not matter: the stack goes away under it
                    [sys.executable, "-m", "imgops", *COMMANDS[plan.moment]],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            if plan.moment == "stuck" and cli is not None:
                cli.wait(30)  # the fault is set before the uploads it is for
            if plan.moment != "idle":
                load.start(info)
                if not wait_until(lambda: load.uploaded >= 2, process, 30):
                    return ["no upload went through"], f"exit {process.poll()}"
            if unread and not wait_until(lambda: writing_blocked(process.pid), process, 60):
                return ["its output never filled the pipe"], f"exit {process.poll()}"
        time.sleep(plan.delay)
        up = (state_dir / "local-stack.json").exists()
        sent = time.monotonic()
        if plan.to_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        problems, took = check_stopped(process, state_dir, sent, output_read=not unread)
        return problems, f"{'up' if up else 'starting'}, {load.uploaded} uploads, stopped in {took}"
    finally:
        load.stop()
        if cli is not None:
            try:
                cli.wait(30)
            except subprocess.TimeoutExpired:
                cli.kill()
                cli.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever a failed run left
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        remove_cgroups(cgroup_label(process.pid))


def check_stopped(
    process: subprocess.Popen[str], state_dir: Path, sent: float, *, output_read: bool
) -> tuple[list[str], str]:
    """What is wrong with how the stack signalled at `sent` stopped, and how long it took (`output_read`: its output
    went to its file, not to the pipe nobody reads)."""
    problems = []
    try:
        process.wait(max(0.0, sent + STOP_BUDGET_SECONDS - time.monotonic()))
    except subprocess.TimeoutExpired:
        problems.append(f"still running {STOP_BUDGET_SECONDS:g} s after SIGINT: {describe(group(process.pid))}")
        return problems, "-"
    exited = time.monotonic()
    if process.returncode != 0:
        problems.append(f"exit status {process.returncode} after {exited - sent:.1f} s")
    # multiprocessing's resource tracker leaves right after the stack (it cleans up once its pipe closes).
    deadline = max(sent + STOP_BUDGET_SECONDS, exited + 1.0)
    while group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left := group(process.pid):
        problems.append(f"processes left: {describe(left)}")
    if cgroups := labelled_cgroups(cgroup_label(process.pid)):
        problems.append(f"cgroups left: {', '.join(str(folder) for folder in cgroups)}")
    if (state_dir / "local-stack.json").exists():
        problems.append("state file left")
    output = local_up_output(state_dir) if output_read else ""
    if TRACEBACK in output:
        problems.append("a traceback in the output")
    if output_read and process.returncode == 0 and "Local stack stopped." not in output:
        problems.append("no 'Local stack stopped.'")
    return problems, f"{exited - sent:.2f} s"


class Uploads:
    """Uploads through the stack's API (presigned PUTs), one after the other, until stopped: the load."""

    def __init__(self) -> None:
        self.uploaded = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, info: StackInfo) -> None:
        self._thread = threading.Thread(target=self._run, args=(info,), daemon=True)
        self._thread.start()

    def _run(self, info: StackInfo) -> None:
        with contextlib.suppress(Exception):  # the stack going away ends the load
            headers = {"Authorization": f"Bearer {fetch_access_token(info)}"}
            while not self._stop.is_set():
                grant = requests.post(
                    f"{info.api_url}/uploads", json={"content_type": "image/jpeg"}, headers=headers, timeout=10
                ).json()
                requests.put(grant["upload_url"], data=PHOTO, headers={"Content-Type": "image/jpeg"}, timeout=10)
                self.uploaded += 1
                self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


def handlers_installed(pid: int) -> bool:
    """`imgops local up` has installed its SIGINT/SIGTERM handlers (before that, a SIGINT is Python's own: it would
    end the import of the CLI with a traceback, before anything that needs stopping exists)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) & SIGTERM_CAUGHT)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def writing_blocked(pgid: int) -> bool:
    """A process of the group waits to write to a full pipe (its kernel wait channel says so)."""
    for pid in group(pgid):
        with contextlib.suppress(OSError):
            if "pipe_write" in Path(f"/proc/{pid}/wchan").read_text():
                return True
    return False


def group(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (not zombies: those have exited, init reaps them)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def describe(pids: list[int]) -> str:
    names = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = "?"
        names.append(f"{pid} {command[:120]}")
    return "; ".join(names) or "none"


def tail(text: str, lines: int = 30, width: int = 240) -> str:
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])
