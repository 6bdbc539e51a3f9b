"""The shared CustomS3 vocabulary without AWS: the listing and its deadline, the datums, their publication."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError

from monitoring import s3_metrics
from monitoring.s3_metrics import (
    BucketScan,
    MetricsConfigError,
    Totals,
    batched,
    buckets_from_env,
    build_datums,
    capped_prefixes,
    publish,
    scan_bucket,
    top_level_prefix,
)
from pipeline.resources import Env

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef
    from mypy_boto3_s3 import S3Client

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class FakeS3:
    """ListObjectsV2 over an in-memory bucket, `page_size` keys per page."""

    def __init__(self, buckets: dict[str, dict[str, int]], *, page_size: int = 2) -> None:
        self.buckets = buckets
        self.page_size = page_size
        self.calls: list[dict[str, Any]] = []

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        bucket = kwargs["Bucket"]
        if bucket not in self.buckets:
            raise ClientError({"Error": {"Code": "NoSuchBucket", "Message": "gone"}}, "ListObjectsV2")
        keys = sorted(self.buckets[bucket])
        start = int(kwargs.get("ContinuationToken", "0"))
        page = keys[start : start + self.page_size]
        truncated = start + self.page_size < len(keys)
        answer: dict[str, Any] = {
            "Contents": [{"Key": key, "Size": self.buckets[bucket][key]} for key in page],
            "IsTruncated": truncated,
        }
        if truncated:
            answer["NextContinuationToken"] = str(start + self.page_size)
        return answer


class FakeCloudWatch:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def as_s3(fake: FakeS3) -> S3Client:
    return cast("S3Client", fake)


def as_cloudwatch(fake: FakeCloudWatch) -> CloudWatchClient:
    return cast("CloudWatchClient", fake)


def by_dimensions(datums: list[MetricDatumTypeDef]) -> dict[tuple[str, tuple[str, ...]], tuple[float, str]]:
    return {
        (d["MetricName"], tuple(f"{dim['Name']}={dim['Value']}" for dim in d.get("Dimensions", []))): (
            d.get("Value", -1.0),
            d.get("Unit", ""),
        )
        for d in datums
    }


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("user-uploads/sub/a.jpg", "user-uploads/"),
        ("processed/id/256.jpg", "processed/"),
        ("loose.txt", "(root)"),
        ("/leading-slash", "/"),
    ],
)
def test_top_level_prefix(key: str, prefix: str) -> None:
    assert top_level_prefix(key) == prefix


def test_complete_scan_publishes_bucket_and_prefix_totals() -> None:
    scan = BucketScan(
        "up",
        complete=True,
        totals=Totals(3, 600),
        prefixes={"user-uploads/": Totals(2, 500), "(root)": Totals(1, 100)},
        pages=1,
    )

    datums = build_datums([scan], timestamp=NOW)

    assert by_dimensions(datums) == {
        ("ScanIncomplete", ("BucketName=up",)): (0.0, "Count"),
        ("NumberOfObjects", ("BucketName=up",)): (3.0, "Count"),
        ("BucketSizeBytes", ("BucketName=up",)): (600.0, "Bytes"),
        ("NumberOfObjects", ("BucketName=up", "Prefix=user-uploads/")): (2.0, "Count"),
        ("BucketSizeBytes", ("BucketName=up", "Prefix=user-uploads/")): (500.0, "Bytes"),
        ("NumberOfObjects", ("BucketName=up", "Prefix=(root)")): (1.0, "Count"),
        ("BucketSizeBytes", ("BucketName=up", "Prefix=(root)")): (100.0, "Bytes"),
    }
    assert {d["Timestamp"] for d in datums} == {NOW}


def test_incomplete_scan_publishes_only_scan_incomplete() -> None:
    scan = BucketScan("up", complete=False, totals=Totals(5000, 10**9), prefixes={"a/": Totals(5000, 10**9)})

    assert by_dimensions(build_datums([scan], timestamp=NOW)) == {
        ("ScanIncomplete", ("BucketName=up",)): (1.0, "Count")
    }


def test_empty_bucket_publishes_zeros() -> None:
    datums = build_datums([BucketScan("empty", complete=True, totals=Totals())], timestamp=NOW)

    assert by_dimensions(datums) == {
        ("ScanIncomplete", ("BucketName=empty",)): (0.0, "Count"),
        ("NumberOfObjects", ("BucketName=empty",)): (0.0, "Count"),
        ("BucketSizeBytes", ("BucketName=empty",)): (0.0, "Bytes"),
    }


def test_prefix_breakdown_is_capped_and_still_adds_up() -> None:
    prefixes = {f"p{i:02d}/": Totals(1, i) for i in range(1, 31)}

    capped = capped_prefixes(prefixes, limit=5)

    assert list(capped) == ["p30/", "p29/", "p28/", "p27/", "(other)"]
    assert capped["(other)"] == Totals(26, sum(range(1, 27)))
    assert sum(t.objects for t in capped.values()) == 30
    assert sum(t.size_bytes for t in capped.values()) == sum(range(1, 31))
    assert capped_prefixes({"a/": Totals(1, 1)}, limit=5) == {"a/": Totals(1, 1)}


def test_batches_respect_the_put_metric_data_limit() -> None:
    datums = cast("list[MetricDatumTypeDef]", [{"MetricName": str(i)} for i in range(2500)])

    assert [len(batch) for batch in batched(datums)] == [1000, 1000, 500]
    assert list(batched([])) == []


def test_scan_follows_continuation_tokens() -> None:
    s3 = FakeS3({"b": {"user-uploads/u/1.jpg": 10, "user-uploads/u/2.jpg": 20, "processed/x": 5}}, page_size=2)

    scan = scan_bucket(as_s3(s3), "b", keep_going=lambda: True)

    assert scan.complete
    assert scan.pages == 2
    assert scan.totals == Totals(3, 35)
    assert scan.prefixes == {"user-uploads/": Totals(2, 30), "processed/": Totals(1, 5)}
    assert s3.calls == [{"Bucket": "b"}, {"Bucket": "b", "ContinuationToken": "2"}]


def test_scan_stops_when_time_is_up_and_says_what_it_covered() -> None:
    s3 = FakeS3({"b": {f"k/{i}": 1 for i in range(10)}}, page_size=2)
    budget = iter([True, True, False])

    scan = scan_bucket(as_s3(s3), "b", keep_going=lambda: next(budget))

    assert not scan.complete
    assert (scan.pages, scan.totals.objects) == (2, 4)
    assert scan.report()["objects_listed"] == 4


def test_nothing_is_listed_once_the_time_is_up() -> None:
    s3 = FakeS3({"b": {"a/1": 1}})

    scan = scan_bucket(as_s3(s3), "b", keep_going=lambda: False)

    assert not scan.complete
    assert s3.calls == []


def test_scan_groups_by_the_owner_it_is_given() -> None:
    """The reconciler groups by the capacity counters' owner, not the top-level prefix."""
    s3 = FakeS3({"b": {"user-uploads/u1/a.jpg": 3, "user-uploads/u2/b.jpg": 4, "x": 1}}, page_size=10)

    scan = scan_bucket(as_s3(s3), "b", keep_going=lambda: True, group=lambda key: key.rsplit("/", 1)[0])

    assert scan.prefixes == {"user-uploads/u1": Totals(1, 3), "user-uploads/u2": Totals(1, 4), "x": Totals(1, 1)}


