"""SQS → thumbnails worker: one S3 upload in, thumbnails + item + notification out.

Permanent problems (not an image, a bomb, too large) end as a FAILED item with a reason and are never
retried; anything else raises, so Powertools reports that one message in `batchItemFailures` and SQS
redelivers it, and after `maxReceiveCount` parks it in the DLQ.

Every failed attempt leaves its cause where on-call looks, whichever step failed (claim, read, decode, write,
finish, notify): an `upload will be retried` log line with the key, image id, step and error, and the error on
the image item (`last_error`, `attempts`; see pipeline.store). Recording it is best effort: its own failure is
logged and never replaces the error that is raised.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from botocore.exceptions import ClientError

from pipeline import aws, store
from pipeline.errors import describe_failure, error_code, is_transient
from pipeline.imaging import ImageRejected, ProcessedImage, make_thumbnails
from pipeline.keys import image_id_for, owner_of, processed_key
from pipeline.settings import Settings
from pipeline.store import ClaimOutcome, Status, Upload

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

logger = Logger(service="imgops-worker")
processor = BatchProcessor(event_type=EventType.SQS)


class MalformedMessage(ValueError):
    """The queue message is not an S3 event: leave it to redelivery and the DLQ, where on-call can see it."""


@dataclass(frozen=True)
class WorkerDeps:
    settings: Settings
    s3: S3Client
    table: Table
    sns: SNSClient

    @classmethod
    def from_env(cls) -> WorkerDeps:
        settings = Settings.from_env()
        return cls(
            settings=settings,
            s3=aws.s3_client(),
            table=aws.dynamodb_resource().Table(settings.images_table),
            sns=aws.sns_client(),
        )


@cache
def _deps() -> WorkerDeps:
    return WorkerDeps.from_env()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)


def handle_record(record: SQSRecord) -> None:
    """Every log line about this record names its SQS message id (what `imgops dlq inspect` lists)."""
    with logger.append_context_keys(message_id=record.message_id):
        try:
            deps = _deps()
            uploads = parse_s3_event(record.body)
        except Exception:  # not an upload (or no configuration): logged here, as process_upload logs its own
            logger.exception("message will be retried")
            raise
        for upload in uploads:
            process_upload(upload, deps)


def process_message(body: str, deps: WorkerDeps) -> list[str]:
    """Process every upload an SQS message carries; returns what happened to each (for logs and tests)."""
    return [process_upload(upload, deps) for upload in parse_s3_event(body)]


def parse_s3_event(body: str) -> list[Upload]:
    try:
        event = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"message body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise MalformedMessage("message body is not a JSON object")
    if event.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(event.get("Records"), list):
        raise MalformedMessage("message body has no S3 Records")
    uploads = []
    for record in event["Records"]:
        try:
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError) as exc:
            raise MalformedMessage(f"S3 record lacks {exc}") from None
        owner = owner_of(key)
        if owner is None:
            logger.warning("ignoring object outside user-uploads/<sub>/", extra={"key": key})
            continue
        uploads.append(
            Upload(
                bucket=bucket,
                key=key,
                image_id=image_id_for(bucket, key),
                user_id=owner,
                version=f"{obj.get('eTag', '')}:{obj.get('sequencer', '')}",
                event_time=str(record.get("eventTime", "")),
            )
        )
    return uploads


@dataclass
class _Attempt:
    """One delivery's try at one upload: which step it is at, and whether it holds the item's claim."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    stage: str = "claim"
    claimed: bool = False


def process_upload(upload: Upload, deps: WorkerDeps) -> str:
    attempt = _Attempt()
    try:
        return _attempt(upload, deps, attempt)
    except store.ClaimBusy as busy:
        # Not an attempt at the work: another delivery is making one. Its outcome, not ours, goes on the item.
        logger.warning(
            "upload will be retried", extra={**_about(upload, attempt), "error": describe_failure(busy, attempt.stage)}
        )
        raise
    except Exception as exc:
        _record_failure(deps, upload, attempt, exc)
        raise


def _about(upload: Upload, attempt: _Attempt) -> dict[str, Any]:
    return {"key": upload.key, "image_id": upload.image_id, "stage": attempt.stage}


def _attempt(upload: Upload, deps: WorkerDeps, attempt: _Attempt) -> str:
    started = time.perf_counter()
    lease = deps.settings.worker_timeout_seconds
    outcome = store.claim(deps.table, upload, now=_now(), token=attempt.token, lease_seconds=lease)
    if outcome is ClaimOutcome.NOTIFY_ONLY:
        attempt.claimed, attempt.stage = True, "notify"
        _notify(deps, upload, store.get(deps.table, upload.image_id) or {})
        return str(outcome)
    if outcome is not ClaimOutcome.PROCESS:
        logger.info("skipping upload", extra={**_about(upload, attempt), "outcome": str(outcome)})
        return str(outcome)

    attempt.claimed = True
    fields = _outcome(deps, upload, attempt)
    fields["processed_at"] = _now()
    fields["processing_ms"] = round((time.perf_counter() - started) * 1000, 1)
    attempt.stage = "finish"
    if not store.finish(deps.table, upload, fields, token=attempt.token, lease_seconds=lease):
        return str(ClaimOutcome.STALE)
    attempt.stage = "notify"
    _notify(deps, upload, fields)  # a failure here leaves DONE-but-not-notified: a redelivery only notifies
    logger.info("upload finished", extra={"key": upload.key, "image_id": upload.image_id, **fields})
    return str(fields["status"])


