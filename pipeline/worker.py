"""SQS → thumbnails worker: one S3 upload in, thumbnails + item + notification out.

Permanent problems (not an image, a bomb, too large) end as a FAILED item with a reason and are never
retried; anything else raises, so Powertools reports that one message in `batchItemFailures` and SQS
redelivers it, and after `maxReceiveCount` parks it in the DLQ.

Every failed attempt leaves its cause where on-call looks, whichever step failed (claim, read, decode, write,
finish, notify): an `upload will be retried` log line with the key, image id, step and error, and the error on
the image item (`last_error`, `attempts`; see pipeline.store). Recording it is best effort: its own failure is
logged and never replaces the error that is raised. Every record of a batch must get its attempt before the
invocation times out, or its message reaches the DLQ with nothing recorded: the SDK's retries are bounded by the
invocation's time (pipeline.invocation), whichever way the batch runs.

A batch's records overlap (IMGOPS_WORKER_OVERLAP=1, the default; `process_batch`): while one image decodes on the
handler's thread, one I/O thread claims and reads the next original and another writes the previous image's
thumbnails, item and notification, so at >= 1 vCPU the billed time approaches the CPU time. Each record's outcome
is then reported through Powertools' own bookkeeping, so `batchItemFailures` is exactly what one-record-at-a-time
processing (IMGOPS_WORKER_OVERLAP=0) reports. The memory bound is pipeline.overlap's.

With IMGOPS_LABELS=rekognition the labels stage (pipeline.labels) runs before the item is finished; it never fails
the thumbnails.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.base import FailureResponse, SuccessResponse
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError

from pipeline import aws, invocation, labels, store
from pipeline.errors import describe_failure, error_code, is_transient
from pipeline.imaging import ImageRejected, ProcessedImage, Thumbnail, make_thumbnails
from pipeline.keys import image_id_for, owner_of, processed_key
from pipeline.overlap import Abandoned, HeldBytes, budget_bytes
from pipeline.resources import WORKER_MEMORY_MB
from pipeline.settings import Settings
from pipeline.store import ClaimOutcome, Status, Upload

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

logger = Logger(service="imgops-worker")


class MalformedMessage(ValueError):
    """The queue message is not an S3 event: leave it to redelivery and the DLQ, where on-call can see it."""


@dataclass(frozen=True)
class WorkerDeps:
    settings: Settings
    s3: S3Client
    table: Table
    sns: SNSClient
    rekognition: RekognitionClient | None = None  # only with IMGOPS_LABELS=rekognition

    @classmethod
    def from_env(cls) -> WorkerDeps:
        settings = Settings.from_env()
        deps = cls(
            settings=settings,
            s3=aws.s3_client(),
            table=aws.dynamodb_resource().Table(settings.images_table),
            sns=aws.sns_client(),
            rekognition=aws.rekognition_client() if settings.labels == "rekognition" else None,
        )
        for client in deps.clients():
            invocation.current.bound_retries(client)
        return deps

    def clients(self) -> list[Any]:
        """Every AWS client the worker calls."""
        clients: list[Any] = [self.s3, self.table.meta.client, self.sns]
        return clients if self.rekognition is None else [*clients, self.rekognition]


@cache
def _deps() -> WorkerDeps:
    return WorkerDeps.from_env()


class OverlappingBatchProcessor(BatchProcessor):
    """Powertools' SQS batch processor whose `process` runs the batch through `process_batch` (records overlapped)
    and then settles each record with Powertools' own success and failure handlers, so the partial-batch response
    (and the all-records-failed error) is built exactly as for one record at a time. Without configuration, or
    with IMGOPS_WORKER_OVERLAP=0, it is the plain BatchProcessor calling `handle_record` per record."""

    def process(self) -> list[SuccessResponse | FailureResponse]:
        with invocation.current.running(self._remaining_seconds()) as running:
            return self._process(running.deadline)

    def _process(self, deadline: float | None) -> list[SuccessResponse | FailureResponse]:
        try:
            deps = _deps()
        except Exception:  # noqa: BLE001 - no configuration: each record fails in handle_record, logged there
            return list(super().process())
        if not deps.settings.worker_overlap:
            return list(super().process())
        records = [SQSRecord(record) for record in self.records]
        try:
            failures = process_batch(records, deps, memory_mb=self._memory_mb(), deadline=deadline)
        except Exception as exc:  # a defect outside the stages (process_batch records its own): every record fails
            logger.exception("batch failed; every message will be retried")
            failures = [exc] * len(records)
        settled: list[SuccessResponse | FailureResponse] = []
        for raw, record, failure in zip(self.records, records, failures, strict=True):
            if failure is None:
                settled.append(self.success_handler(record=raw, result=None))
            else:
                settled.append(
                    self.failure_handler(record=record, exception=(type(failure), failure, failure.__traceback__))
                )
        return settled

    def _remaining_seconds(self) -> float | None:
        """How long until the invocation times out (None: not known)."""
        context = getattr(self, "lambda_context", None)
        try:
            return int(context.get_remaining_time_in_millis()) / 1000 if context else None
        except (AttributeError, TypeError, ValueError):
            return None

    def _memory_mb(self) -> int:
        context = getattr(self, "lambda_context", None)
        try:
            return int(context.memory_limit_in_mb if context is not None else os.environ[_MEMORY_ENV])
        except (KeyError, TypeError, ValueError):
            return WORKER_MEMORY_MB


_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
processor = OverlappingBatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)


@contextlib.contextmanager
def _about_message(message_id: str) -> Iterator[None]:
    """Every log line about a record names its SQS message id (what `imgops dlq inspect` lists). Per thread: the
    overlapped batch logs about three records at once, one per thread."""
    logger.thread_safe_append_keys(message_id=message_id)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(["message_id"])


def handle_record(record: SQSRecord) -> None:
    """One record at a time (IMGOPS_WORKER_OVERLAP=0)."""
    with _about_message(record.message_id):
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


@dataclass
class _Work:
    """One upload through the stages: fetch (claim, read), decode, deliver (write, labels, finish, notify)."""

    upload: Upload
    message: int = 0  # the index of its SQS record in the batch
    message_id: str = ""
    attempt: _Attempt = field(default_factory=_Attempt)
    started: float = 0.0
    content_type: str = ""
    size_bytes: int = 0
    data: bytes | None = None  # the original: from the read until decoded (or, for labels, until delivered)
    image: ProcessedImage | None = None  # the thumbnails: from the decode until written
    rejected: dict[str, Any] | None = None  # FAILED and why: refused at the read or the decode
    settled: str | None = None  # nothing left to do after the claim: duplicate, stale, notify_only
    deadline: float | None = None  # when the invocation times out (time.monotonic()), if known
    ended: bool = False  # delivered, or a stage raised (and recorded it): nothing of it is left to record


def process_upload(upload: Upload, deps: WorkerDeps) -> str:
    """One upload, its stages one after the other."""
    work = _Work(upload, deadline=invocation.current.deadline)
    with _recorded(work, deps):
        _fetch(work, deps)
        _decode(work, deps)
        return _deliver(work, deps)


def process_batch(
    records: Sequence[SQSRecord],
    deps: WorkerDeps,
    *,
    memory_mb: int,
    held: HeldBytes | None = None,
    deadline: float | None = None,
) -> list[Exception | None]:
    """Every record's uploads through the stages, I/O overlapped with decoding; per record, None or the first
    exception one of its uploads raised (already logged and recorded on the item, as one at a time does).

    The handler's thread decodes; one thread fetches (claim + read of the next upload, while this one decodes),
    one delivers (writes, labels, finish, notify of the previous one, while this one decodes). The uploads go in
    order, and an upload is not claimed early while another upload of the same image is in flight, so claims,
    duplicates and "newer wins" come out as one at a time. Differences from one at a time: an upload whose
    message's earlier upload failed is still processed (S3 sends one upload per message), and `processing_ms`
    includes the wait for the decoder. Memory: pipeline.overlap's bound, budget `memory_mb / 20` (`held`: the
    counter to use, for tests). `deadline` (time.monotonic()): when the invocation times out; labels are skipped
    for images delivered too close to it, so a slow Rekognition cannot time the batch out.
    """
    failures: list[Exception | None] = [None] * len(records)
    works: list[_Work] = []
    for index, record in enumerate(records):
        with _about_message(record.message_id):
            try:
                uploads = parse_s3_event(record.body)
            except Exception as exc:  # this record fails; the others go on
                logger.exception("message will be retried")
                failures[index] = exc
                continue
        works += [_Work(upload, message=index, message_id=record.message_id, deadline=deadline) for upload in uploads]
    try:
        _Overlap(deps, held or HeldBytes(budget_bytes(memory_mb)), failures).run(works)
    except Exception as exc:  # a defect of the batch machinery itself: every record fails, none is lost
        logger.exception("batch failed; every message will be retried")
        _record_unended(works, deps, exc)
        return [exc] * len(records)
    return failures


def _record_unended(works: list[_Work], deps: WorkerDeps, exc: Exception) -> None:
    """The batch machinery failed: every upload whose outcome no stage settled gets the failure on its item, as a
    failed stage would (a claim held is let go, so the redelivery need not wait for the lease)."""
    for work in works:
        if work.ended:
            continue
        if not work.started:  # never reached: no stage of its own failed
            work.attempt.stage = "batch"
        with _about_message(work.message_id):
            _record_failure(deps, work.upload, work.attempt, exc)


class _Overlap:
    """The three stages of process_batch, with the handler's thread as the decoder."""

    def __init__(self, deps: WorkerDeps, held: HeldBytes, failures: list[Exception | None]) -> None:
        self.deps = deps
        self.held = held
        self.failures = failures

    def run(self, works: list[_Work]) -> None:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="imgops-fetch") as fetcher,
            ThreadPoolExecutor(1, thread_name_prefix="imgops-deliver") as deliverer,
            ThreadPoolExecutor(len(self.deps.settings.thumbnail_sizes), thread_name_prefix="imgops-put") as puts,
        ):
            try:
                self._run(works, fetcher, deliverer, puts)
            except BaseException:
                # Leaving the executors waits for their threads: a fetch waiting for memory this thread would
                # have released must give up instead (overlap.Abandoned), or the batch hangs to the timeout.
                self.held.abandon()
                raise

    def _run(
        self, works: list[_Work], fetcher: ThreadPoolExecutor, deliverer: ThreadPoolExecutor, puts: ThreadPoolExecutor
    ) -> None:
        fetching: Future[None] | None = None  # works[i]'s fetch, when it was started early
        delivering: tuple[_Work, Future[None]] | None = None
        for i, work in enumerate(works):
            if fetching is None:  # not prefetched: the first, or an image whose delivery had to end first
                if delivering is not None and delivering[0].upload.image_id == work.upload.image_id:
                    self._settle(*delivering)
                    delivering = None
                fetching = fetcher.submit(self._stage, work, self._fetch)
            fetched = self._settle(work, fetching)
            fetching = None
            decoding = fetched and work.data is not None
            if decoding:
                self.held.start_decoding(work.size_bytes)
            following = works[i + 1] if i + 1 < len(works) else None
            busy = {work.upload.image_id} | ({delivering[0].upload.image_id} if delivering else set())
            if following is not None and following.upload.image_id not in busy:
                fetching = fetcher.submit(self._stage, following, self._fetch)
            decoded = self._decode(work) if decoding else fetched
            if delivering is not None:  # at most one image's thumbnails in the writer at a time
                self._settle(*delivering)
                delivering = None
            if decoded:
                delivering = (work, deliverer.submit(self._stage, work, lambda w: self._deliver(w, puts)))
        if delivering is not None:
            self._settle(*delivering)

    def _fetch(self, work: _Work) -> None:
        _fetch(work, self.deps, self.held)

    def _decode(self, work: _Work) -> bool:
        """On the handler's thread; False when the decode raised (recorded like any stage). A failed decode
        hands nothing to the writer: its bytes are dropped here, or they would count against the budget for the
        rest of the batch and the next large original would wait for them forever."""
        decoded = False
        try:
            with _about_message(work.message_id), _recorded(work, self.deps):
                _decode(work, self.deps)
            decoded = True
        except Exception as exc:  # noqa: BLE001 - this upload's message fails; the batch goes on
            self._fail(work, exc)
        finally:
            if not decoded:
                work.data = work.image = None
            self.held.finish_decoding(handed_to_writer=self._pending_bytes(work))
        return decoded

    def _deliver(self, work: _Work, puts: ThreadPoolExecutor) -> None:
        pending = self._pending_bytes(work)
        try:
            _deliver(work, self.deps, puts)
            work.ended = True
        finally:
            self.held.written(pending)

    @staticmethod
    def _pending_bytes(work: _Work) -> int:
        thumbnails = sum(len(t.data) for t in work.image.thumbnails) if work.image is not None else 0
        return thumbnails + (len(work.data) if work.data is not None else 0)

    def _stage(self, work: _Work, stage: Any) -> None:
        with _about_message(work.message_id), _recorded(work, self.deps):
            stage(work)

    def _settle(self, work: _Work, future: Future[None]) -> bool:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - logged and recorded by the stage; this message fails
            self._fail(work, exc)
            return False
        return True

    def _fail(self, work: _Work, exc: Exception) -> None:
        if self.failures[work.message] is None:
            self.failures[work.message] = exc


