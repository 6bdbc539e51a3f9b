"""Churn on the local stack's buckets, then how long until `CustomS3` says what a listing says, per bucket and owner.

The churn is what the buckets see in use: objects created in uploaders' folders (one runaway uploader among them)
and under `processed/`, some overwritten, some deleted, some expired by a lifecycle rule (LocalStack.expire). The
events reach the counter as the stack delivers them (`--object-events`: duplicated, held back). When the churn is
over, the time is taken until the newest `CustomS3` datapoints of every bucket and every owner equal the listing's
totals (`converged_seconds`: the issue asks for 2 minutes), then the reconciler runs once and its drift is read.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitoring.capacity import BUCKET_TOTAL, truth_from_listing
from monitoring.s3_metrics import (
    BUCKET_DIMENSION,
    BUCKET_SIZE_BYTES,
    NAMESPACE,
    NUMBER_OF_OBJECTS,
    PREFIX_DIMENSION,
    Totals,
    capped_prefixes,
)
from pipeline.errors import ImgopsError
from pipeline.resources import PROCESSED_PREFIX, UPLOAD_PREFIX

# Of the objects created: this share in uploaders' folders, the rest thumbnails under processed/.
UPLOAD_SHARE = 0.7
OVERWRITE_SHARE = 0.1
DELETE_SHARE = 0.1
EXPIRE_SHARE = 0.05
RUNAWAY_SIZE = 500_000  # bytes per object of the runaway uploader (the others: 1 to 2,000), above a photo
PUT_THREADS = 8


class ChurnError(ImgopsError, RuntimeError):
    pass


@dataclass(frozen=True)
class ChurnPlan:
    objects: int
    owners: int
    seed: int = 1

    def __post_init__(self) -> None:
        if self.objects < 10 or self.owners < 2:
            raise ChurnError("a churn needs at least 10 objects and 2 owners")


@dataclass(frozen=True)
class ChurnResult:
    objects: int
    owners: int
    created: int
    overwritten: int
    deleted: int
    expired: int
    churn_seconds: float
    converged_seconds: float
    objects_listed: dict[str, int]
    runaway_owner: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def runaway_owner(plan: ChurnPlan) -> str:
    return f"{UPLOAD_PREFIX}{uuid.UUID(int=plan.seed * 1000 + 1)}/"


def churn(
    s3: Any,
    *,
    upload_bucket: str,
    processed_bucket: str,
    plan: ChurnPlan,
    expire: Callable[[str, list[str]], int],
) -> dict[str, int]:
    """Do the churn; returns how many objects each operation touched."""
    rng = random.Random(plan.seed)
    owners = [f"{UPLOAD_PREFIX}{uuid.UUID(int=plan.seed * 1000 + 1 + n)}/" for n in range(plan.owners)]
    runaway = owners[0]
    creates: list[tuple[str, str, int]] = []
    for n in range(plan.objects):
        if rng.random() < UPLOAD_SHARE:
            owner = rng.choice(owners)
            size = RUNAWAY_SIZE if owner == runaway else rng.randint(1, 2_000)
            creates.append((upload_bucket, f"{owner}{uuid.UUID(int=n)}.jpg", size))
        else:
            creates.append(
                (
                    processed_bucket,
                    f"{PROCESSED_PREFIX}{uuid.UUID(int=n)}/{rng.choice((256, 1024))}.jpg",
                    rng.randint(1, 2_000),
                )
            )
    _put_all(s3, creates)
    picked = rng.sample(creates, k=int(len(creates) * (OVERWRITE_SHARE + DELETE_SHARE + EXPIRE_SHARE)))
    overwrite_end = int(len(creates) * OVERWRITE_SHARE)
    delete_end = overwrite_end + int(len(creates) * DELETE_SHARE)
    overwrites = [(bucket, key, size + rng.randint(1, 500)) for bucket, key, size in picked[:overwrite_end]]
    _put_all(s3, overwrites)
    deletes = picked[overwrite_end:delete_end]
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(lambda item: s3.delete_object(Bucket=item[0], Key=item[1]), deletes))
    expired = 0
    by_bucket: dict[str, list[str]] = {}
    for bucket, key, _ in picked[delete_end:]:
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        expired += expire(bucket, keys)
    return {"created": len(creates), "overwritten": len(overwrites), "deleted": len(deletes), "expired": expired}


def _put_all(s3: Any, objects: Iterable[tuple[str, str, int]]) -> None:
    def put(item: tuple[str, str, int]) -> None:
        bucket, key, size = item
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)

    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(put, objects))


def listing(s3: Any, bucket: str) -> dict[str, Totals]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return truth_from_listing((obj["Key"], obj["Size"]) for page in pages for obj in page.get("Contents", []))


def expected_datums(truth: Mapping[str, Totals]) -> dict[str | None, Totals]:
    """What the publisher should show for a bucket: its total (None) and each owner as the cap leaves them."""
    owners = {owner: totals for owner, totals in truth.items() if owner != BUCKET_TOTAL}
    return {None: truth.get(BUCKET_TOTAL, Totals()), **capped_prefixes(owners)}


def newest_datum(cloudwatch: Any, metric: str, bucket: str, owner: str | None, since: datetime) -> float | None:
    """The metric's value published after `since`, if every datapoint of its newest minute agrees (else None).

    GetMetricData: a metric is its exact set of dimensions (a bucket's total is not its owners')."""
    dimensions = [{"Name": BUCKET_DIMENSION, "Value": bucket}]
    if owner is not None:
        dimensions.append({"Name": PREFIX_DIMENSION, "Value": owner})
    queries = [
        {
            "Id": stat.lower(),
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
                "Period": 60,
                "Stat": stat,
            },
        }
        for stat in ("Minimum", "Maximum")
    ]
    results = cloudwatch.get_metric_data(
        MetricDataQueries=queries, StartTime=since, EndTime=datetime.now(UTC) + timedelta(minutes=1)
    )["MetricDataResults"]
    newest = {}
    for result in results:
        pairs = list(zip(result.get("Timestamps", []), result.get("Values", []), strict=True))
        if not pairs:
            return None
        newest[result["Id"]] = max(pairs)
    low, high = newest["minimum"], newest["maximum"]
    return float(high[1]) if low == high else None


def disagreements(cloudwatch: Any, s3: Any, buckets: Iterable[str], since: datetime) -> list[str]:
    """What CustomS3 published after `since` gets wrong against a listing now, per bucket and owner."""
    wrong = []
    for bucket in buckets:
        for owner, totals in expected_datums(listing(s3, bucket)).items():
            for metric, value in ((NUMBER_OF_OBJECTS, totals.objects), (BUCKET_SIZE_BYTES, totals.size_bytes)):
                published = newest_datum(cloudwatch, metric, bucket, owner, since)
                if published != float(value):
                    wrong.append(f"{bucket} {owner or 'total'} {metric}: {published} != {value}")
    return wrong


def wait_until_published(
    cloudwatch: Any, s3: Any, buckets: list[str], since: datetime, *, timeout: float, poll: float = 5.0
) -> float:
    """Seconds from `since` until CustomS3 equals the listings; raises ChurnError with what differs at `timeout`."""
    started = time.monotonic()
    wrong: list[str] = []
    while time.monotonic() - started < timeout:
        wrong = disagreements(cloudwatch, s3, buckets, since)
        if not wrong:
            return (datetime.now(UTC) - since).total_seconds()
        time.sleep(poll)
    shown = "; ".join(wrong[:5]) + (f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else "")
    raise ChurnError(f"CustomS3 still differs from the listings {timeout:.0f} s after the churn: {shown}")
