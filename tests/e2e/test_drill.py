"""Every drill as on-call runs it, on one local stack (`imgops drill all`): each alarm fires, its runbook brings
it back to OK, nothing is lost. Their time (~6 minutes here) is reported, not asserted: runbooks/README.md › A drill
per alarm."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from drills.names import CAUSES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(960)]  # ~6 minutes of drills; the CLI call may take 900 s


def test_every_drill_passes() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("AWS_ENDPOINT_URL", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "imgops", "drill", "all"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "Traceback" not in output
    for alarm in CAUSES:
        assert f"== Drill {alarm}:" in result.stdout
        assert re.search(rf"^  {re.escape(alarm)} +\d+ s$", result.stdout, re.MULTILINE), alarm
    # The DLQ drill walks its runbook step by step.
    for step in ("Upload 8 healthy images", "Inject a DynamoDB throttle", "imgops dlq inspect",
                 "Clear the cause", "Expect every image DONE", "dlq-not-empty OK and its OK message"):  # fmt: skip
        assert step in result.stdout
    # The capacity drills walk theirs: the counters name the runaway user, the capacity DLQ comes first.
    for step in ("Runbook: imgops capacity top, again", "Disable the capacity counter's SQS trigger",
                 "Redrive the capacity DLQ", "IAM change denies the capacity publisher"):  # fmt: skip
        assert step in result.stdout
    assert f"DRILL PASSED: {len(CAUSES)} drills in" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), "a line wider than 80 columns"
    print(result.stdout[-1500:])
    print(f"imgops drill all: {elapsed:.0f} s with the stack's start")
