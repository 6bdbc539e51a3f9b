"""Child process of `imgops loadtest sizing`: runs the real worker handler once per image and measures it.

A separate process so that its peak memory is the worker's alone (and can be capped by a cgroup), like a
Lambda execution environment. Reads a JSON job on stdin, prints one JSON line per invocation.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from pipeline.keys import upload_key


def _event(bucket: str, key: str, etag: str) -> dict[str, Any]:
    body = {
        "Records": [
            {
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": etag}},
            }
        ]
    }
    record = {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "r",
        "body": json.dumps(body),
        "attributes": {},
    }
    return {"Records": [{**record, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}]}


def main() -> None:
    job = json.loads(sys.stdin.read())
    from loadtest.local.context import LocalLambdaContext, peak_rss_kb, reset_peak_rss
    from pipeline.worker import handler

    s3 = boto3.client("s3")
    payloads = [(Path(item["path"]), item["content_type"]) for item in job["images"]]
    for round_index, (path, content_type) in enumerate([payloads[0], *payloads]):
        key = upload_key("sizing", str(uuid.uuid4()), path.suffix.lstrip("."))
        etag = s3.put_object(Bucket=job["bucket"], Key=key, Body=path.read_bytes(), ContentType=content_type)["ETag"]
        reset_peak_rss()
        cpu, wall = time.process_time(), time.perf_counter()
        result = handler(
            _event(job["bucket"], key, etag.strip('"')),
            LocalLambdaContext.create("sizing", timeout_seconds=60),
        )
        measured = {
            "image": path.name,
            "warmup": round_index == 0,  # the first call pays lazy imports, like a cold start
            "wall_ms": (time.perf_counter() - wall) * 1000,
            "cpu_ms": (time.process_time() - cpu) * 1000,
            "peak_rss_mb": peak_rss_kb() / 1024,
            "failed": bool(result.get("batchItemFailures")),
        }
        print(json.dumps(measured), flush=True)


if __name__ == "__main__":
    main()
