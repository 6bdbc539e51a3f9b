"""The image item in DynamoDB: it is both the API's answer and the worker's idempotency record.

A redelivered S3 event carries the same object version (ETag + sequencer); the conditional writes below
make the first delivery own the work and every later one a no-op, and let a newer upload of the same key
take over from an older one. A second table (Powertools Idempotency) could not express "newer wins".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pipeline.errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


class Status(enum.StrEnum):
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Upload:
    """One uploaded object as the S3 event describes it."""

    bucket: str
    key: str
    image_id: str
    user_id: str
    version: str  # ETag plus sequencer: identifies this content of this key
    event_time: str  # ISO-8601 from the event; orders two uploads of the same key


class ClaimOutcome(enum.StrEnum):
    PROCESS = "process"  # ours to do
    NOTIFY_ONLY = "notify_only"  # finished earlier but the notification did not go out
    DUPLICATE = "duplicate"  # finished and notified: nothing left to do
    STALE = "stale"  # a newer upload of the same key owns the item


def claim(table: Table, upload: Upload, *, now: str) -> ClaimOutcome:
    item = {
        "imageId": upload.image_id,
        "userId": upload.user_id,
        "originalS3Key": upload.key,
        "status": Status.PROCESSING.value,
        "sourceVersion": upload.version,
        "uploaded_at": upload.event_time,
        "claimed_at": now,
    }
    try:
        table.put_item(Item=item, ConditionExpression="attribute_not_exists(imageId)")
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
    else:
        return ClaimOutcome.PROCESS

    existing = get(table, upload.image_id) or {}
    if existing.get("sourceVersion") == upload.version:
        if existing.get("status") == Status.PROCESSING.value:
            return ClaimOutcome.PROCESS  # an earlier attempt died part-way: do it again
        return ClaimOutcome.DUPLICATE if existing.get("notified_at") else ClaimOutcome.NOTIFY_ONLY
    if str(existing.get("uploaded_at", "")) > upload.event_time:
        return ClaimOutcome.STALE
    try:
        table.put_item(
            Item=item,
            ConditionExpression="sourceVersion = :previous",
            ExpressionAttributeValues={":previous": existing.get("sourceVersion", "")},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return ClaimOutcome.STALE  # someone else took it over between our read and write
        raise
    return ClaimOutcome.PROCESS


def finish(table: Table, upload: Upload, fields: dict[str, Any]) -> bool:
    """Record the result unless a newer upload took the item over meanwhile (then False)."""
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    values = {f":v{i}": _to_dynamo(value) for i, value in enumerate(fields.values())}
    assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
    try:
        table.update_item(
            Key={"imageId": upload.image_id},
            UpdateExpression=f"SET {assignments}",
            ConditionExpression="sourceVersion = :version",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":version": upload.version},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def mark_notified(table: Table, upload: Upload, now: str) -> None:
    table.update_item(
        Key={"imageId": upload.image_id},
        UpdateExpression="SET notified_at = :now",
        ConditionExpression="sourceVersion = :version",
        ExpressionAttributeValues={":now": now, ":version": upload.version},
    )


def get(table: Table, image_id: str) -> dict[str, Any] | None:
    response = table.get_item(Key={"imageId": image_id}, ConsistentRead=True)
    item = response.get("Item")
    return None if item is None else {key: _from_dynamo(value) for key, value in item.items()}


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(round(value, 3)))
    if isinstance(value, dict):
        return {str(key): _to_dynamo(inner) for key, inner in value.items()}
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(inner) for inner in value]
    return value
