"""The capacity reconciler against a real bucket (moto over HTTP): the counters as object events made them, the truth
as a listing or as an S3 Inventory report (written in S3's layout, read with DuckDB), drift published as CustomS3,
and corrections only for drift two runs saw alike, while events older than the snapshot are all applied."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from localaws.inventory import write_inventory_report
from localaws.object_events import Sequencers, message_body, object_created, object_deleted
from monitoring.capacity import BUCKET_TOTAL, CapacityStore, create_table, parse_message, truth_from_listing
from monitoring.inventory import inventory_source
from monitoring.reconcile import DRIFT_OBJECTS, queue_lag, reconcile
from monitoring.s3_metrics import SAFETY_MARGIN_MS, Totals
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, ResourceNames

OWNER = "user-uploads/00000000-0000-0000-0000-0000000000a1/"


@pytest.fixture
def world(moto_endpoint: str, unique_prefix: str) -> dict[str, Any]:
    """A deployment's names (tests/iam.py judges the reconciler's calls by the template's roles for them)."""
    names = ResourceNames(unique_prefix)
    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    create_table(dynamodb, names.capacity_table)
    s3.create_bucket(Bucket=names.upload_bucket)
    s3.create_bucket(Bucket=names.inventory_bucket)
    store = CapacityStore(dynamodb, names.capacity_table, shards=2)
    return {
        "bucket": names.upload_bucket,
        "inventory": names.inventory_bucket,
        "s3": s3,
        "store": store,
        "cloudwatch": boto3.client("cloudwatch"),
    }


def churn(world: dict[str, Any], *, lose: bool = False, when: datetime | None = None) -> None:
    """Puts, an overwrite and a delete, their events applied; with `lose`, one create (101 bytes) lost on the way."""
    bucket, s3, sequencers = world["bucket"], world["s3"], Sequencers()
    when = when or datetime.now(UTC) - timedelta(minutes=5)
    events = []
    for n in range(6):
        key = f"{OWNER}{uuid.UUID(int=n)}.jpg"
        etag = s3.put_object(Bucket=bucket, Key=key, Body=b"x" * (100 + n))["ETag"]
        events.append(object_created(bucket, key, 100 + n, etag, sequencers.next(), when))
    etag = s3.put_object(Bucket=bucket, Key=f"{OWNER}{uuid.UUID(int=0)}.jpg", Body=b"y" * 7)["ETag"]
    events.append(object_created(bucket, f"{OWNER}{uuid.UUID(int=0)}.jpg", 7, etag, sequencers.next(), when))
    s3.delete_object(Bucket=bucket, Key=f"{OWNER}{uuid.UUID(int=5)}.jpg")
    events.append(object_deleted(bucket, f"{OWNER}{uuid.UUID(int=5)}.jpg", sequencers.next(), when))
    kept = [event for n, event in enumerate(events) if not (lose and n == 1)]
    world["store"].apply([e for event in kept for e in parse_message(message_body(event))])


def listing(world: dict[str, Any]) -> dict[str, Totals]:
    pages = world["s3"].get_paginator("list_objects_v2").paginate(Bucket=world["bucket"])
    return truth_from_listing((o["Key"], o["Size"]) for page in pages for o in page.get("Contents", []))


def run(world: dict[str, Any], *, lag: float | None = 0.0, **options: Any) -> dict[str, Any]:
    remaining: Callable[[], int] = options.pop("remaining_ms", lambda: 60_000)
    report: dict[str, Any] = reconcile(
        [world["bucket"]],
        s3=world["s3"],
        store=world["store"],
        cloudwatch=world["cloudwatch"],
        remaining_ms=remaining,
        lag_seconds=lambda: lag,
        **options,
    )["buckets"][0]
    return report


def published_drift(world: dict[str, Any]) -> list[float]:
    answer = world["cloudwatch"].get_metric_statistics(
        Namespace="CustomS3",
        MetricName=DRIFT_OBJECTS,
        Dimensions=[{"Name": "BucketName", "Value": world["bucket"]}],
        StartTime=datetime.now(UTC) - timedelta(minutes=10),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum", "Minimum"],
    )
    return sorted(v for p in answer["Datapoints"] for v in (p["Maximum"], p["Minimum"]))


def test_counters_that_agree_with_the_listing_have_no_drift(world: dict[str, Any]) -> None:
    churn(world)
    report = run(world)
    assert (report["source"], report["drift_objects"], report["drift_bytes"], report["corrected"]) == (
        "listing",
        0,
        0,
        0,
    )
    assert published_drift(world) == [0.0, 0.0]


def test_a_lost_event_is_drift_corrected_once_a_second_run_confirms_it(world: dict[str, Any]) -> None:
    churn(world, lose=True)  # one create never arrived: the counters are an object and 101 bytes short
    first = run(world)
    assert (first["drift_objects"], first["drift_bytes"], first["corrected"]) == (-1, -101, 0)
    assert world["store"].counters(world["bucket"]) != listing(world)
    second = run(world)
    assert (second["drift_objects"], second["corrected"]) == (-1, 2)  # the bucket's total and the owner's
    assert world["store"].counters(world["bucket"]) == listing(world)
    third = run(world)
    assert (third["drift_objects"], third["drift_bytes"], third["corrected"]) == (0, 0, 0)
    assert min(published_drift(world)) == -1.0


