"""The capacity counters against a real bucket: random puts, overwrites, deletes and lifecycle expirations on a moto
bucket, their events made as AWS makes them (localaws.object_events) and delivered at least once, out of order and
in batches of any size. The counters must equal what list_objects_v2 says, per bucket and per owner; with events
lost, after one reconciliation, and a second reconciliation finds no drift."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localaws.object_events import (
    LIFECYCLE_REASON,
    Delivery,
    Mischief,
    Sequencers,
    message_body,
    object_created,
    object_deleted,
)
from monitoring.capacity import (
    BUCKET_TOTAL,
    CapacityStore,
    create_table,
    drift,
    parse_message,
    truth_from_listing,
)
from monitoring.capacity_counter import apply_batch
from monitoring.capacity_publisher import publish_counters
from monitoring.s3_metrics import Totals
from pipeline.resources import ResourceNames

OWNERS = [str(uuid.UUID(int=n)) for n in range(1, 4)]


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> dict[str, Any]:
    # A deployment's table name: tests/iam.py judges the counter's and publisher's calls by the template's roles.
    name = ResourceNames(f"t{uuid.uuid4().hex[:8]}").capacity_table
    dynamodb = boto3.client("dynamodb")
    create_table(dynamodb, name)
    return {"table": name, "dynamodb": dynamodb, "s3": boto3.client("s3"), "sequencers": Sequencers()}


def keys() -> st.SearchStrategy[str]:
    upload = st.builds(
        lambda owner, n: f"user-uploads/{owner}/{uuid.UUID(int=n)}.jpg", st.sampled_from(OWNERS), st.integers(0, 5)
    )
    processed = st.builds(
        lambda n, size: f"processed/{uuid.UUID(int=n)}/{size}.jpg", st.integers(0, 3), st.sampled_from([256, 1024])
    )
    return st.one_of(upload, processed)


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["put", "put", "put", "delete", "expire"]), keys(), st.integers(0, 3000)),
    min_size=1,
    max_size=30,
)


def run_operations(world: dict[str, Any], bucket: str, operations: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Do them to the bucket; the events S3 would send (a delete of a missing key sends one too, as S3 does)."""
    s3, sequencers = world["s3"], world["sequencers"]
    events = []
    when = datetime(2026, 12, 5, 12, tzinfo=UTC)
    for step, (operation, key, size) in enumerate(operations):
        moment = when + timedelta(seconds=step)
        if operation == "put":
            answer = s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)
            events.append(object_created(bucket, key, size, answer["ETag"], sequencers.next(), moment))
        else:  # a lifecycle expiration removes the object just as a delete does; only the reason differs
            s3.delete_object(Bucket=bucket, Key=key)
            reason = LIFECYCLE_REASON if operation == "expire" else "DeleteObject"
            events.append(object_deleted(bucket, key, sequencers.next(), moment, reason))
    return events


def listing(s3: Any, bucket: str) -> dict[str, Totals]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return truth_from_listing((obj["Key"], obj["Size"]) for page in pages for obj in page.get("Contents", []))


def deliver(store: CapacityStore, events: list[dict[str, Any]], mischief: Mischief, rng: random.Random) -> int:
    """Through SQS-like delivery: mischief, then batches of 1 to 10 messages, each batch applied (and some applied
    twice, as a batch is when its function fails after writing)."""
    delivery = Delivery(mischief, rng)
    sent = delivery.send(events) + delivery.flush()
    while sent:
        size = rng.randint(1, 10)
        batch, sent = sent[:size], sent[size:]
        parsed = [event for body in map(message_body, batch) for event in parse_message(body)]
        store.apply(parsed)
        if rng.random() < 0.2:
            store.apply(parsed)  # redelivered whole
    return delivery.lost


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, seed=st.integers(0, 2**32 - 1), shards=st.integers(1, 4))
def test_counters_equal_the_listing_whatever_the_delivery(
    world: dict[str, Any], operations: list[tuple[str, str, int]], seed: int, shards: int
) -> None:
    bucket = f"cap-{uuid.uuid4().hex[:10]}"
    world["s3"].create_bucket(Bucket=bucket)
    rng = random.Random(seed)
    store = CapacityStore(world["dynamodb"], world["table"], shards=shards, rng=rng)
    events = run_operations(world, bucket, operations)
    lost = deliver(store, events, Mischief(duplicate=0.3, reorder=0.4), rng)
    assert lost == 0
    assert store.counters(bucket) == listing(world["s3"], bucket)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, seed=st.integers(0, 2**32 - 1))
