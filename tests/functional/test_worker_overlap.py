"""The overlapped batch (pipeline.worker.process_batch) against a real moto server: the same outcomes as one record at
a time for a batch of good, bad, duplicate and failing records, and the memory bound of pipeline.overlap."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from localaws.context import LocalLambdaContext
from localaws.faults import error_response
from localaws.runtime import sqs_event
from monitoring.target import StackInfo
from pipeline import aws, imaging, store, worker
from pipeline.overlap import HeldBytes, budget_bytes
from pipeline.settings import Settings
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.functional.conftest import NO_RETRIES, provisioned_stack, receive_uploads

SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"
GOOD = ("good-1", "good-2", "good-3", "good-4")
NOT_AN_IMAGE = "not-an-image"
WRITE_FAILS = "write-fails"  # PutObject of its thumbnails: SlowDown (transient, retried)
CLAIM_FAILS = "claim-fails"  # its claim's PutItem: throttled
NOTIFY_FAILS = "notify-fails"  # its Publish: throttled (the item is DONE, the notification retried)
IMAGES = (*GOOD, NOT_AN_IMAGE, WRITE_FAILS, CLAIM_FAILS, NOTIFY_FAILS)


def fail_for(client: Any, operation: str, marker: str, *, code: str, status: int) -> None:
    """Every `operation` call on `client` whose URL or body names `marker` fails with an AWS error response."""
    service = client.meta.service_model.service_id.hyphenize()

    def respond(request: Any, **_: Any) -> Any:
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        if marker in request.url or marker.encode() in body:
            return error_response(service, code, status)
        return None

    client.meta.events.register(f"before-send.{service}.{operation}", respond)


def deps_for(stack: StackInfo, *, overlap: bool) -> WorkerDeps:
    s3 = boto3.client("s3", config=aws.s3_config().merge(NO_RETRIES))
    settings = Settings(
        upload_bucket=stack.upload_bucket,
        processed_bucket=stack.processed_bucket,
        images_table=stack.images_table,
        topic_arn=stack.topic_arn,
        worker_overlap=overlap,
    )
    return WorkerDeps(
        settings=settings,
        s3=s3,
        table=boto3.resource("dynamodb", config=NO_RETRIES).Table(stack.images_table),
        sns=boto3.client("sns", config=NO_RETRIES),
    )


def observe(stack: StackInfo, sqs: Any) -> Callable[[], list[dict[str, Any]]]:
    queue_url = sqs.create_queue(QueueName=f"{stack.prefix}-observer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(
        TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )

    def drain() -> list[dict[str, Any]]:
        received = []
        while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return received

    return drain


def run_scenario(moto_endpoint: str, prefix: str, monkeypatch: pytest.MonkeyPatch, *, overlap: bool) -> dict[str, Any]:
    """The same batch on a fresh stack: 4 good JPEGs, a duplicate delivery of one, a not-an-image, a malformed
    message, and one upload each whose write, claim or notification fails. What happened, by image name."""
    stack = provisioned_stack(moto_endpoint, prefix, visibility_timeout=30)
    sqs = boto3.client("sqs")
    deps = deps_for(stack, overlap=overlap)
    drain = observe(stack, sqs)
    ids = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}/{name}")) for name in IMAGES}
    for name in IMAGES:
        body = b"<html>not a photo</html>" if name == NOT_AN_IMAGE else jpeg_bytes(1200, 900)
        key = f"user-uploads/{SUB}/{ids[name]}.jpg"
        deps.s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=body, ContentType="image/jpeg")
    messages = receive_uploads(sqs, stack, len(IMAGES))
    image_ids = {m["MessageId"]: worker.parse_s3_event(m["Body"])[0].image_id for m in messages}
    names = {image_id: name for name, image_id in ids.items()}
    by_name = {names[image_ids[m["MessageId"]]]: m for m in messages}
    duplicate = {**by_name["good-2"], "MessageId": "duplicate-of-good-2"}
    malformed = {"MessageId": "malformed", "ReceiptHandle": "r", "Body": "this is not an S3 event"}
    # good-2's duplicate right behind it: an early claim would find good-2's live lease (ClaimBusy).
    ordered = [by_name[n] for n in ("good-1", "good-2")] + [duplicate, malformed]
    ordered += [by_name[n] for n in (NOT_AN_IMAGE, WRITE_FAILS, "good-3", CLAIM_FAILS, NOTIFY_FAILS, "good-4")]

    fail_for(deps.s3, "PutObject", ids[WRITE_FAILS], code="SlowDown", status=503)
    fail_for(
        deps.table.meta.client, "PutItem", ids[CLAIM_FAILS], code="ProvisionedThroughputExceededException", status=400
    )
    fail_for(deps.sns, "Publish", ids[NOTIFY_FAILS], code="Throttling", status=400)
    monkeypatch.setattr(worker, "_deps", lambda: deps)
    event = sqs_event(ordered, queue_arn=stack.queue_arn, region=stack.region)
    response = worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=60, memory_mb=1769))

    failed = {str(f["itemIdentifier"]) for f in response["batchItemFailures"]}
    failed_names = {names.get(image_ids.get(m, ""), m) for m in failed}
    items = {}
    for name, image_id in ids.items():
        item = store.get(deps.table, image_id) or {}
        items[name] = {
            "status": item.get("status"),
            "reason": item.get("reason"),
            "attempts": item.get("attempts"),
            "last_error": str(item.get("last_error", "")).split(": ", 2)[:2],  # code and step
            "thumbnails": sorted(item.get("processedS3Keys", {})),
            "notified": bool(item.get("notified_at")),
        }
    time.sleep(0.2)  # SNS → SQS fan-out
    notified = sorted(names[n["imageId"]] for n in drain())
    return {"failed": failed_names, "items": items, "notified": notified}


def test_overlapped_batch_has_the_outcomes_of_one_record_at_a_time(
    moto_endpoint: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlapped = run_scenario(moto_endpoint, f"{unique_prefix}-o", monkeypatch, overlap=True)
    sequential = run_scenario(moto_endpoint, f"{unique_prefix}-s", monkeypatch, overlap=False)

    assert overlapped == sequential
    assert overlapped["failed"] == {"malformed", WRITE_FAILS, CLAIM_FAILS, NOTIFY_FAILS}  # the duplicate is not
    items = overlapped["items"]
    for name in GOOD:
        assert items[name] == {
            "status": "DONE",
            "reason": None,
            "attempts": 1,
            "last_error": [""],
            "thumbnails": ["1024", "256", "512"],
            "notified": True,
        }
    assert (items[NOT_AN_IMAGE]["status"], items[NOT_AN_IMAGE]["notified"]) == ("FAILED", True)
    assert "not a recognised image" in items[NOT_AN_IMAGE]["reason"]
    assert items[WRITE_FAILS] == {
        "status": "PROCESSING",
        "reason": None,
        "attempts": 1,
        "last_error": ["SlowDown", "write (PutObject)"],
        "thumbnails": [],
        "notified": False,
    }
    assert items[CLAIM_FAILS]["last_error"] == ["ProvisionedThroughputExceededException", "claim (PutItem)"]
    assert items[CLAIM_FAILS]["status"] == "PROCESSING"
    assert (items[NOTIFY_FAILS]["status"], items[NOTIFY_FAILS]["notified"]) == ("DONE", False)
    assert items[NOTIFY_FAILS]["last_error"] == ["Throttling", "notify (Publish)"]
    assert overlapped["notified"] == sorted([*GOOD, NOT_AN_IMAGE])  # each once: the duplicate sent nothing


class SlowDecoder:
    """make_thumbnails, then a pause: a big photo at one vCPU, so the prefetch surely runs during the decode."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.real = imaging.make_thumbnails
        self.threads: set[str] = set()

    def __call__(self, data: bytes, options: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        made = self.real(data, options)
        time.sleep(self.seconds)
        return made


def batch_of(stack: StackInfo, sqs: Any, s3: Any, count: int) -> list[SQSRecord]:
    for _ in range(count):
        key = f"user-uploads/{SUB}/{uuid.uuid4()}.jpg"
        s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=jpeg_bytes(800, 600), ContentType="image/jpeg")
    messages = receive_uploads(sqs, stack, count)
    return [
        SQSRecord(record) for record in sqs_event(messages, queue_arn=stack.queue_arn, region=stack.region)["Records"]
    ]