@contextlib.contextmanager
def _recorded(work: _Work, deps: WorkerDeps) -> Iterator[None]:
    """A stage that raises leaves its cause on the item and in the log (`_record_failure`), then raises."""
    try:
        yield
    except Abandoned:  # the batch machinery failed: process_batch records its error instead
        raise
    except store.ClaimBusy as busy:
        # Not an attempt at the work: another delivery is making one. Its outcome, not ours, goes on the item.
        work.ended = True
        logger.warning(
            "upload will be retried",
            extra={**_about(work.upload, work.attempt), "error": describe_failure(busy, work.attempt.stage)},
        )
        raise
    except Exception as exc:
        work.ended = True
        _record_failure(deps, work.upload, work.attempt, exc)
        raise


def _about(upload: Upload, attempt: _Attempt) -> dict[str, Any]:
    return {"key": upload.key, "image_id": upload.image_id, "stage": attempt.stage}


def _fetch(work: _Work, deps: WorkerDeps, held: HeldBytes | None = None) -> None:
    """Claim the upload and read its original (I/O). `held`: the overlapped batch's memory bound."""
    upload, attempt = work.upload, work.attempt
    work.started = time.perf_counter()
    lease = deps.settings.worker_timeout_seconds
    outcome = store.claim(deps.table, upload, now=_now(), token=attempt.token, lease_seconds=lease)
    if outcome is ClaimOutcome.NOTIFY_ONLY:
        attempt.claimed, attempt.stage = True, "notify"
        _notify(deps, upload, store.get(deps.table, upload.image_id) or {})
        work.settled = str(outcome)
        return
    if outcome is not ClaimOutcome.PROCESS:
        logger.info("skipping upload", extra={**_about(upload, attempt), "outcome": str(outcome)})
        work.settled = str(outcome)
        return
    attempt.claimed = True
    attempt.stage = "read"
    try:
        work.content_type, work.data = _read_original(deps.s3, upload, deps.settings.max_upload_bytes, held)
    except ImageRejected as rejection:
        work.rejected = _rejected(upload, rejection)
        return
    work.size_bytes = len(work.data)


