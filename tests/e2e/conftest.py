from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localaws.metrics import read_snapshot
from monitoring.target import StackInfo

# Where start_local_up sends the stack's output, in its state folder.
LOCAL_UP_OUTPUT = "local-up.out"


def start_local_up(
    state_dir: Path, *options: str, ignore_sigint: bool = False
) -> tuple[subprocess.Popen[str], StackInfo, dict[str, str]]:
    """`imgops local up` in a subprocess, as a user starts it; returns once its state file is written.

    Its output (and every worker's REPORT lines) goes to a file, `local_up_output(state_dir)` reads it: not to a pipe
    the test does not read, where 64 KiB of it would block every process writing to it. `ignore_sigint`: start it
    with SIGINT ignored, as a shell starts a background job of a script (`imgops local up &`).
    """
    env = {**os.environ, "IMGOPS_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "imgops", "local", "up", *options]
    if ignore_sigint:  # as a shell does it (no preexec_fn: unsafe in a threaded pytest-xdist worker)
        command = ["/bin/sh", "-c", "trap '' INT; exec \"$@\"", "sh", *command]
    with (state_dir / LOCAL_UP_OUTPUT).open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a group of its own: kill() kills all of it, workers included
        )
    info = wait_for_state_file(process, state_dir, output=lambda: local_up_output(state_dir))
    return process, info, env


def local_up_output(state_dir: Path) -> str:
    """What a `start_local_up` stack has printed so far."""
    return (state_dir / LOCAL_UP_OUTPUT).read_text(encoding="utf-8", errors="replace")


def wait_for_state_file(
    process: subprocess.Popen[str], state_dir: Path, *, output: Callable[[], str], timeout: float = 60
) -> StackInfo:
    """Wait until a starting `imgops local up` has written its state file (the stack then serves requests).

    If it exits or hangs instead, it is killed (with its process group if it leads one) and the test fails with
    `output()`, read after the kill.
    """
    state_file = state_dir / "local-stack.json"
    deadline = time.monotonic() + timeout
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            kill(process)
            pytest.fail(f"local stack did not start:\n{output()}")
        time.sleep(0.2)
    return StackInfo.from_json(state_file.read_text())


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process, and everything in its process group if it was started as a group's leader."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.wait()


def stop(process: subprocess.Popen[str], timeout: float = 30) -> None:
    """Stop `imgops local up` with SIGTERM, as a supervisor would; SIGKILL its group if it has not stopped in time."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill(process)


def wait_until_drained(sqs: Any, queue_url: str, timeout: float = 180) -> None:
    """Until the queue has held nothing (visible, in flight or delayed) for 3 s."""
    deadline, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if read_snapshot(sqs, queue_url).total == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 3:
                return
        else:
            quiet_since = None
        time.sleep(0.5)
    raise AssertionError(f"{queue_url} did not drain in {timeout:.0f} s")
