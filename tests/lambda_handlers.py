"""Handlers with known behaviour for the local execution environment's tests (run in its own process)."""

from __future__ import annotations

import os
import time
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    print(f"invoked {context.function_name} {context.aws_request_id}", flush=True)
    action = event["action"]
    if action == "raise":
        raise ValueError("boom: the handler failed")
    if action == "sleep":
        time.sleep(float(event["seconds"]))
    if action == "allocate":
        block = bytearray(int(event["mb"]) * 1024 * 1024)
        for offset in range(0, len(block), 4096):  # touch every page: RSS, not just address space
            block[offset] = 1
    return {
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory_limit_mb": int(context.memory_limit_in_mb),
        "setting": os.environ.get("IMGOPS_TEST_SETTING", ""),
        "pid": os.getpid(),
    }
