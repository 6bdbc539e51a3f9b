"""What the Lambda runtime hands a handler and measures around it: the context object, an SQS record, peak
memory."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
import uuid
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.resources import WORKER_MEMORY_MB


class LocalLambdaContext(LambdaContext):
    """Powertools' LambdaContext, filled in the way the Lambda runtime fills it."""

    def __init__(self, function_name: str, *, timeout_seconds: float, memory_mb: int = WORKER_MEMORY_MB) -> None:
        self._function_name = function_name
        self._function_version = "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._memory_limit_in_mb = memory_mb
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{function_name}"
        self._log_stream_name = f"local/{os.getpid()}"
        self._deadline = time.monotonic() + timeout_seconds

    @classmethod
    def create(
        cls, function_name: str, *, timeout_seconds: float, memory_mb: int = WORKER_MEMORY_MB
    ) -> LocalLambdaContext:
        return cls(function_name, timeout_seconds=timeout_seconds, memory_mb=memory_mb)

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override] # a static stub upstream
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: the latter survives exec, so a spawned worker would
    report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_peak_rss() -> None:
    """Linux resets VmHWM to the current RSS when 5 is written to clear_refs: the next peak is one invocation's."""
    with contextlib.suppress(OSError):  # not Linux: peaks then accumulate, which only overstates
        Path("/proc/self/clear_refs").write_text("5")


def sqs_upload_record(bucket: str, key: str, etag: str, *, region: str) -> dict[str, Any]:
    """What the work queue hands the worker for one S3 upload: an SQS record whose body is S3's event."""
    body = {
        "Records": [
            {
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": etag}},
            }
        ]
    }
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "r",
        "body": json.dumps(body),
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:123456789012:imgops-work",
        "awsRegion": region,
    }
