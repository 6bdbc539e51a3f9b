"""Runbooks work as written: every `imgops …` command of every page runs for real, verbatim (placeholders filled in),
against a local stack in the state the DLQ page describes — a DynamoDB throttle on every PutItem sent uploads to the
dead-letter queue — and then the DLQ page's fix brings every image to DONE."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start_local_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
COMMAND = re.compile(r"`(imgops [^`]+)`")
FAULT = "dynamodb:PutItem=1:ProvisionedThroughputExceededException"
# Commands a page names that are not checks of the stack's state, and where they are run instead.
ELSEWHERE = {
    "imgops local up": "starts a stack (this test's fixture is one)",
    "imgops drill": "tests/e2e/test_drill.py runs every drill (imgops drill all)",
    "imgops loadtest sizing": "a measurement of minutes; tests/e2e/test_loadtest.py runs sizing",
}
# The DLQ page's fix and its verification, in the page's order: run after the read-only commands of every page.
FIX = (
    "imgops dlq redrive",
    "imgops dlq redrive --canary 1",
    "imgops dlq redrive --id <message-id>",
    "imgops dlq purge --yes",
)


def commands(page: Path) -> list[str]:
    return list(dict.fromkeys(COMMAND.findall(page.read_text(encoding="utf-8"))))


def imgops(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(command)
    return subprocess.run(
        [sys.executable, "-m", "imgops", *words[1:]], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dlq_incident(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, str], Path, list[dict[str, Any]]]]:
    """A running local stack whose DLQ holds 3 uploads that met a DynamoDB throttle on every attempt."""
    state = tmp_path_factory.mktemp("runbooks")
    # Time-compressed retries: 3 receives, 18 s apart, instead of 6 minutes apart. The 15 s timeout holds one claim
    # retried by the SDK with backoff (up to ~7 s) before the attempt gives up on the throttle and records it.
    process, _, env = start_local_up(state, "--workers", "1", "--visibility-timeout", "18", "--worker-timeout", "15")
    env = {**env, "COLUMNS": "160"}
    try:
        assert imgops(f"imgops faults set '{FAULT}'", env, state).returncode == 0
        upload = imgops(
            "imgops loadtest run --images 1 --no-wait --mix jpeg1080=1 --corpus-size 1 --out runs", env, state
        )
        assert upload.returncode == 0, upload.stdout + upload.stderr
        deadline = time.monotonic() + 240
        messages: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listed = imgops("imgops dlq inspect --json", env, state)
            messages = json.loads(listed.stdout) if listed.returncode == 0 else []
            if messages:
                break
            time.sleep(3)
        assert messages, "the upload did not reach the DLQ"
        yield env, state, messages
    finally:
        process.terminate()
        process.wait(timeout=60)


def fill(command: str, messages: list[dict[str, Any]]) -> str:
    return command.replace("<image_id>", messages[0]["image_id"]).replace("<message-id>", messages[0]["message_id"])


PAGES = sorted(page for page in RUNBOOKS.glob("*.md") if page.name != "dlq-not-empty.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_read_only_commands_run_as_written(
    page: Path, dlq_incident: tuple[dict[str, str], Path, list[dict[str, Any]]]
) -> None:
    env, cwd, messages = dlq_incident
    for command in commands(page):
        if any(command.startswith(skip) for skip in ELSEWHERE) or command in FIX or "<" in fill(command, messages):
            continue
        result = imgops(fill(command, messages), env, cwd)
        assert result.returncode == 0, f"{page.name}: `{command}`\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stdout + result.stderr


def test_the_dlq_page_diagnoses_the_cause_then_its_fix_brings_every_image_to_done(
    dlq_incident: tuple[dict[str, str], Path, list[dict[str, Any]]],
) -> None:
    env, cwd, messages = dlq_incident
    page = RUNBOOKS / "dlq-not-empty.md"
    shown: dict[str, str] = {}
    for command in commands(page):
        if any(command.startswith(skip) for skip in ELSEWHERE) or command in FIX:
            continue
        result = imgops(fill(command, messages), env, cwd)
        assert result.returncode == 0, f"`{command}`\n{result.stdout}\n{result.stderr}"
        shown[command] = result.stdout
    # What the page's diagnosis table says on-call will see: the cause, by name.
    assert "ProvisionedThroughputExceeded" in shown["imgops dlq inspect"]
    assert "ProvisionedThroughputExceeded" in shown["imgops dlq inspect --by-error"]
    assert "ProvisionedThroughputExceeded" in shown["imgops images status <image_id>"]
    assert "dlq-not-empty" in shown["imgops alarms check"]

    # The fix for a downstream outage: it recovers (here: the fault is cleared), then redrive.
    assert imgops("imgops faults clear", env, cwd).returncode == 0
    redrive = imgops("imgops dlq redrive", env, cwd)
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    deadline = time.monotonic() + 90
    statuses: list[str] = []
    while time.monotonic() < deadline:
        statuses = [
            json.loads(imgops(f"imgops images status {m['image_id']} --json", env, cwd).stdout).get("status", "")
            for m in messages
        ]
        if all(status == "DONE" for status in statuses):
            break
        time.sleep(2)
    assert statuses == ["DONE"] * len(messages)
    # Verify recovery, as the page says.
    assert "empty" in imgops("imgops dlq inspect", env, cwd).stdout
    assert "DONE" in imgops(fill("imgops images status <image_id>", messages), env, cwd).stdout
    unknown = imgops("imgops dlq redrive --id 0000dead", env, cwd)
    assert unknown.returncode == 1
    assert "0000dead" in unknown.stderr
    purge = imgops("imgops dlq purge --yes", env, cwd)
    assert purge.returncode == 0
    assert os.environ.get("IMGOPS_STATE_DIR") != env["IMGOPS_STATE_DIR"]
