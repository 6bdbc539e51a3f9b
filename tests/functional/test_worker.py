"""The worker handler against a real moto server: uploads go through S3's own notification to SQS."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from PIL import Image

from localaws.context import LocalLambdaContext
from localaws.runtime import sqs_event
from monitoring.target import StackInfo
from pipeline import store, worker
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.faults import inject_fault
from tests.functional.conftest import receive_uploads

SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"
IMAGE_ID = "0b6f7f8e-2222-4c3b-9d1e-0000000000aa"


def put_upload(s3: Any, stack: StackInfo, data: bytes, *, image_id: str = IMAGE_ID, ext: str = "jpg") -> str:
    key = f"user-uploads/{SUB}/{image_id}.{ext}"
    s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=data, ContentType="image/jpeg")
    return key


def invoke(stack: StackInfo, messages: list[dict[str, Any]]) -> dict[str, Any]:
    event = sqs_event(messages, queue_arn=stack.queue_arn, region=stack.region)
    return dict(worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=60)))


def thumbnail_size(s3: Any, bucket: str, key: str) -> tuple[int, int]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with Image.open(io.BytesIO(body)) as image:
        return image.size


@pytest.mark.usefixtures("handler_env")
def test_upload_becomes_thumbnails_item_and_notification(
    stack: StackInfo, s3: Any, sqs: Any, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    key = put_upload(s3, stack, jpeg_bytes(1600, 1200))

    result = invoke(stack, receive_uploads(sqs, stack, 1))

    assert result == {"batchItemFailures": []}
    item = store.get(boto3.resource("dynamodb").Table(stack.images_table), IMAGE_ID)
    assert item is not None
    assert item["status"] == "DONE"
    assert (item["userId"], item["originalS3Key"]) == (SUB, key)
    assert (item["width"], item["height"], item["format"], item["mode"]) == (1600, 1200, "JPEG", "RGB")
    assert item["has_transparency"] is False
    assert item["processedS3Keys"] == {size: f"processed/{IMAGE_ID}/{size}.jpg" for size in ("1024", "512", "256")}
    assert item["processing_ms"] > 0
    expected = {"1024": (1024, 768), "512": (512, 384), "256": (256, 192)}
    for size, thumb_key in item["processedS3Keys"].items():
        assert thumbnail_size(s3, stack.processed_bucket, thumb_key) == expected[size]
    [envelope] = notifications()
    message = json.loads(envelope["Message"])
    assert (message["imageId"], message["status"], message["userId"]) == (IMAGE_ID, "DONE", SUB)
    assert envelope["MessageAttributes"]["status"]["Value"] == "DONE"
    assert envelope["MessageAttributes"]["userId"]["Value"] == SUB


@pytest.mark.usefixtures("handler_env")
def test_not_an_image_fails_permanently_with_a_reason(
    stack: StackInfo, s3: Any, sqs: Any, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    put_upload(s3, stack, b"<html><body>not a photo</body></html>")

    result = invoke(stack, receive_uploads(sqs, stack, 1))

    assert result == {"batchItemFailures": []}  # never retried
    item = store.get(boto3.resource("dynamodb").Table(stack.images_table), IMAGE_ID)
    assert item is not None
    assert item["status"] == "FAILED"
    assert "not a recognised image" in item["reason"]
    [envelope] = notifications()
    assert json.loads(envelope["Message"])["reason"] == item["reason"]
    assert envelope["MessageAttributes"]["status"]["Value"] == "FAILED"
    assert s3.list_objects_v2(Bucket=stack.processed_bucket).get("KeyCount") == 0


def test_throttling_is_retried_then_succeeds_once(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    put_upload(s3, stack, jpeg_bytes(800, 600))
    [message] = receive_uploads(sqs, stack, 1)
    remove_fault = inject_fault(s3, "PutObject", status=503, code="SlowDown")

    with pytest.raises(Exception, match="SlowDown"):
        worker.process_message(message["Body"], deps)

    item = store.get(deps.table, IMAGE_ID)
    assert item is not None
    assert item["status"] == "PROCESSING"  # not FAILED: the message goes back to the queue
    assert (item["attempts"], item["lease_expires"]) == (1, 0)  # the claim let go at once
    assert item["last_error"].startswith("SlowDown: write (PutObject): ")
    assert notifications() == []

    remove_fault()
    assert worker.process_message(message["Body"], deps) == ["DONE"]
    assert len(notifications()) == 1
    assert (store.get(deps.table, IMAGE_ID) or {})["attempts"] == 2


def test_redelivered_message_is_processed_once(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    put_upload(s3, stack, jpeg_bytes(800, 600))
    [message] = receive_uploads(sqs, stack, 1)

    assert worker.process_message(message["Body"], deps) == ["DONE"]
    first = store.get(deps.table, IMAGE_ID)
    written = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=stack.processed_bucket)["Contents"]}
    remove_fault = inject_fault(s3, "PutObject", status=500, code="InternalError")  # a rewrite would now blow up

    assert worker.process_message(message["Body"], deps) == ["duplicate"]
    remove_fault()
    assert store.get(deps.table, IMAGE_ID) == first
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=stack.processed_bucket)["Contents"]}
    assert after == written
    assert len(notifications()) == 1


def test_notification_lost_to_a_fault_is_sent_on_redelivery(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    put_upload(s3, stack, jpeg_bytes(640, 480))
    [message] = receive_uploads(sqs, stack, 1)

    heal = inject_fault(deps.sns, "Publish", status=400, code="Throttling")
    with pytest.raises(Exception, match="Throttling"):
        worker.process_message(message["Body"], deps)
    heal()
    assert notifications() == []

    assert worker.process_message(message["Body"], deps) == ["notify_only"]
    assert worker.process_message(message["Body"], deps) == ["duplicate"]
    assert len(notifications()) == 1


@pytest.mark.usefixtures("handler_env")
def test_batch_reports_only_the_failed_message(stack: StackInfo, s3: Any, sqs: Any) -> None:
    put_upload(s3, stack, jpeg_bytes(640, 480))
    put_upload(s3, stack, b"\xff\xd8\xff\xe0 truncated", image_id="0b6f7f8e-2222-4c3b-9d1e-0000000000bb")
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="this is not an S3 event")
    messages = receive_uploads(sqs, stack, 3)
    malformed = next(m["MessageId"] for m in messages if m["Body"].startswith("this is not"))

    result = invoke(stack, messages)

    assert result == {"batchItemFailures": [{"itemIdentifier": malformed}]}
    table = boto3.resource("dynamodb").Table(stack.images_table)
    assert (store.get(table, IMAGE_ID) or {})["status"] == "DONE"
    assert (store.get(table, "0b6f7f8e-2222-4c3b-9d1e-0000000000bb") or {})["status"] == "FAILED"


def test_url_encoded_keys_and_foreign_prefixes(stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps) -> None:
    key = f"user-uploads/{SUB}/holiday photo+1 é%.jpg"
    s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=jpeg_bytes(300, 200))
    [message] = receive_uploads(sqs, stack, 1)
    assert "%" in json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"]

    assert worker.process_message(message["Body"], deps) == ["DONE"]
    [upload] = worker.parse_s3_event(message["Body"])
    assert upload.key == key
    assert (store.get(deps.table, upload.image_id) or {})["originalS3Key"] == key

    foreign = json.dumps({"Records": [{"s3": {"bucket": {"name": stack.upload_bucket}, "object": {"key": "x.jpg"}}}]})
    assert worker.process_message(foreign, deps) == []


def test_deleted_original_fails_with_a_reason(stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps) -> None:
    key = put_upload(s3, stack, jpeg_bytes(300, 200))
    [message] = receive_uploads(sqs, stack, 1)
    s3.delete_object(Bucket=stack.upload_bucket, Key=key)

    assert worker.process_message(message["Body"], deps) == ["FAILED"]
    assert "deleted" in (store.get(deps.table, IMAGE_ID) or {})["reason"]


def test_poison_message_reaches_the_dlq_after_max_receives(moto_endpoint: str, unique_prefix: str) -> None:
    from localaws.provision import provision
    from pipeline.resources import QUEUE_MAX_RECEIVE_COUNT, ResourceNames

    stack = provision(ResourceNames(unique_prefix), endpoint_url=moto_endpoint, visibility_timeout=0)
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="poison")
    receives = 0
    for _ in range(QUEUE_MAX_RECEIVE_COUNT + 3):
        batch = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
        receives += sum(m["Body"] == "poison" for m in batch.get("Messages", []))
    assert receives == QUEUE_MAX_RECEIVE_COUNT
    dead = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead if "s3:TestEvent" not in m["Body"]] == ["poison"]


def test_newer_upload_of_the_same_key_wins_in_any_order(stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps) -> None:
    import time

    put_upload(s3, stack, jpeg_bytes(800, 600))
    [older] = receive_uploads(sqs, stack, 1)
    time.sleep(0.01)  # event times are millisecond-precise
    put_upload(s3, stack, jpeg_bytes(300, 200))  # the user overwrote it (the same presigned URL, twice)
    [newer] = receive_uploads(sqs, stack, 1)
    newer_etag = json.loads(newer["Body"])["Records"][0]["s3"]["object"]["eTag"]

    assert worker.process_message(newer["Body"], deps) == ["DONE"]
    assert worker.process_message(older["Body"], deps) == ["stale"]  # arrived late: ignored
    item = store.get(deps.table, IMAGE_ID) or {}
    assert item["sourceVersion"].startswith(newer_etag)
    assert (item["width"], item["height"]) == (300, 200)


def test_newer_upload_takes_over_a_finished_older_one(stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps) -> None:
    import time

    put_upload(s3, stack, jpeg_bytes(800, 600))
    [older] = receive_uploads(sqs, stack, 1)
    assert worker.process_message(older["Body"], deps) == ["DONE"]
    time.sleep(0.01)
    put_upload(s3, stack, jpeg_bytes(300, 200))
    [newer] = receive_uploads(sqs, stack, 1)

    assert worker.process_message(newer["Body"], deps) == ["DONE"]
    item = store.get(deps.table, IMAGE_ID) or {}
    assert (item["width"], item["height"]) == (300, 200)


def test_a_duplicate_delivered_while_the_first_runs_waits_its_turn(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    put_upload(s3, stack, jpeg_bytes(640, 480))
    [message] = receive_uploads(sqs, stack, 1)
    [upload] = worker.parse_s3_event(message["Body"])
    assert store.claim(deps.table, upload, now="t", token="first", lease_seconds=60) is store.ClaimOutcome.PROCESS

    with pytest.raises(store.ClaimBusy):  # SQS handed the same event to a second worker
        worker.process_message(message["Body"], deps)
    held = store.get(deps.table, IMAGE_ID) or {}
    assert (held["attempts"], "last_error" in held) == (1, False)  # the first delivery's attempt, not this one's
    store.release(deps.table, upload, token="first")  # the first delivery failed and let go
    assert worker.process_message(message["Body"], deps) == ["DONE"]
    assert worker.process_message(message["Body"], deps) == ["duplicate"]
    assert len(notifications()) == 1
