"""Single-image operations for on-call: what happened to an image, and run it through the worker again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pipeline import store
from pipeline.errors import ImgopsError


class ImageNotFound(ImgopsError, LookupError):
    pass


def status(table: Any, image_id: str) -> dict[str, Any]:
    item = store.get(table, image_id)
    if item is None:
        raise ImageNotFound(f"no image {image_id} in table {table.name}")
    return item


def reprocess_event(*, bucket: str, key: str, etag: str, now: datetime | None = None) -> str:
    """The S3 notification S3 itself would send, with a fresh sequencer and time so the worker treats it as
    a newer upload of the key (its idempotency would otherwise skip a replay of the original event)."""
    moment = now or datetime.now(UTC)
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key, "eTag": etag, "sequencer": f"reprocess-{int(moment.timestamp() * 1000):016d}"},
        },
    }
    return json.dumps({"Records": [record]})


def reprocess(*, table: Any, s3: Any, sqs: Any, queue_url: str, upload_bucket: str, image_id: str) -> str:
    """Queue the image's original again; returns the message id."""
    item = status(table, image_id)
    key = str(item.get("originalS3Key", ""))
    try:
        head = s3.head_object(Bucket=upload_bucket, Key=key)
    except ClientError as exc:
        raise ImageNotFound(f"the original s3://{upload_bucket}/{key} is gone ({exc}); nothing to reprocess") from None
    body = reprocess_event(bucket=upload_bucket, key=key, etag=str(head["ETag"]).strip('"'))
    return str(sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"])
