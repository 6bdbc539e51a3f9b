"""The embedded AWS's object events (localaws.object_events.ObjectEventTap) as a consumer on AWS would meet them:
through real S3 requests of every kind that changes a bucket, each change an EventBridge-shaped event with a
sequencer and no size on a removal, and, with mischief, duplicated and out of order. The capacity counters fed
from them equal the bucket's listing."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from localaws.moto_process import MotoProcess
from localaws.object_events import ACCOUNT, Mischief, ObjectEventTap, Route
from monitoring.capacity import CapacityStore, EventKind, create_table, parse_message, truth_from_listing

OWNER = str(uuid.UUID(int=42))


@pytest.fixture
def tap(moto_endpoint: str) -> Iterator[ObjectEventTap]:
    tap = ObjectEventTap(random.Random(7))
    tap.install()
    yield tap
    tap.uninstall()


@pytest.fixture
def place(moto_endpoint: str) -> dict[str, Any]:
    name = f"tap-{uuid.uuid4().hex[:10]}"
    s3, sqs, dynamodb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    s3.create_bucket(Bucket=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    create_table(dynamodb, name)
    return {"bucket": name, "queue_url": queue_url, "s3": s3, "sqs": sqs, "store": CapacityStore(dynamodb, name)}


def drain(sqs: Any, queue_url: str, quiet_seconds: float) -> list[str]:
    """Every message, until none has come for `quiet_seconds` (longer than any delay the route adds)."""
    bodies: list[str] = []
    last = time.monotonic()
    while time.monotonic() - last < quiet_seconds:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if messages:
            last = time.monotonic()
    return bodies


def listing(s3: Any, bucket: str) -> Any:
    contents = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return truth_from_listing((obj["Key"], obj["Size"]) for obj in contents)


def test_every_kind_of_change_is_an_event_as_aws_shapes_it(tap: ObjectEventTap, place: dict[str, Any]) -> None:
    bucket, s3 = place["bucket"], place["s3"]
    tap.route([bucket], Route(place["queue_url"].rsplit("/", 1)[-1], "us-east-1"))
    upload = f"user-uploads/{OWNER}/{uuid.uuid4()}.jpg"
    s3.put_object(Bucket=bucket, Key=upload, Body=b"abc")
    s3.put_object(Bucket=bucket, Key=upload, Body=b"abcdef")  # an overwrite
    s3.copy_object(Bucket=bucket, Key="processed/copy.jpg", CopySource={"Bucket": bucket, "Key": upload})
    post = s3.generate_presigned_post(bucket, "processed/posted.jpg")
    assert requests.post(post["url"], data=post["fields"], files={"file": b"12345"}, timeout=10).status_code < 300
    multipart = s3.create_multipart_upload(Bucket=bucket, Key="processed/big.bin")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="processed/big.bin", UploadId=multipart, PartNumber=1, Body=b"x" * 10)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="processed/big.bin", UploadId=multipart,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip
    s3.put_object_tagging(Bucket=bucket, Key=upload, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})  # no event
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "processed/copy.jpg"}]})
    assert tap.expire(ACCOUNT, bucket, ["processed/posted.jpg", "processed/never-was.jpg"]) == 1

    bodies = drain(place["sqs"], place["queue_url"], quiet_seconds=2)
    raw = [json.loads(body)["detail"] for body in bodies]
    # moto's completion of a multipart upload also reports a Put first (AWS sends the one event): a create of the
    # same size again, which the counters take as an overwrite that changes nothing.
    assert [detail["reason"] for detail in raw] == [
        "PutObject", "PutObject", "CopyObject", "PostObject", "PutObject", "CompleteMultipartUpload",
        "DeleteObject", "Lifecycle Expiration",
    ]  # fmt: skip
    removed = [detail["object"] for detail in raw[-2:]]
    assert all("size" not in obj and obj["sequencer"] for obj in removed)  # as on AWS: no size on a removal
    events = [event for body in bodies for event in parse_message(body)]
    assert [event.kind for event in events].count(EventKind.REMOVED) == 2
    assert sorted(event.sequencer for event in events) == [event.sequencer for event in events]  # one writer here

    place["store"].apply(events)
    assert place["store"].counters(bucket) == listing(s3, bucket)


def test_duplicated_and_delayed_events_still_count_once(tap: ObjectEventTap, place: dict[str, Any]) -> None:
    bucket, s3 = place["bucket"], place["s3"]
    mischief = Mischief(duplicate=0.4, reorder=0.4)
    tap.route([bucket], Route(place["queue_url"].rsplit("/", 1)[-1], "us-east-1", mischief, max_delay_seconds=2))
    rng = random.Random(3)
    keys = [f"user-uploads/{OWNER}/{n}.jpg" for n in range(4)] + [f"processed/{n}/256.jpg" for n in range(4)]
    for _ in range(40):
        key = rng.choice(keys)
        if rng.random() < 0.7:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x" * rng.randint(0, 50))
        else:
            s3.delete_object(Bucket=bucket, Key=key)
    bodies = drain(place["sqs"], place["queue_url"], quiet_seconds=3.5)
    ids = [json.loads(body)["id"] for body in bodies]
    assert len(ids) > len(set(ids))  # some arrived twice
    store = place["store"]
    for start in range(0, len(bodies), 10):  # as the counter's event source hands them over
        store.apply([event for body in bodies[start : start + 10] for event in parse_message(body)])
    assert store.counters(bucket) == listing(s3, bucket)


def test_the_embedded_aws_routes_and_expires_over_its_pipe(unique_prefix: str) -> None:
    """What `imgops local up` will ask of its moto process: route a bucket's events, expire objects."""
    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        bucket = f"{unique_prefix}-uploads"
        s3.create_bucket(Bucket=bucket)
        queue_url = sqs.create_queue(QueueName=f"{unique_prefix}-capacity-events")["QueueUrl"]
        moto.route_object_events([bucket], Route(f"{unique_prefix}-capacity-events", "us-east-1"))
        s3.put_object(Bucket=bucket, Key="processed/a/256.jpg", Body=b"1234")
        assert moto.expire(bucket, ["processed/a/256.jpg", "missing"]) == 1
        bodies = drain(sqs, queue_url, quiet_seconds=1)
    finally:
        moto.stop()
    details = [json.loads(body)["detail"] for body in bodies]
    assert [(d["reason"], d["object"].get("size")) for d in details] == [
        ("PutObject", 4),
        ("Lifecycle Expiration", None),
    ]
