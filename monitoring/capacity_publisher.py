"""The capacity publisher function: every minute, the counters as `CustomS3` metrics.

`NumberOfObjects`/`BucketSizeBytes` per bucket and per owner (the owners with the most bytes, the rest as
`(other)`): the datums monitoring.s3_metrics.build_datums makes, so the dashboards and alarms read them as they
always did. It reads the capacity table only: its role has no s3:ListBucket, and its cost does not grow with the
buckets' size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from monitoring.capacity import BUCKET_TOTAL, CapacityStore
from monitoring.capacity_handlers import cloudwatch_client, store_from_env
from monitoring.s3_metrics import BucketScan, buckets_from_env, build_datums, publish

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_cloudwatch import CloudWatchClient

logger = Logger(service="imgops-capacity-publisher")


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


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return publish_counters(buckets_from_env(), store_from_env(), cloudwatch_client())