def _decode(work: _Work, deps: WorkerDeps) -> None:
    """The thumbnails (CPU). The original is dropped here unless the labels stage will send its bytes."""
    if work.data is None:
        return
    work.attempt.stage = "decode"
    try:
        work.image = make_thumbnails(work.data, deps.settings.image_options())
    except ImageRejected as rejection:
        work.rejected = _rejected(work.upload, rejection)
    if work.image is None or deps.rekognition is None or not labels.wanted_bytes(work.image, work.size_bytes):
        work.data = None


def _deliver(work: _Work, deps: WorkerDeps, puts: ThreadPoolExecutor | None = None) -> str:
    """Write the thumbnails, ask for labels, finish the item and notify (I/O). `puts`: see _write_thumbnails."""
    upload, attempt = work.upload, work.attempt
    if work.settled is not None:
        return work.settled
    if work.image is not None:
        attempt.stage = "write"
        fields = _done(work, _write_thumbnails(deps, upload, work.image, puts))
        if deps.rekognition is not None and not labels.time_left(work.deadline):
            fields["labels_error"] = labels.NO_TIME
        elif deps.rekognition is not None:
            attempt.stage = "labels"
            fields.update(
                labels.detect(
                    deps.rekognition,
                    upload=upload,
                    image=work.image,
                    original=work.data,
                    original_size=work.size_bytes,
                    min_confidence=deps.settings.labels_min_confidence,
                )
            )
    else:
        fields = dict(work.rejected or {"status": Status.FAILED.value, "reason": "nothing to process"})
    work.data = work.image = None
    fields["processed_at"] = _now()
    fields["processing_ms"] = round((time.perf_counter() - work.started) * 1000, 1)
    attempt.stage = "finish"
    if not store.finish(
        deps.table, upload, fields, token=attempt.token, lease_seconds=deps.settings.worker_timeout_seconds
    ):
        return str(ClaimOutcome.STALE)
    attempt.stage = "notify"
    _notify(deps, upload, fields)  # a failure here leaves DONE-but-not-notified: a redelivery only notifies
    logger.info("upload finished", extra={"key": upload.key, "image_id": upload.image_id, **fields})
    return str(fields["status"])


