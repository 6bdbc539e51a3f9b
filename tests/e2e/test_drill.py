"""The DLQ drill as on-call runs it: every step's expectation holds, and a broken step fails the drill."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_dlq_drill_passes() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "imgops", "drill", "dlq", "--healthy", "4", "--poison", "3"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("1. Upload", "2. Inject", "3. imgops alarms check", "4. imgops dlq inspect", "5. Clear the cause",
                 "6. Expect every image DONE", "7. imgops alarms check"):  # fmt: skip
        assert step in result.stdout
    assert "DRILL PASSED: 7 of 7 images DONE, 3 redriven from the DLQ, nothing lost." in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
