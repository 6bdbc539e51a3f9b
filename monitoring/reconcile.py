"""The capacity reconciler: the counters (monitoring.capacity) against the truth, far less often than they publish.

The truth for a bucket is one of two snapshots:
- a listing (monitoring.s3_metrics.scan_bucket, by owner), while the counters say the bucket is small enough
  (`listable_objects`: LISTING_MAX_OBJECTS, or less if the run has less time); its snapshot time is when the
  listing started;
- beyond that, the bucket's newest S3 Inventory report (monitoring.inventory: Athena on AWS, DuckDB locally),
  whose snapshot time is the report's. No listing is tried then: it would not complete and would bill LIST
  requests for every key it did reach.

Drift is the counters as they stood at the snapshot's time (CapacityStore.counters_at) less the truth, per owner. It
is published every run: `DriftObjects`, `DriftBytes` and `DriftOwners` (how many owners drift) per bucket, and
`ScanIncomplete` as before. A snapshot is not
instantaneous (a listing takes time, events may wait in the queue), so a drift seen once may be an event in
flight. The counters are corrected only for an owner whose drift two reconciliations in a row saw identical,
and only while the events' lag is below the snapshot's age (events older than the snapshot are all applied) and
none wait in the dead-letter queue (a redrive would apply them after the correction: twice).
The correction is keyed by the snapshot, so running it again changes nothing (CapacityStore.correct).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from monitoring.capacity import (
    BUCKET_TOTAL,
    PARTITION_KEY,
    SORT_KEY,
    CapacityStore,
    drift,
    owner_prefix,
)
from monitoring.capacity_handlers import store_from_env
from monitoring.s3_metrics import (
    BUCKET_DIMENSION,
    LIST_KEYS_PER_SECOND,
    SAFETY_MARGIN_MS,
    SCAN_INCOMPLETE,
    ScanFailed,
    Totals,
    buckets_from_env,
    publish,
    scan_bucket,
)
from pipeline.resources import Env

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef
    from mypy_boto3_s3 import S3Client

logger = Logger(service="imgops-reconciler")

# A listing costs a LIST request per 1,000 keys, every run: past this many objects the reconciler reads the daily
# inventory report instead, so its listings cost at most 100 requests a run, however large the bucket grows.
LISTING_MAX_OBJECTS = 100_000
DRIFT_OBJECTS = "DriftObjects"
DRIFT_BYTES = "DriftBytes"
# How many owners' counters differ from the snapshot: never negative, and not netted out across owners (a lost
# create in one folder and a lost delete in another leave the bucket's total right): what the drift alarm watches.
DRIFT_OWNERS = "DriftOwners"
# Owners whose drift is remembered for confirmation (one item; the largest drifts by bytes).
MAX_REMEMBERED_OWNERS = 2000
_OBSERVED = "drift#"

_CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10)

# A bucket's newest inventory report: its time, and a function that totals it per owner (the query: Athena's scan is
# billed, so it runs only when the report has not been reconciled yet). None: no report yet.
InventorySource = Callable[[str], "tuple[datetime, Callable[[], dict[str, Totals]]] | None"]
# What the last reconciliation of a bucket saw: its snapshot's id, and the drift it left to confirm.
Observed = tuple[str | None, Mapping[str, Totals]]


@dataclass(frozen=True)
class Snapshot:
    bucket: str
    source: str  # "listing", "inventory", or why there is none
    taken: datetime | None = None
    # None: this report was reconciled already and agreed (its query is not run again).
    truth: Mapping[str, Totals] | None = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.taken is not None


@dataclass(frozen=True)
class Reconciliation:
    bucket: str
    source: str
    snapshot: str | None
    drift: Mapping[str, Totals]
    corrected: int

    def report(self) -> dict[str, Any]:
        total = self.drift.get(BUCKET_TOTAL, Totals())
        return {
            "bucket": self.bucket,
            "source": self.source,
            "snapshot": self.snapshot,
            "drift_objects": total.objects,
            "drift_bytes": total.size_bytes,
            "owners_drifting": len([owner for owner in self.drift if owner != BUCKET_TOTAL]),
            "corrected": self.corrected,
        }


def listable_objects(budget_ms: int) -> int:
    """How many keys one run lists: what it can in `budget_ms` (at the slow end of ListObjectsV2), at most
    LISTING_MAX_OBJECTS."""
    return min(LISTING_MAX_OBJECTS, max(0, budget_ms) * LIST_KEYS_PER_SECOND // 1000)


def take_snapshot(
    bucket: str,
    *,
    s3: S3Client,
    store: CapacityStore,
    counted_objects: int,
    remaining_ms: Callable[[], int],
    inventory: InventorySource | None,
    clock: Callable[[], datetime],
    observed: Observed = (None, {}),
    safety_margin_ms: int = SAFETY_MARGIN_MS,
) -> Snapshot:
    """A listing while the bucket is listable in the time left, else the newest inventory report (its query is not
    run again for the report the last run reconciled without drift: `observed`)."""
    budget = remaining_ms() - safety_margin_ms
    if counted_objects <= listable_objects(budget):
        started = clock()
        scan = scan_bucket(s3, bucket, keep_going=lambda: remaining_ms() > safety_margin_ms, group=owner_prefix)
        if scan.complete:
            return Snapshot(bucket, "listing", started, {BUCKET_TOTAL: scan.totals, **scan.prefixes})
    if inventory is None:
        return Snapshot(bucket, "too large to list, and no inventory configured")
    found = inventory(bucket)
    if found is None:
        return Snapshot(bucket, "too large to list, and no inventory report yet")
    taken, totals = found
    reconciled, pending = observed
    if reconciled == taken.isoformat() and not pending:
        return Snapshot(bucket, "inventory (already reconciled)", taken, None)
    return Snapshot(bucket, "inventory", taken, totals())


def reconcile_bucket(
    snapshot: Snapshot,
    store: CapacityStore,
    *,
    lag_seconds: Callable[[], float | None],
    now: datetime,
    previous: Mapping[str, Totals],
) -> Reconciliation:
    """Drift at the snapshot; corrections for the owners whose drift the previous run saw identical (`previous`)."""
    if snapshot.taken is None:
        return Reconciliation(snapshot.bucket, snapshot.source, None, {}, 0)
    if snapshot.truth is None:
        return Reconciliation(snapshot.bucket, snapshot.source, snapshot.taken.isoformat(), {}, 0)
    found = drift(store.counters_at(snapshot.bucket, snapshot.taken), snapshot.truth)
    confirmed = {owner: value for owner, value in found.items() if previous.get(owner) == value}
    corrected = 0
    if confirmed:
        lag = lag_seconds()
        age = (now - snapshot.taken).total_seconds()
        if lag is not None and lag < age:
            corrected = store.correct(snapshot.bucket, snapshot.taken.isoformat(), confirmed)
        else:
            logger.warning(
                "drift confirmed but not corrected: events older than the snapshot may still be on their way",
                extra={"bucket": snapshot.bucket, "lag_seconds": lag, "snapshot_age_seconds": age},
            )
    # What is left to confirm next time: the drift less what was just corrected.
    left = {owner: value for owner, value in found.items() if owner not in confirmed or not corrected}
    remember_drift(store, snapshot.bucket, snapshot.taken.isoformat(), left)
    return Reconciliation(snapshot.bucket, snapshot.source, snapshot.taken.isoformat(), found, corrected)


def observed_drift(store: CapacityStore, bucket: str) -> Observed:
    """The snapshot the last reconciliation saw, and the drift it left to confirm."""
    item = store.client.get_item(
        TableName=store.table,
        Key={PARTITION_KEY: {"S": f"{_OBSERVED}{bucket}"}, SORT_KEY: {"S": "-"}},
        ConsistentRead=True,
    ).get("Item")
    if not item:
        return None, {}
    pending = {owner: Totals(*pair) for owner, pair in json.loads(item["drift"]["S"]).items()}
    return item.get("snapshot", {}).get("S"), pending


def remember_drift(store: CapacityStore, bucket: str, snapshot: str, found: Mapping[str, Totals]) -> None:
    ranked = sorted(found.items(), key=lambda item: -abs(item[1].size_bytes))[:MAX_REMEMBERED_OWNERS]
    text = json.dumps({owner: [value.objects, value.size_bytes] for owner, value in ranked}, sort_keys=True)
    store.client.put_item(
        TableName=store.table,
        Item={
            PARTITION_KEY: {"S": f"{_OBSERVED}{bucket}"},
            SORT_KEY: {"S": "-"},
            "snapshot": {"S": snapshot},
            "drift": {"S": text},
        },
    )


def build_datums(results: Sequence[Reconciliation], *, timestamp: datetime) -> list[MetricDatumTypeDef]:
    """`ScanIncomplete` for every bucket; `DriftObjects`/`DriftBytes` for those with a snapshot."""
    datums: list[MetricDatumTypeDef] = []
    for result in results:
        dimensions: Any = [{"Name": BUCKET_DIMENSION, "Value": result.bucket}]
        incomplete = 0.0 if result.snapshot is not None else 1.0
        datums.append(
            {"MetricName": SCAN_INCOMPLETE, "Dimensions": dimensions, "Timestamp": timestamp, "Value": incomplete}
        )
        if result.snapshot is None:
            continue
        total = result.drift.get(BUCKET_TOTAL, Totals())
        owners = len([owner for owner in result.drift if owner != BUCKET_TOTAL])
        for name, value, unit in (
            (DRIFT_OBJECTS, total.objects, "Count"),
            (DRIFT_BYTES, total.size_bytes, "Bytes"),
            (DRIFT_OWNERS, owners, "Count"),
        ):
            datums.append(
                {
                    "MetricName": name,
                    "Dimensions": dimensions,
                    "Timestamp": timestamp,
                    "Value": float(value),
                    "Unit": unit,  # type: ignore[typeddict-item]
                }
            )
    return datums


def reconcile(
    buckets: Sequence[str],
    *,
    s3: S3Client,
    store: CapacityStore,
    cloudwatch: CloudWatchClient,
    remaining_ms: Callable[[], int],
    inventory: InventorySource | None = None,
    lag_seconds: Callable[[], float | None] = lambda: None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    safety_margin_ms: int = SAFETY_MARGIN_MS,
) -> dict[str, Any]:
    """Reconcile each bucket, publish, report; raises ScanFailed (after publishing) if a bucket could not be read."""
    results: list[Reconciliation] = []
    failed: list[str] = []
    for bucket in buckets:
        try:
            counted = store.counters(bucket)[BUCKET_TOTAL].objects
            observed = observed_drift(store, bucket)
            snapshot = take_snapshot(
                bucket,
                s3=s3,
                store=store,
                counted_objects=counted,
                remaining_ms=remaining_ms,
                inventory=inventory,
                clock=clock,
                observed=observed,
                safety_margin_ms=safety_margin_ms,
            )
            results.append(
                reconcile_bucket(snapshot, store, lag_seconds=lag_seconds, now=clock(), previous=observed[1])
            )
        except (ClientError, BotoCoreError) as exc:
            logger.exception("cannot reconcile bucket", extra={"bucket": bucket})
            failed.append(bucket)
            results.append(Reconciliation(bucket, f"error: {exc}", None, {}, 0))
    datums = build_datums(results, timestamp=clock())
    calls = publish(cloudwatch, datums)
    report = {"buckets": [result.report() for result in results], "datums": len(datums), "put_calls": calls}
    logger.info("capacity reconciled", extra=report)
    if failed:
        raise ScanFailed(f"could not reconcile {', '.join(failed)}")
    return report


def _sqs_maximum(cloudwatch: CloudWatchClient, queue_name: str, metric: str, window_minutes: int) -> float | None:
    end = datetime.now(UTC)
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName=metric,
        Dimensions=[{"Name": "QueueName", "Value": queue_name}],
        StartTime=end - timedelta(minutes=window_minutes),
        EndTime=end,
        Period=60,
        Statistics=["Maximum"],
    )
    points = [point["Maximum"] for point in answer.get("Datapoints", []) if "Maximum" in point]
    return max(points) if points else None


def queue_lag(
    cloudwatch: CloudWatchClient, queue_name: str, dead_letter_queue: str | None = None, *, window_minutes: int = 5
) -> float | None:
    """The capacity queue's oldest message age (AWS/SQS, the largest of the last minutes); None if unknown, or while
    events wait in the dead-letter queue: a redrive would apply them after the snapshot's correction, twice."""
    if dead_letter_queue is not None:
        parked = _sqs_maximum(cloudwatch, dead_letter_queue, "ApproximateNumberOfMessagesVisible", window_minutes)
        if parked is None or parked > 0:
            return None
    return _sqs_maximum(cloudwatch, queue_name, "ApproximateAgeOfOldestMessage", window_minutes)


