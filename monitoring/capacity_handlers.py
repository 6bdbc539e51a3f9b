"""What the capacity counters' two functions share: how they are deployed and how they reach their table.

The functions: monitoring.capacity_counter applies the buckets' object events, monitoring.capacity_publisher
publishes the counters every minute (and monitoring.reconcile checks them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from monitoring.capacity import DEFAULT_SHARDS, CapacityStore
from pipeline.errors import ImgopsError
from pipeline.resources import Env

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

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
def cloudwatch_client() -> CloudWatchClient:
    return boto3.client("cloudwatch", config=_CLIENT_CONFIG)
