"""The capacity counters' two functions: one applies the buckets' object events, one publishes every minute.

- `counter_handler`: SQS batches of S3's EventBridge events (monitoring.capacity.parse_message). The batch's events
  are applied together (monitoring.capacity.CapacityStore.apply: idempotent, so a batch that fails after writing is
  simply applied again). A message that is not an object event is reported as a failed item and, after the queue's
  receive count, lands in its dead-letter queue with the reason in the log; the others are not held up by it.
- `publisher_handler`: every minute, the counters as `CustomS3` `NumberOfObjects`/`BucketSizeBytes` per bucket and
  per owner (the owners with the most bytes, the rest as `(other)`), the datums monitoring.s3_metrics publishes
  from a listing, so the dashboards and alarms read them the same way. It reads the capacity table only: its role
  has no s3:ListBucket, and its cost does not grow with the buckets' size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from monitoring.capacity import BUCKET_TOTAL, DEFAULT_SHARDS, CapacityError, CapacityStore, ObjectEvent, parse_message
from monitoring.s3_metrics import BucketScan, buckets_from_env, build_datums, publish
from pipeline.errors import ImgopsError
from pipeline.resources import Env

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient

logger = Logger(service="imgops-capacity")

# How the two functions are deployed (the CDK construct and the local stack read these).
COUNTER_MEMORY_MB = 256
COUNTER_TIMEOUT_SECONDS = 60
# Messages per invocation: the batch's events share transactions (MAX_EVENTS_PER_TRANSACTION) and their counter
# changes are summed first, so a larger batch writes fewer counter updates per event. The window is what makes
# batches over 10 possible; it also bounds the delay it adds.
COUNTER_BATCH_SIZE = 100
COUNTER_BATCHING_WINDOW_SECONDS = 1
# Enough for ~10,000 events/s on AWS (docs/capacity.md); the counters' shards take the writes, not one item.
COUNTER_MAX_CONCURRENCY = 50
# A message the counter cannot read is retried this often, then waits in the dead-letter queue.
COUNTER_MAX_RECEIVE_COUNT = 5
PUBLISHER_MEMORY_MB = 256
PUBLISHER_TIMEOUT_SECONDS = 50

_CLIENT_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=10)


class CapacityConfigError(ImgopsError, ValueError):
    """A deployment mistake: the function was not told where its counters are."""


def apply_batch(records: Sequence[Mapping[str, Any]], store: CapacityStore) -> dict[str, list[dict[str, str]]]:
    """Apply an SQS batch; the messages that are not object events come back as `batchItemFailures`."""
    events: list[ObjectEvent] = []
    failures: list[dict[str, str]] = []
    for record in records:
        try:
            events += parse_message(str(record.get("body", "")))
        except CapacityError as exc:
            logger.error("not an object event", extra={"message_id": record.get("messageId"), "reason": str(exc)})
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
    applied = store.apply(events)
    logger.info(
        "events applied",
        extra={
            "messages": len(records),
            "events": applied.events,
            "stale": applied.stale,
            "transactions": applied.transactions,
            "retries": applied.retries,
        },
    )
    return {"batchItemFailures": failures}


def publish_counters(
    buckets: Sequence[str], store: CapacityStore, cloudwatch: CloudWatchClient, *, now: datetime | None = None
) -> dict[str, Any]:
    """One publication: each bucket's totals and its owners', as a complete scan would have published them."""
    scans = []
    for bucket in buckets:
        counters = store.counters(bucket)
        owners = {owner: totals for owner, totals in counters.items() if owner != BUCKET_TOTAL}
        scans.append(BucketScan(bucket, complete=True, totals=counters[BUCKET_TOTAL], prefixes=owners))
    datums = build_datums(scans, timestamp=now or datetime.now(UTC))
    calls = publish(cloudwatch, datums)
    report = {"buckets": [scan.report() for scan in scans], "datums": len(datums), "put_calls": calls}
    logger.info("capacity metrics published", extra=report)
    return report


def store_from_env(environ: Mapping[str, str] | None = None) -> CapacityStore:
    env = os.environ if environ is None else environ
    table = env.get(Env.CAPACITY_TABLE, "").strip()
    if not table:
        raise CapacityConfigError(f"{Env.CAPACITY_TABLE} must be set")
    shards = env.get(Env.CAPACITY_SHARDS, "").strip() or str(DEFAULT_SHARDS)
    if not shards.isdigit() or int(shards) < 1:
        raise CapacityConfigError(f"{Env.CAPACITY_SHARDS} must be a positive integer, got {shards!r}")
    return CapacityStore(_dynamodb(), table, shards=int(shards))


@cache
def _dynamodb() -> Any:
    return boto3.client("dynamodb", config=_CLIENT_CONFIG)


@cache
def _cloudwatch() -> CloudWatchClient:
    return boto3.client("cloudwatch", config=_CLIENT_CONFIG)


@logger.inject_lambda_context
def counter_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    return apply_batch(event.get("Records", []), store_from_env())


@logger.inject_lambda_context
def publisher_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return publish_counters(buckets_from_env(), store_from_env(), _cloudwatch())