@cache
def _s3() -> S3Client:
    path_style = Config(s3={"addressing_style": "path"}) if os.environ.get("AWS_ENDPOINT_URL") else Config()
    return boto3.client("s3", config=_CLIENT_CONFIG.merge(path_style))


@cache
def _cloudwatch() -> CloudWatchClient:
    return boto3.client("cloudwatch", config=_CLIENT_CONFIG)


def inventory_from_env() -> InventorySource | None:
    """The newest inventory report of a bucket, read only when a bucket is too large to list (DuckDB or Athena are
    loaded then, not on every run)."""
    destination = os.environ.get(Env.INVENTORY_BUCKET, "").strip()
    if not destination:
        return None
    engine = os.environ.get(Env.INVENTORY_ENGINE, "").strip() or "athena"

    def newest(bucket: str) -> tuple[datetime, Callable[[], dict[str, Totals]]] | None:
        from monitoring.inventory import inventory_source

        return inventory_source(_s3(), destination, engine=engine)(bucket)

    return newest


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    queue = os.environ.get(Env.CAPACITY_QUEUE, "").strip()
    dead_letters = os.environ.get(Env.CAPACITY_DEAD_LETTER_QUEUE, "").strip() or None
    cloudwatch = _cloudwatch()
    return reconcile(
        buckets_from_env(),
        s3=_s3(),
        store=store_from_env(),
        cloudwatch=cloudwatch,
        remaining_ms=context.get_remaining_time_in_millis,
        inventory=inventory_from_env(),
        lag_seconds=(lambda: queue_lag(cloudwatch, queue, dead_letters)) if queue else (lambda: None),
    )