def test_lost_events_are_drift_that_one_reconciliation_removes(
    world: dict[str, Any], operations: list[tuple[str, str, int]], seed: int
) -> None:
    bucket = f"cap-{uuid.uuid4().hex[:10]}"
    world["s3"].create_bucket(Bucket=bucket)
    rng = random.Random(seed)
    store = CapacityStore(world["dynamodb"], world["table"], shards=2, rng=rng)
    deliver(store, run_operations(world, bucket, operations), Mischief(duplicate=0.2, reorder=0.3, drop=0.3), rng)
    snapshot_time = datetime(2026, 12, 5, 13, tzinfo=UTC)  # after every event above
    truth = listing(world["s3"], bucket)
    found = drift(store.counters_at(bucket, snapshot_time), truth)
    store.correct(bucket, snapshot_time.isoformat(), found)
    assert store.counters(bucket) == truth
    assert drift(store.counters_at(bucket, snapshot_time), truth) == {}
    assert store.correct(bucket, snapshot_time.isoformat(), found) == 0  # the same snapshot corrects once
    assert store.counters(bucket) == truth


def test_the_counter_function_reports_what_is_not_an_event_and_applies_the_rest(world: dict[str, Any]) -> None:
    bucket = f"cap-{uuid.uuid4().hex[:10]}"
    world["s3"].create_bucket(Bucket=bucket)
    store = CapacityStore(world["dynamodb"], world["table"], shards=2)
    events = run_operations(world, bucket, [("put", f"processed/{uuid.uuid4()}/256.jpg", 7)])
    records = [
        {"messageId": "good", "body": message_body(events[0])},
        {"messageId": "bad", "body": '{"detail-type": "Object Created", "detail": {"object": {}}}'},
    ]
    assert apply_batch(records, store) == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert apply_batch(records[:1], store) == {"batchItemFailures": []}  # redelivered: counted once
    assert store.counters(bucket)[BUCKET_TOTAL] == Totals(1, 7)


def test_the_publisher_publishes_what_a_complete_scan_would_without_listing(world: dict[str, Any]) -> None:
    bucket = f"cap-{uuid.uuid4().hex[:10]}"
    world["s3"].create_bucket(Bucket=bucket)
    store = CapacityStore(world["dynamodb"], world["table"], shards=3)
    operations = [
        ("put", f"user-uploads/{OWNERS[0]}/{uuid.uuid4()}.jpg", 100),
        ("put", f"processed/{uuid.uuid4()}/1.jpg", 5),
    ]
    deliver(store, run_operations(world, bucket, operations), Mischief(), random.Random(1))
    cloudwatch = boto3.client("cloudwatch")
    s3_calls: list[str] = []
    world["s3"].meta.events.register("before-call.s3", lambda model, **_: s3_calls.append(model.name))
    try:
        publish_counters([bucket], store, cloudwatch, now=datetime.now(UTC))
    finally:
        world["s3"].meta.events.unregister("before-call.s3")
    assert s3_calls == []
    published = {
        (metric["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"])))
        for metric in cloudwatch.list_metrics(
            Namespace="CustomS3", Dimensions=[{"Name": "BucketName", "Value": bucket}]
        )["Metrics"]
    }
    assert ("NumberOfObjects", (("BucketName", bucket),)) in published
    assert ("BucketSizeBytes", (("BucketName", bucket), ("Prefix", f"user-uploads/{OWNERS[0]}/"))) in published
    assert ("NumberOfObjects", (("BucketName", bucket), ("Prefix", "processed/"))) in published


def test_the_benchmark_applies_every_event_in_its_batches() -> None:
    from loadtest.capacity_bench import run

    result = run(events=30, batch_size=10, shards=2, owners=3)
    assert (result.events, result.transactions <= 3, result.retries) == (30, True, 0)
    assert result.events_per_second > 0


def test_the_benchmark_measures_how_far_behind_an_offered_rate_leaves_the_counter() -> None:
    from loadtest.capacity_bench import run

    paced = run(events=40, batch_size=10, shards=2, owners=3, offered=20.0)
    assert paced.offered_events_per_second == 20.0
    assert paced.offered_seconds == pytest.approx(39 / 20, abs=0.01)
    assert paced.seconds >= 39 / 20  # it cannot finish before the last event arrives
    assert paced.behind_seconds_at_end is not None
    assert paced.behind_seconds_at_end >= 9 / 20  # a batch's wait
    flooded = run(events=40, batch_size=10, shards=2, owners=3, offered=1e6)  # all there before the first batch
    assert flooded.behind_seconds_at_end is not None
    assert flooded.behind_seconds_at_last_arrival is not None
    assert flooded.behind_seconds_at_last_arrival < flooded.behind_seconds_at_end <= flooded.seconds
    assert run(events=20, batch_size=10, shards=2, owners=3).behind_seconds_at_end is None