def _record_failure(deps: WorkerDeps, upload: Upload, attempt: _Attempt, exc: Exception) -> None:
    """Log the failure, then put it on the item: with the claim, releasing it (so the redelivery need not wait
    for the lease) in the same write; without one (the claim is what failed), with a write of another kind."""
    error = describe_failure(exc, attempt.stage)
    about = _about(upload, attempt)
    logger.exception("upload will be retried", extra={**about, "error": error, "transient": is_transient(exc)})
    try:
        if attempt.claimed:
            store.record_failure(deps.table, upload, token=attempt.token, error=error)
        else:
            store.record_failed_claim(deps.table, upload, now=_now(), error=error)
    except Exception as failure:  # noqa: BLE001 - best effort: the original error is what gets raised
        logger.warning(
            "could not record the failure on the image item",
            extra={**about, "error": error, "record_error": describe_failure(failure, "record")},
        )


def _outcome(deps: WorkerDeps, upload: Upload, attempt: _Attempt) -> dict[str, Any]:
    """Thumbnails written and the item's fields, or FAILED with the reason; anything else raises (retry)."""
    try:
        attempt.stage = "read"
        content_type, data = _read_original(deps.s3, upload, deps.settings.max_upload_bytes)
        attempt.stage = "decode"
        image = make_thumbnails(data, deps.settings.image_options())
    except ImageRejected as rejection:
        logger.warning(
            "upload rejected", extra={"key": upload.key, "image_id": upload.image_id, "reason": rejection.reason}
        )
        return {"status": Status.FAILED.value, "reason": rejection.reason}
    attempt.stage = "write"
    keys = _write_thumbnails(deps, upload, image)
    return {
        "status": Status.DONE.value,
        "processedS3Keys": keys,
        # Each thumbnail's format and size, as written (the output format depends on IMGOPS_OUTPUT_FORMAT and
        # on the picture). Not "thumbnails": GET /images/{id} already answers that name with the download URLs.
        "thumbnailFiles": [
            {"size": t.size, "key": keys[str(t.size)], "format": t.format, "bytes": len(t.data)}
            for t in image.thumbnails
        ],
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "mode": image.mode,
        "has_transparency": image.has_transparency,
        "content_type": content_type,
        "size_bytes": len(data),
        "processed_bytes": sum(len(thumbnail.data) for thumbnail in image.thumbnails),
    }


def _read_original(s3: S3Client, upload: Upload, max_bytes: int) -> tuple[str, bytes]:
    try:
        response = s3.get_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            raise ImageRejected("the original was deleted before it could be processed") from None
        raise
    body = response["Body"]
    if response["ContentLength"] > max_bytes:
        body.close()
        raise ImageRejected(
            f"file is {response['ContentLength'] / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB"
        )
    return response.get("ContentType", ""), body.read()


def _write_thumbnails(deps: WorkerDeps, upload: Upload, image: ProcessedImage) -> dict[str, str]:
    keys = {}
    for thumbnail in image.thumbnails:
        key = processed_key(upload.image_id, thumbnail.size, thumbnail.extension)
        deps.s3.put_object(
            Bucket=deps.settings.processed_bucket,
            Key=key,
            Body=thumbnail.data,
            ContentType=thumbnail.content_type,
            CacheControl="public, max-age=31536000, immutable",
            Metadata={"image-id": upload.image_id, "source-version": upload.version},
        )
        keys[str(thumbnail.size)] = key
    return keys


def _notify(deps: WorkerDeps, upload: Upload, fields: dict[str, Any]) -> None:
    status = str(fields.get("status", ""))
    message = {
        "imageId": upload.image_id,
        "userId": upload.user_id,
        "status": status,
        "originalS3Key": upload.key,
        "processedBucket": deps.settings.processed_bucket,
        "processedS3Keys": fields.get("processedS3Keys", {}),
        "thumbnailFiles": fields.get("thumbnailFiles", []),
        "reason": fields.get("reason"),
        "processing_ms": fields.get("processing_ms"),
        "size_bytes": fields.get("size_bytes"),
        "processed_bytes": fields.get("processed_bytes"),
    }
    deps.sns.publish(
        TopicArn=deps.settings.topic_arn,
        Message=json.dumps(message),
        MessageAttributes={
            "status": {"DataType": "String", "StringValue": status},
            "userId": {"DataType": "String", "StringValue": upload.user_id},
        },
    )
    store.mark_notified(deps.table, upload, _now())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
