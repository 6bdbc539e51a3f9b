"""The image item in DynamoDB: it is both the API's answer and the worker's idempotency record.

A redelivered S3 event carries the same object version (ETag + sequencer); the conditional writes below
make the first delivery own the work and every later one a no-op, and let a newer upload of the same key
take over from an older one. A second table (Powertools Idempotency) could not express "newer wins".

The item also says how the work went, for on-call: `attempts` (deliveries that tried this version of the key),
`last_attempt_at`, and `last_error` (the latest failed attempt's error, `pipeline.errors.describe_failure`). A retry
does not change `status`: it stays PROCESSING until the work is DONE or FAILED (the API's answer, and what the claims
below test); the on-call tools show a PROCESSING item that nobody works on now (no live lease) as RETRYING.
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


# How the work went, for on-call (`imgops images status`, `imgops dlq inspect`); not for the image's owner:
# `last_error` carries AWS error messages, which can name accounts, roles and resources.
ATTEMPT_FIELDS = frozenset({"attempts", "last_error", "last_attempt_at"})


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
        "attempts": 1,
        "last_attempt_at": now,
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
            # The earlier attempt failed or died part-way: this is the next attempt at the same version.
            return _take_over(table, _next_attempt(item, existing), existing, "claimToken")
        if existing.get("notified_at"):
            return ClaimOutcome.DUPLICATE
        # Finished but not notified: the finishing delivery may still be publishing (it keeps its lease until
        # it has); only a delivery that died leaves the notification to us.
        if int(existing.get("lease_expires", 0)) > time.time():
            raise ClaimBusy(f"{upload.key} is being notified by another delivery")
        renewed = {
            **existing,
            "claimToken": item["claimToken"],
            "lease_expires": item["lease_expires"],
            "attempts": _attempts(existing) + 1,
            "last_attempt_at": now,
        }
        outcome = _take_over(table, _to_dynamo(renewed), existing, "claimToken")
        return ClaimOutcome.NOTIFY_ONLY if outcome is ClaimOutcome.PROCESS else outcome
    if str(existing.get("uploaded_at", "")) > upload.event_time:
        return ClaimOutcome.STALE
    return _take_over(table, item, existing, "sourceVersion")  # new content: its attempts start afresh


def _attempts(item: dict[str, Any]) -> int:
    try:
        return int(item.get("attempts", 0))
    except (TypeError, ValueError):
        return 0


def _next_attempt(item: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    """The claim of a retry: the attempt count goes on, and the last error stays until the work is done."""
    retry = {**item, "attempts": _attempts(existing) + 1}
    if existing.get("last_error"):
        retry["last_error"] = existing["last_error"]
    return retry


def _take_over(table: Table, item: dict[str, Any], existing: dict[str, Any], guard: str) -> ClaimOutcome:
    """Replace `existing` only if nobody replaced it since we read it. An item a failed claim left behind
    (`record_failed_claim`) has no claim token yet: then "nobody replaced it" means it still has none."""
    condition: dict[str, Any] = (
        {"ConditionExpression": f"{guard} = :previous", "ExpressionAttributeValues": {":previous": existing[guard]}}
        if guard in existing
        else {"ConditionExpression": f"attribute_not_exists({guard})"}
    )
    try:
        table.put_item(Item=item, **condition)
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


def record_failure(table: Table, upload: Upload, *, token: str, error: str) -> bool:
    """The attempt that holds the claim failed: let go of the claim (as `release` does) and say why in
    `last_error`, in one write. False when the claim is no longer ours (then the item is someone else's to
    describe). When DynamoDB refuses the UpdateItem (throttled, or a fault on UpdateItem: often the very call that
    failed the finish), the same record goes in with a PutItem (`_put_failure`). A DynamoDB error of both raises
    the UpdateItem's (the caller logs it: recording is best effort)."""
    try:
        table.update_item(
            Key={"imageId": upload.image_id},
            UpdateExpression="SET lease_expires = :zero, last_error = :error",
            ConditionExpression="claimToken = :token",
            ExpressionAttributeValues={":zero": 0, ":error": error, ":token": token},
        )
    except ClientError as refused:
        if error_code(refused) == "ConditionalCheckFailedException":
            return False
        try:
            return _put_failure(table, upload, token=token, error=error)
        except (ClientError, BotoCoreError) as also:
            raise refused from also
    return True


def _put_failure(table: Table, upload: Upload, *, token: str, error: str) -> bool:
    """`record_failure` as a PutItem of the item as it is (read consistently, written back unchanged but for the
    two fields), guarded by our claim token as the UpdateItem is."""
    item = table.get_item(Key={"imageId": upload.image_id}, ConsistentRead=True).get("Item")
    if item is None or item.get("claimToken") != token:
        return False
    try:
        table.put_item(
            Item={**item, "lease_expires": 0, "last_error": error},
            ConditionExpression="claimToken = :token",
            ExpressionAttributeValues={":token": token},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def record_failed_claim(table: Table, upload: Upload, *, now: str, error: str) -> bool:
    """An attempt failed before it held a claim, often because the claim's own PutItem failed (throttled): count
    the attempt the claim did not, and say why, with an UpdateItem, which a PutItem fault or throttle does not
    stop. It creates the item as the claim would have (PROCESSING, no claim token, no lease), so on-call finds it
    and the next delivery's claim takes it over. An item of another version of the key is left alone (False).
    A DynamoDB error raises (the caller logs it: recording is best effort)."""
    try:
        table.update_item(
            Key={"imageId": upload.image_id},
            UpdateExpression=(
                "SET last_error = :error, last_attempt_at = :now, userId = if_not_exists(userId, :user), "
                "originalS3Key = if_not_exists(originalS3Key, :key), "
                "sourceVersion = if_not_exists(sourceVersion, :version), "
                "uploaded_at = if_not_exists(uploaded_at, :uploaded), #status = if_not_exists(#status, :processing) "
                "ADD attempts :one"
            ),
            ConditionExpression="attribute_not_exists(imageId) OR sourceVersion = :version",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":error": error,
                ":now": now,
                ":user": upload.user_id,
                ":key": upload.key,
                ":version": upload.version,
                ":uploaded": upload.event_time,
                ":processing": Status.PROCESSING.value,
                ":one": 1,
            },
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
    if isinstance(value, list):  # e.g. labels: [{"name", "confidence": float}]
        return [_to_dynamo(inner) for inner in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(inner) for inner in value]
    return value
