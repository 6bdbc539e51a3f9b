"""Churn on the local stack's buckets, then how long until `CustomS3` says what a listing says, per bucket and owner.

The churn is what the buckets see in use: objects created in uploaders' folders (one runaway uploader among them)
and under `processed/`, some overwritten, some deleted, some expired by a lifecycle rule (LocalStack.expire). The
events reach the counter as the stack delivers them (`--object-events`: duplicated, held back). When the churn is
over, the time is taken until the newest `CustomS3` datapoints of every bucket and every owner equal the listing's
totals (`converged_seconds`: the issue asks for 2 minutes), then the reconciler runs once and its drift is read.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from pipeline.resources import PROCESSED_PREFIX, UPLOAD_PREFIX, ResourceNames

# Of the objects created: this share in uploaders' folders, the rest thumbnails under processed/.
UPLOAD_SHARE = 0.7
OVERWRITE_SHARE = 0.1
DELETE_SHARE = 0.1
EXPIRE_SHARE = 0.05
RUNAWAY_SIZE = 500_000  # bytes per object of the runaway uploader (the others: 1 to 2,000), above a photo
PUT_THREADS = 8
# The churn waits while more events than this wait for the counter, until fewer than BACKLOG_LOW do.
BACKLOG_HIGH = 600
BACKLOG_LOW = 200
BACKLOG_CHECK_EVERY = 50  # writes


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
    rate: float | None  # writes a second asked for (None: as fast as the threads go)
    object_events: str
    created: int
    overwritten: int
    deleted: int
    expired: int
    churn_seconds: float
    converged_seconds: float  # from the last change until CustomS3 equalled the listings
    objects_at_end: dict[str, int]  # per bucket, listed
    drift: dict[str, list[int]]  # per bucket: objects, bytes (the reconciler after convergence)
    runaway_owner: str
    top_owner: str  # what `imgops capacity top` ranks first

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
    rate: float | None = None,
    backlog: Callable[[], int] | None = None,
) -> dict[str, int]:
    """Do the churn, at most `rate` writes a second if given, and waiting while `backlog()` (the events not yet
    counted) is above BACKLOG_HIGH until it is below BACKLOG_LOW; returns how many objects each operation touched."""
    pace = _Pace(rate, backlog)
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
    _put_all(s3, creates, pace)
    picked = rng.sample(creates, k=int(len(creates) * (OVERWRITE_SHARE + DELETE_SHARE + EXPIRE_SHARE)))
    overwrite_end = int(len(creates) * OVERWRITE_SHARE)
    delete_end = overwrite_end + int(len(creates) * DELETE_SHARE)
    overwrites = [(bucket, key, size + rng.randint(1, 500)) for bucket, key, size in picked[:overwrite_end]]
    _put_all(s3, overwrites, pace)
    deletes = picked[overwrite_end:delete_end]
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(lambda item: _delete(s3, item, pace), deletes))
    expired = 0
    by_bucket: dict[str, list[str]] = {}
    for bucket, key, _ in picked[delete_end:]:
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        for first in range(0, len(keys), BACKLOG_CHECK_EVERY):
            pace.hold()
            expired += expire(bucket, keys[first : first + BACKLOG_CHECK_EVERY])
    return {"created": len(creates), "overwritten": len(overwrites), "deleted": len(deletes), "expired": expired}


def _delete(s3: Any, item: tuple[str, str, int], pace: _Pace) -> None:
    pace.wait()
    s3.delete_object(Bucket=item[0], Key=item[1])


class _Pace:
    """Spaces writes `1 / rate` seconds apart across threads (None: as fast as they go), and holds them while the
    counter's backlog is high: the embedded SQS scans a whole queue per receive, so a backlog that grows slows the
    counter further (on AWS a backlog only waits)."""

    def __init__(self, rate: float | None, backlog: Callable[[], int] | None = None) -> None:
        self._gap = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()
        self._backlog = backlog
        self._writes = 0
        self.held_seconds = 0.0

    def hold(self) -> None:
        """Wait while the backlog is high (callers hold the lock or are alone)."""
        if self._backlog is not None and self._backlog() > BACKLOG_HIGH:
            started = time.monotonic()
            while self._backlog() > BACKLOG_LOW:
                time.sleep(0.5)
            self.held_seconds += time.monotonic() - started
            self._next = time.monotonic()

    def wait(self) -> None:
        with self._lock:
            self._writes += 1
            if self._writes % BACKLOG_CHECK_EVERY == 0:
                self.hold()
            if not self._gap:
                return
            slot = self._next = max(self._next + self._gap, time.monotonic())
        time.sleep(max(0.0, slot - time.monotonic()))


def _put_all(s3: Any, objects: Iterable[tuple[str, str, int]], pace: _Pace) -> None:
    def put(item: tuple[str, str, int]) -> None:
        pace.wait()
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
    expected: dict[str | None, Totals] = {None: truth.get(BUCKET_TOTAL, Totals())}
    expected.update(capped_prefixes(owners))
    return expected


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


def disagreements(cloudwatch: Any, expected: Mapping[str, Mapping[str | None, Totals]], since: datetime) -> list[str]:
    """What CustomS3 published after `since` gets wrong against `expected` (per bucket: the listing's totals)."""
    wrong = []
    for bucket, owners in expected.items():
        for owner, totals in owners.items():
            for metric, value in ((NUMBER_OF_OBJECTS, totals.objects), (BUCKET_SIZE_BYTES, totals.size_bytes)):
                published = newest_datum(cloudwatch, metric, bucket, owner, since)
                if published != float(value):
                    wrong.append(f"{bucket} {owner or 'total'} {metric}: {published} != {value}")
    return wrong


def wait_until_published(
    cloudwatch: Any, s3: Any, buckets: list[str], since: datetime, *, timeout: float, poll: float = 5.0
) -> float:
    """Seconds from `since` (the last change) until CustomS3 equals the listings; raises ChurnError with what differs
    at `timeout`. The buckets no longer change, so each is listed once: listing them every poll would load the
    embedded AWS that the counter and publisher share."""
    expected = {bucket: expected_datums(listing(s3, bucket)) for bucket in buckets}
    started = time.monotonic()
    wrong: list[str] = []
    while time.monotonic() - started < timeout:
        wrong = disagreements(cloudwatch, expected, since)
        if not wrong:
            return (datetime.now(UTC) - since).total_seconds()
        time.sleep(poll)
    shown = "; ".join(wrong[:5]) + (f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else "")
    raise ChurnError(f"CustomS3 still differs from the listings {timeout:.0f} s after the churn: {shown}")


def run(
    plan: ChurnPlan,
    *,
    rate: float | None,
    object_events: str = "duplicate=0.2,reorder=0.3",
    timeout: float = 600.0,
    on_progress: Callable[[str], None] = lambda _: None,
) -> ChurnResult:
    """A local stack of its own (workers paused: the worker's image work is not what this measures), the churn,
    then the time until CustomS3 equals the listings and the reconciler's drift."""
    from localaws.context import LocalLambdaContext
    from localaws.metrics import read_snapshot
    from localaws.object_events import Mischief
    from localaws.stack import LocalStack, LocalStackOptions, scheduled_event
    from monitoring import capacity_counter, capacity_publisher, reconcile, s3_metrics
    from monitoring.capacity_top import read_top
    from monitoring.target import STATE_DIR_ENV, for_local

    for logger in (capacity_counter.logger, capacity_publisher.logger, reconcile.logger):
        logger.setLevel("WARNING")  # their INFO lines are for CloudWatch Logs, not this command's output

    saved = os.environ.get(STATE_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="imgops-churn-") as state:
        os.environ[STATE_DIR_ENV] = state  # not the state of a stack the user may be running
        try:
            options = LocalStackOptions(
                workers=1,
                prefix="churn",
                object_events=Mischief.parse(object_events),
                bucket_metrics_every_seconds=86400,
                log_file=Path(state) / "stack.log",  # the functions' output, not this command's
            )
            with LocalStack(options) as stack:
                info = stack.start()
                stack.pause_workers()
                aws = for_local(info)
                s3, cloudwatch = aws.client("s3"), aws.client("cloudwatch")
                buckets = [info.upload_bucket, info.processed_bucket]
                on_progress(f"churning {plan.objects:,} objects")
                started = time.monotonic()
                sqs = aws.client("sqs")
                queue = sqs.get_queue_url(QueueName=ResourceNames(info.prefix).capacity_queue)["QueueUrl"]
                counts = churn(
                    s3,
                    upload_bucket=buckets[0],
                    processed_bucket=buckets[1],
                    plan=plan,
                    expire=stack.expire,
                    rate=rate,
                    backlog=lambda: read_snapshot(sqs, queue).total,
                )
                churn_seconds = time.monotonic() - started
                changed = datetime.now(UTC)
                on_progress("waiting for CustomS3 to equal the listings")
                converged = wait_until_published(cloudwatch, s3, buckets, changed, timeout=timeout)
                on_progress("reconciling")
                context = LocalLambdaContext.create(s3_metrics.function_name(info.prefix), timeout_seconds=290)
                report = reconcile.handler(scheduled_event(info.region, f"{info.prefix}-bucket-metrics"), context)
                drift = {b["bucket"]: (b["drift_objects"], b["drift_bytes"]) for b in report["buckets"]}
                top = read_top(aws, limit=1).owners[0].owner
                at_end = {bucket: listing(s3, bucket)[BUCKET_TOTAL].objects for bucket in buckets}
        finally:
            if saved is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = saved
    return ChurnResult(
        objects=plan.objects,
        owners=plan.owners,
        rate=rate,
        object_events=object_events,
        churn_seconds=round(churn_seconds, 1),
        converged_seconds=round(converged, 1),
        objects_at_end=at_end,
        drift={bucket: list(values) for bucket, values in drift.items()},
        runaway_owner=runaway_owner(plan),
        top_owner=top,
        **counts,
    )