# The service (botocore's hyphenized id, as pipeline.invocation keys it) whose call each stage makes.
STAGE_SERVICES = {"claim": "dynamodb", "finish": "dynamodb", "read": "s3", "write": "s3", "notify": "sns"}


def _record_failure(deps: WorkerDeps, upload: Upload, attempt: _Attempt, exc: Exception) -> None:
    """Log the failure, then put it on the item: with the claim, releasing it (so the redelivery need not wait
    for the lease) in the same write; without one (the claim is what failed), with a write of another kind."""
    error = describe_failure(exc, attempt.stage)
    about = _about(upload, attempt)
    transient = is_transient(exc)
    logger.exception("upload will be retried", extra={**about, "error": error, "transient": transient})
    if transient:  # it outlasted the SDK's retries: the rest of the invocation tries that service's calls once
        invocation.current.failed_transiently(STAGE_SERVICES.get(attempt.stage, attempt.stage))
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


def _rejected(upload: Upload, rejection: ImageRejected) -> dict[str, Any]:
    logger.warning(
        "upload rejected", extra={"key": upload.key, "image_id": upload.image_id, "reason": rejection.reason}
    )
    return {"status": Status.FAILED.value, "reason": rejection.reason}


def _done(work: _Work, keys: dict[str, str]) -> dict[str, Any]:
    image = work.image
    assert image is not None
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
        "content_type": work.content_type,
        "size_bytes": work.size_bytes,
        "processed_bytes": sum(len(thumbnail.data) for thumbnail in image.thumbnails),
    }


