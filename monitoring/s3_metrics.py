"""The `CustomS3` vocabulary and the bucket-listing helper the capacity functions share.

AWS/S3 publishes BucketSizeBytes and NumberOfObjects once a day; capacity alarms and the capacity dashboard need
fresher numbers, so imgops publishes the same metric names under the `CustomS3` namespace, per bucket
(`BucketName`) and per owner prefix (`BucketName`, `Prefix`; the `MAX_PREFIXES_PER_BUCKET` largest, the rest as
`(other)`). One publisher per metric:

- `NumberOfObjects`/`BucketSizeBytes`: the capacity publisher (monitoring.capacity_publisher), every minute, from the
  capacity counters; `imgops monitoring publish` runs it once by hand.
- `ScanIncomplete`, `DriftObjects`/`DriftBytes`: the capacity reconciler (monitoring.reconcile), deployed as the
  bucket-metrics function `<prefix>-s3-metrics` on its schedule; `imgops monitoring reconcile` runs it once by hand.

Here: the names (metrics, dimensions, the function's deployment), `build_datums` (a bucket's totals and its
prefixes' as datums; a bucket whose `BucketScan` is incomplete gets only `ScanIncomplete` = 1, never a partial
total that would look like a sudden drop), `publish` (PutMetricData in batches), and `scan_bucket`, the listing the
reconciler takes as the truth while a bucket is small enough to list within one run (ListObjectsV2: current object
versions only; the pipeline's buckets are not versioned).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipeline.errors import ImgopsError
from pipeline.resources import Env

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef
    from mypy_boto3_s3 import S3Client

NAMESPACE = "CustomS3"
NUMBER_OF_OBJECTS = "NumberOfObjects"
BUCKET_SIZE_BYTES = "BucketSizeBytes"
SCAN_INCOMPLETE = "ScanIncomplete"
BUCKET_DIMENSION = "BucketName"
PREFIX_DIMENSION = "Prefix"

# Objects at the bucket root have no top-level prefix; a dimension value cannot be empty.
ROOT_PREFIX = "(root)"
# Keys are user-influenced: cap the per-prefix breakdown (2 custom metrics, $0.60/month, per prefix).
MAX_PREFIXES_PER_BUCKET = 25
OTHER_PREFIX = "(other)"
# PutMetricData accepts at most 1,000 datums per request.
MAX_DATUMS_PER_CALL = 1000
# Room left at the deadline for one more ListObjectsV2 page in flight plus the PutMetricData calls.
SAFETY_MARGIN_MS = 10_000

# How the reconciler (the bucket-metrics function) is deployed; the CDK construct and the local stack's schedule
# both read these.
FUNCTION_NAME_SUFFIX = "-s3-metrics"
MEMORY_MB = 256
# Lambda's ceiling; a bucket too big to list in this is read from its S3 Inventory report (monitoring.reconcile).
MAX_TIMEOUT_SECONDS = 900
# ListObjectsV2 returns 1,000 keys per call in roughly 0.1-0.2 s in-region; assume the slow end.
LIST_KEYS_PER_SECOND = 5_000
# Finish before the next run starts, so two scans never overlap and double the LIST bill.
SCHEDULE_GAP_SECONDS = 10


class MetricsConfigError(ImgopsError, ValueError):
    """A deployment mistake: a capacity function was not told which buckets it measures."""


class ScanFailed(ImgopsError, RuntimeError):
    """At least one bucket could not be read (listed, or its inventory report); raised after the other buckets'
    metrics are published."""


@dataclass(frozen=True)
class Totals:
    objects: int = 0
    size_bytes: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.objects + other.objects, self.size_bytes + other.size_bytes)

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.objects - other.objects, self.size_bytes - other.size_bytes)


@dataclass(frozen=True)
class BucketScan:
    """What one listing covered; `totals` and `prefixes` are only trustworthy when `complete`."""

    bucket: str
    complete: bool
    totals: Totals
    prefixes: Mapping[str, Totals] = field(default_factory=dict)
    pages: int = 0
    error: str | None = None

    def report(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "complete": self.complete,
            "objects_listed": self.totals.objects,
            "bytes_listed": self.totals.size_bytes,
            "pages": self.pages,
            "prefixes": len(self.prefixes),
            "error": self.error,
        }


def function_name(prefix: str) -> str:
    return f"{prefix}{FUNCTION_NAME_SUFFIX}"


def timeout_seconds(every_seconds: int) -> int:
    """The function's timeout when it runs every `every_seconds`."""
    return min(every_seconds - SCHEDULE_GAP_SECONDS, MAX_TIMEOUT_SECONDS)