def test_at_most_one_original_is_prefetched(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoder = SlowDecoder(0.3)
    monkeypatch.setattr(worker, "make_thumbnails", decoder)
    records = batch_of(stack, sqs, s3, 6)
    held = HeldBytes(budget_bytes(1769))

    failures = worker.process_batch(records, deps, memory_mb=1769, held=held)

    assert failures == [None] * 6
    assert held.peak_originals == 2  # the one decoding and the next one, fetched meanwhile: never more
    assert 0 < held.peak_extra_bytes <= held.budget
    assert held.originals == 0
    assert decoder.threads == {threading.current_thread().name}  # decoding stays on the handler's thread
    for record in records:
        [upload] = worker.parse_s3_event(record.body)
        assert (store.get(deps.table, upload.image_id) or {})["status"] == "DONE"


def test_an_original_over_the_budget_waits_until_nothing_else_is_held(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "make_thumbnails", SlowDecoder(0.1))
    records = batch_of(stack, sqs, s3, 4)
    held = HeldBytes(budget=1)  # every original is over it

    assert worker.process_batch(records, deps, memory_mb=1769, held=held) == [None] * 4
    assert held.peak_originals == 1  # read only when the previous one was decoded and its thumbnails written
    assert held.peak_extra_bytes == 0  # nothing is ever held beside an original being decoded


def test_a_decode_that_raises_frees_its_bytes_and_the_batch_goes_on(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder bug (not a rejected image) fails that message only. Its original must not stay counted as held:
    with a budget of one and a half originals, two such failures would otherwise leave the next read waiting for
    ever and the batch hanging until the Lambda timeout."""
    real = imaging.make_thumbnails
    calls = 0

    def failing_twice(data: bytes, options: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("codec crashed")
        return real(data, options)

    monkeypatch.setattr(worker, "make_thumbnails", failing_twice)
    records = batch_of(stack, sqs, s3, 4)
    size = len(jpeg_bytes(800, 600))
    held = HeldBytes(budget=size * 3 // 2)

    outcome: list[list[Exception | None]] = []
    batch = threading.Thread(  # a daemon: a hang fails the test instead of stalling the suite
        target=lambda: outcome.append(worker.process_batch(records, deps, memory_mb=1769, held=held)), daemon=True
    )
    batch.start()
    batch.join(60)
    assert not batch.is_alive(), "the batch hangs: a failed decode's bytes are still counted as held"
    [failures] = outcome

    assert [type(f).__name__ if f else None for f in failures] == ["RuntimeError", "RuntimeError", None, None]
    assert held.originals == 0
    for record, failure in zip(records, failures, strict=True):
        [upload] = worker.parse_s3_event(record.body)
        item = store.get(deps.table, upload.image_id) or {}
        assert item.get("status") == ("PROCESSING" if failure else "DONE"), item
        if failure:
            assert "codec crashed" in str(item.get("last_error")), item


def test_one_record_at_a_time_when_switched_off(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequential = replace(deps, settings=replace(deps.settings, worker_overlap=False))
    monkeypatch.setattr(worker, "_deps", lambda: sequential)
    monkeypatch.setattr(worker, "process_batch", lambda *_, **__: pytest.fail("overlapped although switched off"))
    records = batch_of(stack, sqs, s3, 2)
    event = {"Records": [dict(record.raw_event) for record in records]}

    assert worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=60)) == {"batchItemFailures": []}