def test_publish_sends_customs3_in_batches_of_at_most_1000() -> None:
    scans = [
        BucketScan("up", complete=True, totals=Totals(1, 7), prefixes={f"p{i:04d}/": Totals(1, i) for i in range(30)}),
        BucketScan("out", complete=False, totals=Totals()),
    ]
    datums = build_datums(scans, timestamp=NOW) * 40
    cloudwatch = FakeCloudWatch()

    calls = publish(as_cloudwatch(cloudwatch), datums)

    assert calls == len(cloudwatch.calls) == 3
    assert {call["Namespace"] for call in cloudwatch.calls} == {"CustomS3"}
    assert [len(call["MetricData"]) for call in cloudwatch.calls] == [1000, 1000, len(datums) - 2000]
    assert [d for call in cloudwatch.calls for d in call["MetricData"]] == datums
    assert publish(as_cloudwatch(cloudwatch), []) == 0


def test_buckets_come_from_the_handlers_environment() -> None:
    env = {Env.UPLOAD_BUCKET: "up", Env.PROCESSED_BUCKET: " out "}
    assert buckets_from_env(env) == ["up", "out"]
    with pytest.raises(MetricsConfigError, match=Env.PROCESSED_BUCKET):
        buckets_from_env({Env.UPLOAD_BUCKET: "up"})


def test_metric_names_match_aws_s3() -> None:
    """Same names as AWS/S3 so a dashboard can swap namespaces."""
    assert (s3_metrics.NUMBER_OF_OBJECTS, s3_metrics.BUCKET_SIZE_BYTES) == (
        "NumberOfObjects",
        "BucketSizeBytes",
    )
    assert s3_metrics.BUCKET_DIMENSION == "BucketName"
