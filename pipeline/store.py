"""The image item in DynamoDB: it is both the API's answer and the worker's idempotency record.

A redelivered S3 event carries the same object version (ETag + sequencer); the conditional writes below
make the first delivery own the work and every later one a no-op, and let a newer upload of the same key
take over from an older one. A second table (Powertools Idempotency) could not express "newer wins".
"""

from __future__ import annotations

import contextlib
import enum
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

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


class ClaimBusy(RuntimeError):
    """Another delivery of the same version holds a live claim: retry later (SQS redelivers after the
    visibility timeout, by which time that delivery has finished or its lease has run out)."""


def claim(table: Table, upload: Upload, *, now: str, token: str, lease_seconds: int) -> ClaimOutcome:
    """A claim is a lease as long as the function's timeout: a PROCESSING item whose lease ran out belongs to a
    delivery that died (a crash, a timeout) and may be taken over; one whose lease runs is someone's work."""
    item: dict[str, Any] = {
        "imageId": upload.image_id,
        "userId": upload.user_id,
        "originalS3Key": upload.key,
        "status": Status.PROCESSING.value,
        "sourceVersion": upload.version,
        "uploaded_at": upload.event_time,
        "claimed_at": now,
        "claimToken": token,
        "lease_expires": int(time.time()) + lease_seconds,
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
            if int(existing.get("lease_expires", 0)) > time.time():
                raise ClaimBusy(f"{upload.key} is being processed by another delivery")
            return _take_over(table, item, existing, "claimToken")  # the earlier attempt died part-way
        if existing.get("notified_at"):
            return ClaimOutcome.DUPLICATE
        # Finished but not notified: the finishing delivery may still be publishing (it keeps its lease until
        # it has); only a delivery that died leaves the notification to us.
        if int(existing.get("lease_expires", 0)) > time.time():
            raise ClaimBusy(f"{upload.key} is being notified by another delivery")
        renewed = {**existing, "claimToken": item["claimToken"], "lease_expires": item["lease_expires"]}
        outcome = _take_over(table, _to_dynamo(renewed), existing, "claimToken")
        return ClaimOutcome.NOTIFY_ONLY if outcome is ClaimOutcome.PROCESS else outcome
    if str(existing.get("uploaded_at", "")) > upload.event_time:
        return ClaimOutcome.STALE
    return _take_over(table, item, existing, "sourceVersion")


def _take_over(table: Table, item: dict[str, Any], existing: dict[str, Any], guard: str) -> ClaimOutcome:
    """Replace `existing` only if nobody replaced it since we read it."""
    try:
        table.put_item(
            Item=item,
            ConditionExpression=f"{guard} = :previous",
            ExpressionAttributeValues={":previous": existing.get(guard, "")},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return ClaimOutcome.STALE  # someone else took it over between our read and write
        raise
    return ClaimOutcome.PROCESS


def finish(table: Table, upload: Upload, fields: dict[str, Any], *, token: str, lease_seconds: int) -> bool:
    """Record the result unless another delivery or a newer upload took the item over meanwhile (then False);
    the lease is renewed so that the notification, which comes next, is ours too."""
    fields = {**fields, "lease_expires": int(time.time()) + lease_seconds}
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    values = {f":v{i}": _to_dynamo(value) for i, value in enumerate(fields.values())}
    assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
    try:
        table.update_item(
            Key={"imageId": upload.image_id},
            UpdateExpression=f"SET {assignments}",
            ConditionExpression="sourceVersion = :version AND claimToken = :token",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":version": upload.version, ":token": token},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def release(table: Table, upload: Upload, *, token: str) -> None:
    """Give up our claim after a failure so the redelivery need not wait for the lease to run out."""
    # Failing is fine: someone else's claim now, or DynamoDB is what failed; the lease runs out on its own.
    with contextlib.suppress(ClientError, BotoCoreError):
        table.update_item(
            Key={"imageId": upload.image_id},
            UpdateExpression="SET lease_expires = :zero",
            ConditionExpression="claimToken = :token",
            ExpressionAttributeValues={":zero": 0, ":token": token},
        )


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
