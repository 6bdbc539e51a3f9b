"""Cost per 1,000 images and per month, by service, from a dated price table kept as data."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring.capacity import MAX_EVENTS_PER_TRANSACTION
from monitoring.capacity_handlers import COUNTER_BATCH_SIZE, COUNTER_MEMORY_MB, PUBLISHER_MEMORY_MB
from monitoring.reconcile import LISTING_MAX_OBJECTS
from monitoring.s3_metrics import MAX_PREFIXES_PER_BUCKET
from pipeline.errors import ImgopsError

SECONDS_PER_MONTH = 30 * 24 * 3600


class CostError(ImgopsError, ValueError):
    pass


def load_prices(region: str = "us-east-1", path: Path | None = None) -> dict[str, Any]:
    """The price table for `region`: `loadtest/prices/<region>.json`, or a file of the same shape."""
    if path is not None:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    table = resources.files("loadtest.prices") / f"{region}.json"
    if not table.is_file():
        known = sorted(
            p.name.removesuffix(".json")
            for p in resources.files("loadtest.prices").iterdir()
            if p.name.endswith(".json")
        )
        raise CostError(f"no price table for region {region!r} (have: {', '.join(known)}); pass --prices FILE")
    return dict(json.loads(table.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class CapacityDesign:
    """What the capacity metrics do per object event and per month (monitoring.capacity and its functions).

    Per event, worst case: every event of a transaction from another owner. A transaction holds up to
    MAX_EVENTS_PER_TRANSACTION events: their key records, plus the bucket's and each owner's counter and journal
    entry, each item 2 write units (transactional writes cost double)."""

    batch_size: int = COUNTER_BATCH_SIZE  # SQS messages per counter invocation
    transaction_items_per_event: float = 1 + 2 * (MAX_EVENTS_PER_TRANSACTION + 1) / MAX_EVENTS_PER_TRANSACTION
    read_units_per_event: float = 1.0  # the key record, read consistently
    counter_billed_ms_per_batch: float = 400.0  # ~5 transactions of 24 events
    counter_memory_mb: int = COUNTER_MEMORY_MB
    record_bytes: int = 150  # one key record in DynamoDB (key, sequencer, size, flags)
    publisher_billed_ms: float = 200.0
    publisher_memory_mb: int = PUBLISHER_MEMORY_MB
    inventory_bytes_per_object: float = 40.0  # Parquet, key + size + a few columns, compressed
    inventory_reports_per_month: float = SECONDS_PER_MONTH / 86_400  # daily; one Athena scan each
    reconciler_runs_per_month: float = SECONDS_PER_MONTH / 3600  # hourly (the app's default rate)
    listing_max_objects: int = LISTING_MAX_OBJECTS  # the reconciler lists only up to this; inventory beyond


def capacity_event_cost(prices: dict[str, Any], design: CapacityDesign | None = None) -> dict[str, float]:
    """What one object event costs the capacity counters, by part (EventBridge delivers S3's events free)."""
    d = design or CapacityDesign()
    dynamodb = prices["dynamodb_on_demand"]
    per_batch = 1 / d.batch_size
    gb_second = prices["lambda"]["gb_second"]["arm64"]
    return {
        # The rule's SQS target: one send per event; the event source: one receive and one delete per batch.
        "SQS": (1 + 2 * per_batch) * prices["sqs"]["per_million_requests"] / 1e6,
        "Lambda (counter)": per_batch * prices["lambda"]["per_million_requests"] / 1e6
        + per_batch * d.counter_billed_ms_per_batch / 1000 * d.counter_memory_mb / 1024 * gb_second,
        "DynamoDB writes": d.transaction_items_per_event * 2 * dynamodb["per_million_write_units"] / 1e6,
        "DynamoDB reads": d.read_units_per_event * dynamodb["per_million_read_units"] / 1e6,
    }


def capacity_monthly_cost(
    objects: int, prices: dict[str, Any], design: CapacityDesign | None = None
) -> dict[str, float]:
    """What the capacity metrics cost a month whatever changes, for buckets holding `objects` in all."""
    d = design or CapacityDesign()
    dynamodb = prices["dynamodb_on_demand"]
    gb_second = prices["lambda"]["gb_second"]["arm64"]
    publishes = SECONDS_PER_MONTH / 60
    listed = objects if objects <= d.listing_max_objects else 0
    inventoried = objects - listed
    minimum_tb = prices["athena"]["minimum_mb_per_query"] / 1e6
    scan_tb = max(inventoried * d.inventory_bytes_per_object / 1e12, minimum_tb) if inventoried else 0.0
    return {
        "DynamoDB storage": objects * d.record_bytes / 1e9 * dynamodb["storage_gb_month"],
        "Lambda (publisher)": publishes * prices["lambda"]["per_million_requests"] / 1e6
        + publishes * d.publisher_billed_ms / 1000 * d.publisher_memory_mb / 1024 * gb_second,
        "S3 LIST (reconciler)": d.reconciler_runs_per_month * listed / 1000 * prices["s3"]["list_per_1000"] / 1000,
        "S3 Inventory": d.inventory_reports_per_month * objects / 1e6 * prices["s3"]["inventory_per_million_objects"],
        "Athena": d.inventory_reports_per_month * scan_tb * prices["athena"]["per_tb_scanned"],
    }


@dataclass(frozen=True)
class Workload:
    """What one image costs in requests and bytes, and the fixed monthly parts; measured or assumed."""

    label: str = "default"
    memory_mb: int = 1024
    architecture: str = "x86_64"
    worker_billed_ms_per_image: float = 250.0
    worker_invocations_per_image: float = 0.1  # batch size 10
    api_invocations_per_image: float = 1.0  # presign
    api_billed_ms_per_invocation: float = 20.0
    api_memory_mb: int = 256
    thumbnails_per_image: int = 3
    bytes_in_per_image: float = 2.5e6
    bytes_out_per_image: float = 2.5e5
    dynamodb_writes_per_image: float = 3.0  # claim, result, notified mark (items < 1 KB)
    dynamodb_reads_per_image: float = 0.0
    images_per_month: int = 1_000_000
    # CustomS3, worst case: 2 metrics x (2 buckets + 25 upload owners, (other) included, + processed/), and per
    # bucket ScanIncomplete, DriftObjects, DriftBytes and DriftOwners; AWS/* metrics are free.
    custom_metrics: int = 2 * (2 + MAX_PREFIXES_PER_BUCKET + 1) + 4 * 2
    # The capacity publisher every minute (one call: under 1,000 datums) and the reconciler hourly.
    metrics_publishes_per_month: float = SECONDS_PER_MONTH / 60 + SECONDS_PER_MONTH / 3600
    # S3 object events per image, each counted by the capacity counters: the original and its thumbnails.
    object_events_per_image: float = 4.0
    dashboards: int = 2
    alarms: int = 12  # as the CDK app defines them (the composite that pages is not priced)

    def with_memory(self, memory_mb: int, billed_ms_per_image: float, label: str) -> Workload:
        """The same workload on a worker of another size, whose duration there is known (measured or modeled)."""
        return replace(self, memory_mb=memory_mb, worker_billed_ms_per_image=billed_ms_per_image, label=label)


def cost_breakdown(workload: Workload, prices: dict[str, Any]) -> pd.DataFrame:
    """One row per service: cost per 1,000 images and per month at `images_per_month`."""
    if workload.architecture not in prices["lambda"]["gb_second"]:
        raise CostError(f"unknown architecture {workload.architecture!r}")
    per_image: dict[str, float] = {}
    gb_second = prices["lambda"]["gb_second"][workload.architecture]
    per_image["Lambda worker compute"] = (
        workload.worker_billed_ms_per_image / 1000 * workload.memory_mb / 1024 * gb_second
    )
    per_image["Lambda requests"] = (
        (workload.worker_invocations_per_image + workload.api_invocations_per_image)
        * prices["lambda"]["per_million_requests"]
        / 1e6
    )
    per_image["Lambda API compute"] = (
        workload.api_invocations_per_image
        * workload.api_billed_ms_per_invocation
        / 1000
        * workload.api_memory_mb
        / 1024
        * gb_second
    )
    per_image["API Gateway requests"] = (
        workload.api_invocations_per_image * prices["api_gateway_http"]["per_million_requests"] / 1e6
    )
    s3 = prices["s3"]
    per_image["S3 PUT"] = (1 + workload.thumbnails_per_image) * s3["put_per_1000"] / 1000
    per_image["S3 GET"] = 1 * s3["get_per_1000"] / 1000
    per_image["S3 storage (first month)"] = (
        (workload.bytes_in_per_image + workload.bytes_out_per_image) / 1e9 * s3["storage_gb_month"]
    )
    # S3 -> SQS send, plus one receive and one delete-batch per worker invocation.
    sqs_requests = 1 + 2 * workload.worker_invocations_per_image
    per_image["SQS requests"] = sqs_requests * prices["sqs"]["per_million_requests"] / 1e6
    dynamodb = prices["dynamodb_on_demand"]
    per_image["DynamoDB writes"] = workload.dynamodb_writes_per_image * dynamodb["per_million_write_units"] / 1e6
    per_image["DynamoDB reads"] = workload.dynamodb_reads_per_image * dynamodb["per_million_read_units"] / 1e6
    per_image["SNS publishes"] = 1 * prices["sns"]["per_million_publishes"] / 1e6
    per_image["Capacity metrics (events)"] = workload.object_events_per_image * sum(
        capacity_event_cost(prices).values()
    )

    cloudwatch = prices["cloudwatch"]
    monthly_fixed = {
        "CloudWatch metrics": workload.custom_metrics * cloudwatch["custom_metric_month"]
        + workload.metrics_publishes_per_month * cloudwatch["api_per_1000_requests"] / 1000,
        "CloudWatch dashboards": workload.dashboards * cloudwatch["dashboard_month"],
        "CloudWatch alarms": workload.alarms * cloudwatch["standard_alarm_month"],
        # A month's objects (the original and thumbnails of each image): publisher, reconciler, inventory.
        "Capacity metrics (fixed)": sum(
            capacity_monthly_cost(int(workload.images_per_month * workload.object_events_per_image), prices).values()
        ),
    }
    volume = max(1, workload.images_per_month)
    rows = [
        {"service": name, "per_1000_images": cost * 1000, "per_month": cost * volume}
        for name, cost in per_image.items()
    ] + [
        {"service": name, "per_1000_images": cost / volume * 1000, "per_month": cost}
        for name, cost in monthly_fixed.items()
    ]
    frame = pd.DataFrame(rows).set_index("service")
    frame.loc["Total"] = frame.sum()
    return frame


def compare(workloads: list[Workload], prices: dict[str, Any]) -> pd.DataFrame:
    """Side by side: one column per configuration, cost per 1,000 images."""
    columns = {w.label: cost_breakdown(w, prices)["per_1000_images"] for w in workloads}
    return pd.DataFrame(columns)


def workload_from_run(summary: dict[str, Any], **overrides: Any) -> Workload:
    """Per-image figures measured by a load-test run (its summary.json)."""
    worker = summary.get("worker", {})
    processed = max(1, int(summary.get("counts", {}).get("DONE", 0)) + int(summary.get("counts", {}).get("FAILED", 0)))
    fields: dict[str, Any] = {"label": f"run {summary.get('run_id', '')}".strip()}
    if worker.get("invocations"):
        fields["worker_invocations_per_image"] = worker["invocations"] / processed
        fields["worker_billed_ms_per_image"] = worker["billed_ms_total"] / processed
        fields["memory_mb"] = int(worker.get("memory_size_mb") or 1024)
    if summary.get("bytes_in_per_image"):
        fields["bytes_in_per_image"] = float(summary["bytes_in_per_image"])
    if summary.get("bytes_out_per_image"):
        fields["bytes_out_per_image"] = float(summary["bytes_out_per_image"])
    fields.update({name: value for name, value in overrides.items() if value is not None})
    return Workload(**fields)


def workload_dict(workload: Workload) -> dict[str, Any]:
    return {
        name: (value if not isinstance(value, float) or math.isfinite(value) else None)
        for name, value in asdict(workload).items()
    }
