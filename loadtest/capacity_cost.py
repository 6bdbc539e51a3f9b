"""What the capacity metrics cost per month: counted from S3's events (monitoring.capacity) against listing the
buckets every 5 minutes (monitoring.s3_metrics), by bucket size and write rate, from the price table.

The events design costs in proportion to what changes (events) plus a daily reconciliation from S3 Inventory; the
listing design in proportion to everything stored, and it stops completing once a bucket outgrows what one run can
list in its time budget. Per-event figures are stated as assumptions (`EventsDesign`), not measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from loadtest.cost import SECONDS_PER_MONTH
from monitoring.s3_metrics import LIST_KEYS_PER_SECOND, SAFETY_MARGIN_MS, timeout_seconds

LISTING_EVERY_SECONDS = 300
DAYS_PER_MONTH = SECONDS_PER_MONTH / 86_400
BUCKET_SIZES = (10**5, 10**6, 10**7, 10**8, 10**9)
WRITE_RATES = (1.0, 100.0, 10_000.0)  # object events per second (creates, overwrites, deletes, expirations)


@dataclass(frozen=True)
class EventsDesign:
    """The counter's per-event work, worst case: every event in a batch from a different owner."""

    batch_size: int = 10  # SQS messages per counter invocation
    # Transaction items per event: its key record, and per batch the bucket's and each owner's counter and
    # journal entry (2 * (batch + 1) items for `batch` events from distinct owners). Each costs 2 write units.
    transaction_items_per_event: float = 1 + 2 * (10 + 1) / 10
    read_units_per_event: float = 1.0  # the key record, read consistently
    counter_billed_ms_per_batch: float = 60.0
    counter_memory_mb: int = 256
    record_bytes: int = 150  # one key record in DynamoDB (key, sequencer, size, flags)
    publisher_billed_ms: float = 200.0
    publisher_memory_mb: int = 256
    inventory_bytes_per_object: float = 40.0  # Parquet, key + size + a few columns, compressed
    reconciliations_per_month: float = DAYS_PER_MONTH


def listing_cost_per_month(objects: int, prices: dict[str, Any]) -> float:
    """LIST requests of a full listing every 5 minutes (1,000 keys per request)."""
    runs = SECONDS_PER_MONTH / LISTING_EVERY_SECONDS
    return runs * (objects / 1000) * float(prices["s3"]["list_per_1000"]) / 1000


def listing_completes(objects: int) -> bool:
    """Whether one scheduled run can list `objects` keys within its time budget."""
    budget = timeout_seconds(LISTING_EVERY_SECONDS) - SAFETY_MARGIN_MS // 1000
    return objects <= budget * LIST_KEYS_PER_SECOND


def events_cost_per_month(
    objects: int, events_per_second: float, prices: dict[str, Any], design: EventsDesign | None = None
) -> dict[str, float]:
    """Monthly cost of the events design by part."""
    d = design or EventsDesign()
    events = events_per_second * SECONDS_PER_MONTH
    batches = events / d.batch_size
    gb_second = prices["lambda"]["gb_second"]["arm64"]
    dynamodb = prices["dynamodb_on_demand"]
    publishes = SECONDS_PER_MONTH / 60
    inventory_scan_tb = objects * d.inventory_bytes_per_object / 1e12
    minimum_tb = prices["athena"]["minimum_mb_per_query"] / 1e6
    return {
        # EventBridge delivers S3's events to its default bus free; its SQS target is one request per event, the
        # counter's event source one receive and one delete per batch.
        "SQS": (events + 2 * batches) * prices["sqs"]["per_million_requests"] / 1e6,
        "Lambda (counter)": batches * prices["lambda"]["per_million_requests"] / 1e6
        + batches * d.counter_billed_ms_per_batch / 1000 * d.counter_memory_mb / 1024 * gb_second,
        "DynamoDB writes": events * d.transaction_items_per_event * 2 * dynamodb["per_million_write_units"] / 1e6,
        "DynamoDB reads": events * d.read_units_per_event * dynamodb["per_million_read_units"] / 1e6,
        "DynamoDB storage": objects * d.record_bytes / 1e9 * dynamodb["storage_gb_month"],
        "Lambda (publisher)": publishes * prices["lambda"]["per_million_requests"] / 1e6
        + publishes * d.publisher_billed_ms / 1000 * d.publisher_memory_mb / 1024 * gb_second,
        "S3 Inventory": d.reconciliations_per_month * objects / 1e6 * prices["s3"]["inventory_per_million_objects"],
        "Athena": d.reconciliations_per_month * max(inventory_scan_tb, minimum_tb) * prices["athena"]["per_tb_scanned"],
    }


def scale_table(prices: dict[str, Any], design: EventsDesign | None = None) -> pd.DataFrame:
    """One row per bucket size and write rate: the events design's monthly cost, and the listing design's."""
    rows = []
    for objects in BUCKET_SIZES:
        for rate in WRITE_RATES:
            parts = events_cost_per_month(objects, rate, prices, design)
            rows.append(
                {
                    "objects": objects,
                    "events_per_second": rate,
                    "events_usd_month": sum(parts.values()),
                    "listing_usd_month": listing_cost_per_month(objects, prices),
                    "listing_completes": listing_completes(objects),
                }
            )
    return pd.DataFrame(rows)


def listing_cell(usd_month: object, *, completes: bool) -> str:
    """The listing design's monthly cost, and whether a listing can complete at all."""
    return f"{usd_month:,.2f}" + ("" if completes else " (never completes)")


def markdown(frame: pd.DataFrame) -> str:
    """The scale table as the README shows it (tests/unit/test_capacity_cost.py holds the README to it)."""
    lines = ["| objects | events/s | $/month, from events | $/month, listing every 5 min |", "|---:|---:|---:|---|"]
    for row in frame.itertuples():
        listing = listing_cell(row.listing_usd_month, completes=bool(row.listing_completes))
        lines.append(f"| {row.objects:,} | {row.events_per_second:,g} | {row.events_usd_month:,.2f} | {listing} |")
    return "\n".join(lines)