def _read_original(s3: S3Client, upload: Upload, max_bytes: int, held: HeldBytes | None = None) -> tuple[str, bytes]:
    try:
        response = s3.get_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            raise ImageRejected("the original was deleted before it could be processed") from None
        raise
    body = response["Body"]
    size = response["ContentLength"]
    if size > max_bytes:
        body.close()
        raise ImageRejected(f"file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    if held is None:
        return response.get("ContentType", ""), body.read()
    try:
        held.reserve_original(size)  # may wait: the body stays unread (on the wire) until it fits
    except BaseException:  # overlap.Abandoned: never read
        body.close()
        raise
    try:
        return response.get("ContentType", ""), body.read()
    except BaseException:
        held.drop_original(size)
        raise


def _write_thumbnails(
    deps: WorkerDeps, upload: Upload, image: ProcessedImage, puts: ThreadPoolExecutor | None = None
) -> dict[str, str]:
    """One PUT per thumbnail; with `puts` (the overlapped batch) all at once, so the write takes one round trip."""
    keys = {str(t.size): processed_key(upload.image_id, t.size, t.extension) for t in image.thumbnails}

    def put(thumbnail: Thumbnail) -> None:
        deps.s3.put_object(
            Bucket=deps.settings.processed_bucket,
            Key=keys[str(thumbnail.size)],
            Body=thumbnail.data,
            ContentType=thumbnail.content_type,
            CacheControl="public, max-age=31536000, immutable",
            Metadata={"image-id": upload.image_id, "source-version": upload.version},
        )

    if puts is None:
        for thumbnail in image.thumbnails:
            put(thumbnail)
        return keys
    futures = [puts.submit(put, thumbnail) for thumbnail in image.thumbnails]
    for future in futures:  # every PUT ends before the first error is raised: none is left running
        future.exception()
    for future in futures:
        future.result()
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
        "labels": fields.get("labels"),  # IMGOPS_LABELS=rekognition: [{"name", "confidence"}, ...]
        "labels_error": fields.get("labels_error"),  # and why there are none, when they are missing
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
