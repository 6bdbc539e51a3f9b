"""The capacity metrics' cost model, and docs/capacity.md's table and figures held to it."""

from __future__ import annotations

import re
from pathlib import Path

from loadtest.capacity_cost import (
    BUCKET_SIZES,
    events_cost_per_month,
    listing_completes,
    listing_cost_per_month,
    markdown,
    scale_table,
)
from loadtest.cost import SECONDS_PER_MONTH, load_prices

CAPACITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "capacity.md"


def test_listing_grows_with_what_is_stored_and_stops_completing() -> None:
    prices = load_prices()
    # 4 M objects listed every 5 minutes: ~35 M LIST requests a month (#18's figure, ~$170).
    assert round(listing_cost_per_month(4_000_000, prices)) == 173
    assert listing_completes(1_000_000)
    assert not listing_completes(10_000_000)


def test_events_grow_with_what_changes() -> None:
    prices = load_prices()
    small, large = (sum(events_cost_per_month(n, 100.0, prices).values()) for n in (10**5, 10**9))
    assert large < small * 1.2  # 10,000 times the objects: storage, inventory and Athena only
    busy = sum(events_cost_per_month(10**5, 10_000.0, prices).values())
    assert 90 < busy / small < 110  # 100 times the events: ~100 times the cost


def test_the_doc_shows_the_table_and_figures_the_model_gives() -> None:
    prices = load_prices()
    text = CAPACITY_DOC.read_text(encoding="utf-8")
    assert markdown(scale_table(prices)) in text
    assert len(scale_table(prices)) == 3 * len(BUCKET_SIZES)
    writes = events_cost_per_month(10**9, 10_000.0, prices)["DynamoDB writes"]
    puts = 10_000.0 * SECONDS_PER_MONTH / 1000 * prices["s3"]["put_per_1000"]
    figures = re.search(r"writes \(DynamoDB, \$([\d,]+) a month of it\).*?PUTs.*?\(\$([\d,]+) a month", text, re.S)
    assert figures is not None
    assert figures.groups() == (f"{writes:,.0f}", f"{puts:,.0f}")
