"""`imgops bench batch` as a user runs it: both modes measured in a real execution environment, a table per
latency setting within 80 columns; a bad --latency is refused with a message. Figures are not asserted here
(speed is measured in benchmarks, docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def imgops(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "imgops", "bench", "batch", *args], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_both_modes_are_measured_per_latency_setting(tmp_path: Path) -> None:
    out = tmp_path / "invocations.json"
    result = imgops("--runs", "1", "--images", "2", "--latency", "0", "--latency", "s3=30", "--json", str(out))

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "added latency (ms): none" in result.stdout
    assert "added latency (ms): s3+30" in result.stdout
    assert result.stdout.count("sequential") == 2
    assert result.stdout.count("overlapped") == 2
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "Traceback" not in result.stdout + result.stderr
    assert out.is_file()
    json.loads(out.read_text(encoding="utf-8"))


def test_a_bad_latency_is_refused_with_a_message() -> None:
    result = imgops("--latency", "s3=fast")

    assert result.returncode == 2
    assert "expected MS or SERVICE=MS" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
