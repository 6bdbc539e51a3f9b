"""The bucket-metrics Lambda against the moto server: objects in, CustomS3 metrics read back out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

from localaws.context import LocalLambdaContext
from monitoring import s3_metrics
from monitoring.target import StackInfo

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDataQueryTypeDef


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


def context(*, timeout_seconds: float) -> LambdaContext:
    return cast("LambdaContext", LocalLambdaContext.create("s3-metrics", timeout_seconds=timeout_seconds))


def put_objects(s3: Any, bucket: str, sizes: dict[str, int]) -> None:
    for key, size in sizes.items():
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)


@pytest.mark.usefixtures("metrics_env")
def test_handler_publishes_totals_and_prefix_breakdown(stack: StackInfo, s3: Any) -> None:
    put_objects(
        s3,
        stack.upload_bucket,
        {"user-uploads/u1/a.jpg": 1000, "user-uploads/u2/b.jpg": 2500, "stray.txt": 10},
    )
    put_objects(s3, stack.processed_bucket, {f"processed/i/{size}.jpg": size for size in (256, 512, 1024)})

    report = s3_metrics.handler({}, context(timeout_seconds=60))

    assert [(b["bucket"], b["complete"], b["objects_listed"]) for b in report["buckets"]] == [
        (stack.upload_bucket, True, 3),
        (stack.processed_bucket, True, 3),
    ]
    assert read_metric("NumberOfObjects", stack.upload_bucket) == [3.0]
    assert read_metric("BucketSizeBytes", stack.upload_bucket) == [3510.0]
    assert read_metric("NumberOfObjects", stack.upload_bucket, "user-uploads/") == [2.0]
    assert read_metric("BucketSizeBytes", stack.upload_bucket, "user-uploads/") == [3500.0]
    assert read_metric("BucketSizeBytes", stack.upload_bucket, "(root)") == [10.0]
    assert read_metric("BucketSizeBytes", stack.processed_bucket, "processed/") == [1792.0]
    assert read_metric("ScanIncomplete", stack.processed_bucket) == [0.0]


@pytest.mark.usefixtures("metrics_env")
def test_no_time_left_publishes_no_partial_totals(stack: StackInfo, s3: Any) -> None:
    put_objects(s3, stack.upload_bucket, {"user-uploads/u1/a.jpg": 1000})

    # Less time than the safety margin: nothing may be listed, so nothing but ScanIncomplete is published.
    report = s3_metrics.handler({}, context(timeout_seconds=5))

    assert [b["complete"] for b in report["buckets"]] == [False, False]
    assert read_metric("ScanIncomplete", stack.upload_bucket) == [1.0]
    assert read_metric("NumberOfObjects", stack.upload_bucket) == []
    assert read_metric("BucketSizeBytes", stack.processed_bucket) == []
