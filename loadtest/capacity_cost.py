"""What the capacity metrics cost per month: counted from S3's events (monitoring.capacity) against listing the
buckets every 5 minutes (monitoring.s3_metrics), by bucket size and write rate, from the price table.

The events design costs in proportion to what changes (events), plus an hourly reconciliation that lists a bucket
only while it is small and reads the daily S3 Inventory report beyond; the listing design in proportion to
everything stored, and it stops completing once a bucket outgrows what one run can list in its time budget.
Per-event figures are the deployed design's worst case (loadtest.cost.CapacityDesign), not measured here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.cost import SECONDS_PER_MONTH, CapacityDesign, capacity_event_cost, capacity_monthly_cost
from monitoring.s3_metrics import LIST_KEYS_PER_SECOND, SAFETY_MARGIN_MS, timeout_seconds

LISTING_EVERY_SECONDS = 300
DAYS_PER_MONTH = SECONDS_PER_MONTH / 86_400
BUCKET_SIZES = (10**5, 10**6, 10**7, 10**8, 10**9)
WRITE_RATES = (1.0, 100.0, 10_000.0)  # object events per second (creates, overwrites, deletes, expirations)


def listing_cost_per_month(objects: int, prices: dict[str, Any]) -> float:
    """LIST requests of a full listing every 5 minutes (1,000 keys per request)."""
    runs = SECONDS_PER_MONTH / LISTING_EVERY_SECONDS
    return runs * (objects / 1000) * float(prices["s3"]["list_per_1000"]) / 1000


def listing_completes(objects: int) -> bool:
    """Whether one scheduled run can list `objects` keys within its time budget."""
    budget = timeout_seconds(LISTING_EVERY_SECONDS) - SAFETY_MARGIN_MS // 1000
    return objects <= budget * LIST_KEYS_PER_SECOND


def events_cost_per_month(
    objects: int, events_per_second: float, prices: dict[str, Any], design: CapacityDesign | None = None
) -> dict[str, float]:
    """Monthly cost of the events design by part: per event (loadtest.cost.capacity_event_cost) at this rate, plus
    what it costs whatever changes (the publisher, the reconciler's listing or inventory and Athena)."""
    events = events_per_second * SECONDS_PER_MONTH
    per_event = {part: cost * events for part, cost in capacity_event_cost(prices, design).items()}
    return {**per_event, **capacity_monthly_cost(objects, prices, design)}


def scale_table(prices: dict[str, Any], design: CapacityDesign | None = None) -> pd.DataFrame:
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
