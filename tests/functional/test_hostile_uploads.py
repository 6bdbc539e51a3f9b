"""Hostile files under awkward keys, through S3's own notification, SQS and `worker.handler` on moto.

Every upload must end DONE or FAILED with its reason, in one batch that reports no failures: a hostile file
is the uploader's problem, never a retry, a DLQ entry or a dead worker.
"""

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
from pipeline import keys, read_api, store, worker
from pipeline.resources import WORKER_BATCH_SIZE
from pipeline.settings import Settings
from tests.functional.conftest import receive_uploads
from tests.hostile import HostileFile, hostile_corpus

SUB = "5f0c6a9e-1111-4c3b-9d1e-00000000beef"
OWN = f"user-uploads/{SUB}/"

# Key (under the user's own prefix) → hostile file. S3 sends keys URL-encoded (`+` for a space).
UPLOADS: dict[str, str] = {
    f"{OWN}my holiday photo.jpg": "png-named-jpg",
    f"{OWN}a+b=c&d.jpg": "html-as-jpg",
    f"{OWN}фото-😀-été.png": "png-palette-trns",
    f"{OWN}100% real %2F%25 x.jpg": "jpeg-exif-orientation-6",
    f"{OWN}dir with space/nested/anim.gif": "gif-animated",
    f"{OWN}../../processed/escape.png": "png-1x20000",
    f"{OWN}?query=1#fragment.jpg": "zero-bytes",
    f"{OWN}bomb.png": "png-bomb-header-65535",
    f"{OWN}cut.jpg": "jpeg-truncated-half",
    f"{OWN}meta bomb.png": "png-ztxt-zlib-bomb",
    f"{OWN}cmyk.jpg": "jpeg-cmyk",
    f"{OWN}crc.png": "png-bad-crc",
    f"{OWN}IMG_0001.HEIC": "heic-photo",
    f"{OWN}bomb.heic": "heic-bomb-header-65535",
    f"{OWN}clip.heics": "heic-sequence-track-only",
    f"{OWN}alpha.avif": "avif-alpha",
    f"{OWN}deep 12-bit.avif": "avif-12bit",
    f"{OWN}cut.avif": "avif-truncated-half",
}

# Keys the pipeline must leave alone. S3 never notifies for the first group (the prefix filter); the second
# only reaches the worker if someone widens that filter, so they are sent as hand-made S3 events.
NOT_NOTIFIED = ["elsewhere/photo.jpg", "user-uploads", "User-Uploads/x/photo.jpg", "processed/x/1024.jpg"]
NOT_UPLOADS = [
    "elsewhere/photo.jpg",
    "user-uploads/photo.jpg",  # no owner
    "user-uploads//photo.jpg",  # empty owner
    f"{OWN}",  # a folder marker
    f"{OWN}folder/",
    "processed/0b6f7f8e-2222-4c3b-9d1e-0000000000aa/1024.jpg",
]


def invoke(stack: StackInfo, messages: list[dict[str, Any]]) -> list[Any]:
    """What the event source mapping does: batches of at most WORKER_BATCH_SIZE; returns all failures."""
    failures: list[Any] = []
    for start in range(0, len(messages), WORKER_BATCH_SIZE):
        event = sqs_event(messages[start : start + WORKER_BATCH_SIZE], queue_arn=stack.queue_arn, region=stack.region)
        result = worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=60))
        failures += result["batchItemFailures"]
    return failures