def test_confirmed_drift_waits_while_the_events_lag_is_unknown_or_behind_the_snapshot(world: dict[str, Any]) -> None:
    churn(world, lose=True)
    run(world, lag=None)
    assert run(world, lag=None)["corrected"] == 0  # confirmed, but events may be on their way
    assert run(world, lag=3600.0)["corrected"] == 0  # an hour behind: the listing is newer than what was applied
    assert run(world, lag=0.0)["corrected"] == 2
    assert world["store"].counters(world["bucket"]) == listing(world)


def test_a_bucket_too_large_to_list_is_reconciled_from_its_inventory_report_and_never_listed(
    world: dict[str, Any],
) -> None:
    churn(world, lose=True)
    bucket, s3 = world["bucket"], world["s3"]
    write_inventory_report(
        s3, bucket, world["inventory"], prefix=INVENTORY_PREFIX, config_id=INVENTORY_ID, now=datetime.now(UTC)
    )
    listed: list[str] = []
    s3.meta.events.register(
        "before-call.s3.ListObjectsV2",
        lambda params, **_: listed.append(params.get("Bucket", "")),
    )
    inventory = inventory_source(s3, world["inventory"], engine="duckdb")
    no_time_to_list = lambda: SAFETY_MARGIN_MS  # noqa: E731 - a run with no time to list: nothing is listable
    first = run(world, remaining_ms=no_time_to_list, inventory=inventory)
    assert (first["source"], first["drift_objects"], first["drift_bytes"]) == ("inventory", -1, -101)
    second = run(world, remaining_ms=no_time_to_list, inventory=inventory)
    assert (second["source"], second["corrected"]) == ("inventory", 2)
    third = run(world, remaining_ms=no_time_to_list, inventory=inventory)
    assert (third["source"], third["drift_objects"]) == ("inventory (already reconciled)", 0)  # not queried again
    assert world["store"].counters(bucket) == listing(world)
    assert bucket not in listed  # the report's folder in the inventory bucket is listed, the bucket never


def test_a_report_begun_seconds_after_the_events_of_its_minute_holds_them_all(world: dict[str, Any]) -> None:
    """The report is as of when its listing began, not the start of its minute (whose folder names it): events in
    that minute's first seconds are in its rows and in the counters at its time."""
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    churn(world, when=minute + timedelta(seconds=20))
    bucket, s3 = world["bucket"], world["s3"]
    write_inventory_report(
        s3,
        bucket,
        world["inventory"],
        prefix=INVENTORY_PREFIX,
        config_id=INVENTORY_ID,
        now=minute + timedelta(seconds=40),
    )
    inventory = inventory_source(s3, world["inventory"], engine="duckdb")
    report = run(world, remaining_ms=lambda: SAFETY_MARGIN_MS, inventory=inventory)
    assert (report["source"], report["drift_objects"], report["drift_bytes"]) == ("inventory", 0, 0)
    assert report["snapshot"] == (minute + timedelta(seconds=40)).isoformat()


def test_without_a_report_a_bucket_too_large_to_list_is_not_checked(world: dict[str, Any]) -> None:
    churn(world)
    inventory = inventory_source(world["s3"], world["inventory"], engine="duckdb")
    report = run(world, remaining_ms=lambda: SAFETY_MARGIN_MS, inventory=inventory)
    assert report["snapshot"] is None
    assert report["source"] == "too large to list, and no inventory report yet"
    assert world["store"].counters(world["bucket"])[BUCKET_TOTAL] == Totals(5, 100 + 101 + 102 + 103 + 104 - 100 + 7)


def test_events_parked_in_the_dead_letter_queue_hold_corrections_back(world: dict[str, Any]) -> None:
    """A redrive applies parked events after the snapshot's correction: corrected first, they would count twice."""
    cloudwatch, queue, parked = world["cloudwatch"], f"{world['bucket']}-q", f"{world['bucket']}-dlq"

    def sample(metric: str, name: str, value: float) -> None:
        cloudwatch.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                    "Timestamp": datetime.now(UTC) - timedelta(seconds=30),
                    "Value": value,
                }
            ],
        )

    assert queue_lag(cloudwatch, queue, parked) is None  # nothing known of either queue: unknown
    sample("ApproximateAgeOfOldestMessage", queue, 4.0)
    assert queue_lag(cloudwatch, queue) == 4.0
    assert queue_lag(cloudwatch, queue, parked) is None  # the dead-letter queue unknown: no correction
    sample("ApproximateNumberOfMessagesVisible", parked, 0.0)
    assert queue_lag(cloudwatch, queue, parked) == 4.0
    sample("ApproximateNumberOfMessagesVisible", parked, 3.0)
    assert queue_lag(cloudwatch, queue, parked) is None
