"""The CustomS3 metrics against the moto server, each from its one publisher, through the functions' entry points.

The capacity publisher publishes NumberOfObjects/BucketSizeBytes per bucket and per owner, from the counters the
counter function keeps from the buckets' object events; the reconciler (the bucket-metrics function) publishes
ScanIncomplete and the drift, never a count or a size of its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

from localaws.context import LocalLambdaContext
from localaws.object_events import Sequencers, message_body, object_created
from localaws.runtime import sqs_event
from monitoring import capacity_counter, capacity_publisher, reconcile
from monitoring.s3_metrics import ScanFailed
from monitoring.target import StackInfo
from pipeline.resources import Env, ResourceNames

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDataQueryTypeDef

SUB_1 = "5f0c6a9e-1111-4c3b-9d1e-000000000001"
SUB_2 = "5f0c6a9e-1111-4c3b-9d1e-000000000002"


def read_metric(name: str, bucket: str, prefix: str | None = None) -> list[float]:
    """Values of one CustomS3 metric around now, via GetMetricData (MetricStat: moto has no metric math)."""
    dimensions: list[DimensionTypeDef] = [{"Name": "BucketName", "Value": bucket}]
    if prefix is not None:
        dimensions.append({"Name": "Prefix", "Value": prefix})
    query: MetricDataQueryTypeDef = {
        "Id": "m",
        "MetricStat": {
            "Metric": {"Namespace": "CustomS3", "MetricName": name, "Dimensions": dimensions},
            "Period": 60,
            "Stat": "Maximum",
        },
    }
    now = datetime.now(UTC)
    answer = boto3.client("cloudwatch").get_metric_data(
        MetricDataQueries=[query],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=10),
    )
    return [float(value) for value in answer["MetricDataResults"][0]["Values"]]


def context(name: str, *, timeout_seconds: float) -> LambdaContext:
    return cast("LambdaContext", LocalLambdaContext.create(name, timeout_seconds=timeout_seconds))


def put_objects(s3: Any, stack: StackInfo, bucket: str, sizes: dict[str, int]) -> None:
    """The objects, and their object events through the counter function (as the capacity queue delivers them)."""
    sequencers, now = Sequencers(), datetime.now(UTC)
    messages = []
    for key, size in sizes.items():
        etag = s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)["ETag"]
        body = message_body(object_created(bucket, key, size, etag, sequencers.next(), now))
        messages.append({"MessageId": str(uuid.uuid4()), "ReceiptHandle": str(uuid.uuid4()), "Body": body})
    queue_arn = f"arn:aws:sqs:{stack.region}:123456789012:{ResourceNames(stack.prefix).capacity_queue}"
    event = sqs_event(messages, queue_arn=queue_arn, region=stack.region)
    counter = ResourceNames(stack.prefix).capacity_counter_function
    assert capacity_counter.handler(event, context(counter, timeout_seconds=60)) == {"batchItemFailures": []}


@pytest.mark.usefixtures("capacity_env")
def test_the_publisher_publishes_totals_and_the_owner_breakdown_from_the_counters(stack: StackInfo, s3: Any) -> None:
    uploads = {f"user-uploads/{SUB_1}/a.jpg": 1000, f"user-uploads/{SUB_2}/b.jpg": 2500, "stray.txt": 10}
    put_objects(s3, stack, stack.upload_bucket, uploads)
    put_objects(s3, stack, stack.processed_bucket, {f"processed/i/{size}.jpg": size for size in (256, 512, 1024)})
    publisher = ResourceNames(stack.prefix).capacity_publisher_function

    report = capacity_publisher.handler({}, context(publisher, timeout_seconds=50))

    assert [(b["bucket"], b["objects_listed"], b["prefixes"]) for b in report["buckets"]] == [
        (stack.upload_bucket, 3, 3),
        (stack.processed_bucket, 3, 1),
    ]
    assert read_metric("NumberOfObjects", stack.upload_bucket) == [3.0]
    assert read_metric("BucketSizeBytes", stack.upload_bucket) == [3510.0]
    assert read_metric("NumberOfObjects", stack.upload_bucket, f"user-uploads/{SUB_1}/") == [1.0]
    assert read_metric("BucketSizeBytes", stack.upload_bucket, f"user-uploads/{SUB_2}/") == [2500.0]
    assert read_metric("BucketSizeBytes", stack.upload_bucket, "(root)") == [10.0]
    assert read_metric("BucketSizeBytes", stack.processed_bucket, "processed/") == [1792.0]
    assert read_metric("ScanIncomplete", stack.processed_bucket) == [0.0]


@pytest.mark.usefixtures("capacity_env")
def test_the_reconciler_publishes_drift_and_never_a_count_or_size(stack: StackInfo, s3: Any) -> None:
    put_objects(s3, stack, stack.upload_bucket, {f"user-uploads/{SUB_1}/a.jpg": 1000})
    s3.put_object(Bucket=stack.upload_bucket, Key=f"user-uploads/{SUB_1}/lost.jpg", Body=b"x" * 7)  # no event

    report = reconcile.handler({}, context("s3-metrics", timeout_seconds=60))

    assert [(b["source"], b["drift_objects"], b["drift_bytes"]) for b in report["buckets"]] == [
        ("listing", -1, -7),
        ("listing", 0, 0),
    ]
    assert read_metric("ScanIncomplete", stack.upload_bucket) == [0.0]
    assert read_metric("DriftObjects", stack.upload_bucket) == [-1.0]
    assert read_metric("DriftBytes", stack.processed_bucket) == [0.0]
    # The counts and sizes are the publisher's alone (it has not run here).
    assert read_metric("NumberOfObjects", stack.upload_bucket) == []
    assert read_metric("BucketSizeBytes", stack.upload_bucket, f"user-uploads/{SUB_1}/") == []


@pytest.mark.usefixtures("capacity_env")
def test_no_time_to_list_and_no_report_publishes_scan_incomplete_only(stack: StackInfo, s3: Any) -> None:
    put_objects(s3, stack, stack.upload_bucket, {f"user-uploads/{SUB_1}/a.jpg": 1000})

    # Less time than the safety margin: nothing is listable, and no inventory report has been delivered yet.
    report = reconcile.handler({}, context("s3-metrics", timeout_seconds=5))

    assert [(b["snapshot"], b["source"]) for b in report["buckets"]] == [
        (None, "too large to list, and no inventory report yet"),
        (None, "too large to list, and no inventory report yet"),
    ]
    assert read_metric("ScanIncomplete", stack.upload_bucket) == [1.0]
    assert read_metric("DriftObjects", stack.upload_bucket) == []
    assert read_metric("DriftBytes", stack.processed_bucket) == []


@pytest.mark.usefixtures("capacity_env")
def test_a_bucket_that_cannot_be_read_fails_the_run_after_the_others_are_published(
    stack: StackInfo, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = ResourceNames(f"{unique_prefix}x").upload_bucket  # another deployment's name: never created
    monkeypatch.setenv(Env.UPLOAD_BUCKET, missing)

    with pytest.raises(ScanFailed, match=f"could not reconcile {missing}$"):
        reconcile.handler({}, context("s3-metrics", timeout_seconds=60))

    assert read_metric("ScanIncomplete", missing) == [1.0]
    assert read_metric("ScanIncomplete", stack.processed_bucket) == [0.0]
    assert read_metric("DriftObjects", stack.processed_bucket) == [0.0]