def object_keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.mark.usefixtures("handler_env")
def test_hostile_uploads_end_done_or_failed_with_reason_and_never_fail_the_batch(
    stack: StackInfo, s3: Any, sqs: Any, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    files = {f.name: f for f in hostile_corpus(include_slow=False)}
    for key, name in UPLOADS.items():
        s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=files[name].data, ContentType="image/jpeg")
    for key in NOT_NOTIFIED:
        s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=files["jpeg-cmyk"].data)

    messages = receive_uploads(sqs, stack, len(UPLOADS))
    raw_keys = [json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in messages]
    # What S3 sends is URL-encoded (`+` for a space, `%25` for `%`); the worker must decode it exactly once.
    assert any(raw.endswith("my+holiday+photo.jpg") for raw in raw_keys), raw_keys
    assert any("100%25+real+%252F%2525+x.jpg" in raw for raw in raw_keys), raw_keys
    assert {u.key for m in messages for u in worker.parse_s3_event(m["Body"])} == set(UPLOADS)

    assert invoke(stack, messages) == []

    table = boto3.resource("dynamodb").Table(stack.images_table)
    processed = object_keys(s3, stack.processed_bucket)
    done_files: dict[str, Any] = {}
    for key, name in UPLOADS.items():
        hostile = files[name]
        image_id = keys.image_id_for(stack.upload_bucket, key)
        item = store.get(table, image_id)
        assert item is not None, key
        assert (item["userId"], item["originalS3Key"]) == (SUB, key)
        if hostile.expect == "rejected":
            assert item["status"] == "FAILED", (key, item)
            assert hostile.reason in item["reason"], (key, item["reason"])
            assert not any(k.startswith(f"processed/{image_id}/") for k in processed), key
        else:
            assert item["status"] == "DONE", (key, item.get("reason"))
            check_thumbnails(s3, stack, hostile, item, image_id)
            done_files[key] = item["thumbnailFiles"]
            answer = read_api.describe_image(
                image_id=image_id, user_sub=SUB, settings=Settings.from_env(), table=table, s3=s3
            )
            assert answer["thumbnailFiles"] == item["thumbnailFiles"], "GET /images/{id} returns them as stored"
    assert all(k.startswith("processed/") and k.count("/") == 2 for k in processed), processed

    sent = [json.loads(envelope["Message"]) for envelope in notifications()]
    assert sorted(m["originalS3Key"] for m in sent) == sorted(UPLOADS), "one notification per upload"
    assert all(m["status"] in {"DONE", "FAILED"} and (m["status"] == "DONE") == (not m["reason"]) for m in sent)
    assert {m["originalS3Key"]: m["thumbnailFiles"] for m in sent if m["status"] == "DONE"} == done_files

    leftover = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [m["Body"] for m in leftover.get("Messages", [])] == [], "keys outside the prefix must not be notified"


def check_thumbnails(s3: Any, stack: StackInfo, hostile: HostileFile, item: dict[str, Any], image_id: str) -> None:
    assert hostile.size is not None
    assert (item["width"], item["height"]) == hostile.size
    assert set(item["processedS3Keys"]) == {"1024", "512", "256"}
    files = {str(entry["size"]): entry for entry in item["thumbnailFiles"]}
    assert set(files) == set(item["processedS3Keys"])
    for size, key in item["processedS3Keys"].items():
        assert key.startswith(f"processed/{image_id}/{size}.")
        response = s3.get_object(Bucket=stack.processed_bucket, Key=key)
        body = response["Body"].read()
        assert (files[size]["key"], files[size]["bytes"]) == (key, len(body))
        with Image.open(io.BytesIO(body)) as thumbnail:
            assert max(thumbnail.size) == min(int(size), max(hostile.size))
            assert thumbnail.format == files[size]["format"]
            assert response["ContentType"] == Image.MIME[str(thumbnail.format)]


@pytest.mark.usefixtures("handler_env")
def test_events_for_keys_outside_a_users_prefix_are_ignored(
    stack: StackInfo, sqs: Any, notifications: Callable[[], list[dict[str, Any]]]
) -> None:
    for key in NOT_UPLOADS:
        record = {
            "eventTime": "2026-11-01T00:00:00.000Z",
            "s3": {
                "bucket": {"name": stack.upload_bucket},
                "object": {"key": key.replace(" ", "+"), "eTag": "e", "sequencer": "01"},
            },
        }
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps({"Records": [record]}))
    messages = receive_uploads(sqs, stack, len(NOT_UPLOADS))

    assert invoke(stack, messages) == []

    assert boto3.client("dynamodb").scan(TableName=stack.images_table)["Count"] == 0
    assert notifications() == []
