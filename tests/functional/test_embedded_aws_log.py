"""What the embedded AWS's process prints goes to the stack's log when it has one, not to the console."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from localaws.moto_process import DYNAMODB_TARGET_PREFIX, MotoProcess

SIGNED = "AWS4-HMAC-SHA256 Credential=testing/20261205/us-east-1/dynamodb/aws4_request"


def test_a_request_moto_fails_on_is_logged_in_the_stack_log(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "local-stack.log"
    moto = MotoProcess(metrics=False, log_file=log)
    endpoint = moto.start()
    try:
        answer = requests.post(  # a body that is not JSON: moto 5.2 fails on it with a traceback (HTTP 500)
            f"{endpoint}/",
            data=b"{not json",
            headers={"X-Amz-Target": DYNAMODB_TARGET_PREFIX + "GetItem", "Authorization": SIGNED},
            timeout=10,
        )
        # werkzeug logs the traceback after it has sent the 500: wait for it before stopping the server.
        deadline = time.monotonic() + 10
        while "Traceback" not in log.read_text(encoding="utf-8") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        moto.stop()
    console = capfd.readouterr()
    assert answer.status_code == 500
    assert "Traceback" in log.read_text(encoding="utf-8")
    assert "Traceback" not in console.out + console.err
