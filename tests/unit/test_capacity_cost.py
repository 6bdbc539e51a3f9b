"""The capacity metrics' cost model, and docs/capacity.md's table and figures held to it."""

from __future__ import annotations

from pathlib import Path

from loadtest.capacity_cost import (
    BUCKET_SIZES,
    events_cost_per_month,
    listing_completes,
    listing_cost_per_month,
    markdown,
    scale_table,
)
from loadtest.cost import SECONDS_PER_MONTH, CapacityDesign, load_prices
from monitoring.capacity import MAX_EVENTS_PER_TRANSACTION
from monitoring.capacity_handlers import COUNTER_MAX_CONCURRENCY

CAPACITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "capacity.md"
README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_the_readme_and_doc_show_the_table_and_figures_the_model_gives() -> None:
    prices = load_prices()
    readme, doc = README.read_text(encoding="utf-8"), CAPACITY_DOC.read_text(encoding="utf-8")
    assert markdown(scale_table(prices)) in readme
    assert len(scale_table(prices)) == 3 * len(BUCKET_SIZES)
    design = CapacityDesign()
    units = design.transaction_items_per_event * 2
    assert f"~{units:.1f} transactional write units" in readme
    assert f"~{units:.1f} write units" in doc
    counter_writes = 10_000 / MAX_EVENTS_PER_TRANSACTION
    assert (
        f"~{round(counter_writes, -1):,.0f} counter writes a second, ~{round(counter_writes / 8, -1):.0f} a shard"
        in doc
    )
    assert f"~{round(counter_writes / 8, -1):.0f} writes a second each" in readme
    concurrent = 10_000 / design.batch_size * design.counter_billed_ms_per_batch / 1000
    assert f"~{concurrent:.0f} counter Lambdas" in readme
    assert f"~{concurrent:.0f} concurrent counters" in doc
    assert f"allows {COUNTER_MAX_CONCURRENCY})" in readme
    listing = listing_cost_per_month(10**9, prices)
    assert f"${listing:,.0f} a month at 10^9 objects" in readme
    assert f"${listing:,.0f} a month at 10^9 objects" in doc
    writes = events_cost_per_month(10**9, 10_000.0, prices)["DynamoDB writes"]
    puts = 10_000.0 * SECONDS_PER_MONTH / 1000 * prices["s3"]["put_per_1000"]
    assert f"(${round(writes, -4):,.0f} a month)" in doc
    assert f"(${round(puts, -4):,.0f})" in doc
