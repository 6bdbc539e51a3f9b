from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitoring.target import StackInfo


def start_local_up(state_dir: Path, *options: str) -> tuple[subprocess.Popen[str], StackInfo, dict[str, str]]:
    """`imgops local up` in a subprocess, as a user starts it; returns once its state file is written."""
    env = {**os.environ, "IMGOPS_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "imgops", "local", "up", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = state_dir / "local-stack.json"
    deadline = time.monotonic() + 60
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"local stack did not start:\n{process.communicate()[0]}")
        time.sleep(0.2)
    return process, StackInfo.from_json(state_file.read_text()), env