def top_level_prefix(key: str) -> str:
    head, slash, _ = key.partition("/")
    return f"{head}/" if slash else ROOT_PREFIX


def scan_bucket(
    s3: S3Client, bucket: str, *, keep_going: Callable[[], bool], group: Callable[[str], str] = top_level_prefix
) -> BucketScan:
    """List the whole bucket, or stop as soon as `keep_going()` says the time is up; `prefixes` are the totals by
    `group(key)` (the top-level prefix, or the capacity counters' owner)."""
    objects = size_bytes = pages = 0
    # Plain counters: this loop runs once per object, millions of times in a big bucket.
    by_prefix: dict[str, list[int]] = {}
    token: str | None = None

    def result(*, complete: bool) -> BucketScan:
        prefixes = {prefix: Totals(count, size) for prefix, (count, size) in by_prefix.items()}
        return BucketScan(bucket, complete, Totals(objects, size_bytes), prefixes, pages)

    while True:
        if not keep_going():
            return result(complete=False)
        page = (
            s3.list_objects_v2(Bucket=bucket, ContinuationToken=token) if token else s3.list_objects_v2(Bucket=bucket)
        )
        pages += 1
        for obj in page.get("Contents", []):
            size = obj.get("Size", 0)
            objects += 1
            size_bytes += size
            counters = by_prefix.setdefault(group(obj["Key"]), [0, 0])
            counters[0] += 1
            counters[1] += size
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if token is None:
            return result(complete=True)


def capped_prefixes(prefixes: Mapping[str, Totals], limit: int = MAX_PREFIXES_PER_BUCKET) -> dict[str, Totals]:
    """The `limit - 1` largest prefixes by bytes, the rest folded into `(other)` so the sum still adds up."""
    if len(prefixes) <= limit:
        return dict(prefixes)
    ranked = sorted(prefixes.items(), key=lambda item: (-item[1].size_bytes, item[0]))
    kept = dict(ranked[: limit - 1])
    rest = [totals for _, totals in ranked[limit - 1 :]]
    kept[OTHER_PREFIX] = Totals(sum(t.objects for t in rest), sum(t.size_bytes for t in rest))
    return kept


def build_datums(scans: Sequence[BucketScan], *, timestamp: datetime) -> list[MetricDatumTypeDef]:
    """Sizes and counts for complete scans only; `ScanIncomplete` 0/1 for every bucket."""
    datums: list[MetricDatumTypeDef] = []
    for scan in scans:
        bucket_dim: DimensionTypeDef = {"Name": BUCKET_DIMENSION, "Value": scan.bucket}
        datums.append(
            {
                "MetricName": SCAN_INCOMPLETE,
                "Dimensions": [bucket_dim],
                "Timestamp": timestamp,
                "Value": 0.0 if scan.complete else 1.0,
                "Unit": "Count",
            }
        )
        if not scan.complete:
            continue
        breakdown: list[tuple[list[DimensionTypeDef], Totals]] = [([bucket_dim], scan.totals)]
        breakdown += [
            ([bucket_dim, {"Name": PREFIX_DIMENSION, "Value": prefix}], totals)
            for prefix, totals in sorted(capped_prefixes(scan.prefixes).items())
        ]
        for dimensions, totals in breakdown:
            datums.append(
                {
                    "MetricName": NUMBER_OF_OBJECTS,
                    "Dimensions": dimensions,
                    "Timestamp": timestamp,
                    "Value": float(totals.objects),
                    "Unit": "Count",
                }
            )
            datums.append(
                {
                    "MetricName": BUCKET_SIZE_BYTES,
                    "Dimensions": dimensions,
                    "Timestamp": timestamp,
                    "Value": float(totals.size_bytes),
                    "Unit": "Bytes",
                }
            )
    return datums


def batched(
    datums: Sequence[MetricDatumTypeDef], size: int = MAX_DATUMS_PER_CALL
) -> Iterator[list[MetricDatumTypeDef]]:
    for start in range(0, len(datums), size):
        yield list(datums[start : start + size])


def publish(cloudwatch: CloudWatchClient, datums: Sequence[MetricDatumTypeDef]) -> int:
    calls = 0
    for batch in batched(datums):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=batch)
        calls += 1
    return calls


def buckets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    names = [env.get(name, "").strip() for name in (Env.UPLOAD_BUCKET, Env.PROCESSED_BUCKET)]
    if not all(names):
        raise MetricsConfigError(f"{Env.UPLOAD_BUCKET} and {Env.PROCESSED_BUCKET} must both be set")
    return names
