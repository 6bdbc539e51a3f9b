"""`imgops monitoring …`: the capacity functions that publish CustomS3, run once now against a stack.

- `publish`: the capacity publisher (monitoring.capacity_publisher), as its schedule runs it every minute: the
  stack's capacity counters as NumberOfObjects/BucketSizeBytes per bucket and per owner. Nothing is listed.
- `reconcile`: the capacity reconciler (monitoring.reconcile; deployed as the bucket-metrics function), as its
  schedule runs it: the counters checked against a listing, or the newest S3 Inventory report when a bucket is
  too large to list in `--timeout`; ScanIncomplete and DriftObjects/DriftBytes published, drift corrected once a
  second run confirms it.

What the functions read from their environment is read from the deployed functions' configuration: the counter
shard count from the counter function (monitoring.capacity_top.counter_shards says why), the inventory bucket, the
capacity queue and Athena's workgroup and database from the reconciler's, each else the name `ResourceNames`
gives it. The inventory reports are queried with Athena on AWS and with DuckDB on the local stack (the embedded AWS
has no Athena; the local stack's own reconciler reads them so too, localaws.stack.capacity_environment).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from botocore.config import Config
from botocore.exceptions import ClientError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors, fail
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring.capacity import CapacityStore
from monitoring.capacity_top import CapacityTableMissing, Shards, counter_shards
from monitoring.s3_metrics import MAX_TIMEOUT_SECONDS, ScanFailed, Totals, function_name, timeout_seconds
from monitoring.target import Target, client_config, resolve_target
from pipeline.errors import error_code
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, Env, ResourceNames

if TYPE_CHECKING:
    from monitoring.inventory import InventoryEngine
    from monitoring.reconcile import InventorySource

app = typer.Typer(
    help="Run the functions that publish CustomS3 now: the capacity publisher, the reconciler.", no_args_is_help=True
)
console = Console(highlight=False)

# The reconciler's own budget at the default 5-minute schedule (what the deployed function lists in).
DEFAULT_TIMEOUT_SECONDS = timeout_seconds(300)


@app.callback()
def _group() -> None:
    """`publish` and `reconcile`: one run each of the capacity publisher and reconciler."""


@contextmanager
def _quiet(*loggers: Any) -> Iterator[None]:
    """The functions' JSON log lines are for CloudWatch Logs: kept off this console (and off --json) while they run."""
    levels = [logger.log_level for logger in loggers]
    for logger in loggers:
        logger.setLevel("CRITICAL")
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _where(target: Target) -> str:
    return f"the local stack ({target.endpoint_url})" if target.name == "local" else target.name


def _local(target: Target) -> bool:
    """The running local stack (found by its state file, or its endpoint with --stack-name): no Athena there."""
    return target.local or target.name == "local"


def _path_style(endpoint: str | None) -> Config:
    # Path-style on an endpoint (moto, LocalStack), as the functions do.
    return client_config().merge(Config(s3={"addressing_style": "path"})) if endpoint else client_config()


def _function_environment(target: Target, function: str) -> dict[str, str]:
    """A deployed function's environment variables; none when the function cannot be read (the names it would
    hold are the `ResourceNames` ones, which the callers fall back on)."""
    try:
        configuration = target.client("lambda").get_function_configuration(FunctionName=function)
    except ClientError:
        return {}
    return {str(k): str(v) for k, v in ((configuration.get("Environment") or {}).get("Variables") or {}).items()}


@dataclass(frozen=True)
class Counters:
    """The stack's capacity table, read with the counter function's shard count."""

    store: CapacityStore
    shards: Shards

    @property
    def table(self) -> str:
        return self.store.table

    def notes(self) -> list[str]:
        return [f"{self.shards.count} counter shards: {self.shards.source}"]

    def missing(self, target: Target) -> CapacityTableMissing:
        return CapacityTableMissing(
            f"{target.name} has no capacity table {self.table}: the stack predates the capacity counters"
        )


def _counters(target: Target) -> Counters:
    names = ResourceNames(target.prefix)
    shards = counter_shards(target.client("lambda"), names.capacity_counter_function)
    return Counters(CapacityStore(target.client("dynamodb"), names.capacity_table, shards=shards.count), shards)


# --- publish ---------------------------------------------------------------------------------------------------


@app.command()
def publish(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    as_json: AsJson = False,
) -> None:
    """Publish the capacity counters as CustomS3 now, as the capacity publisher does every minute.

    Each bucket's objects and bytes, and its owners' (the largest by bytes, the rest as "(other)"), from the
    counters the object events keep: nothing is listed. The counters' shard count is the deployed counter
    function's (IMGOPS_CAPACITY_SHARDS), else the default; the output says which."""
    from monitoring import capacity_publisher

    with command_errors(), _quiet(capacity_publisher.logger):
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        counters = _counters(target)
        buckets = [target.upload_bucket, target.processed_bucket]
        try:
            report = capacity_publisher.publish_counters(buckets, counters.store, target.client("cloudwatch"))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise counters.missing(target) from None
            raise
    view = {
        "target": target.name,
        "table": counters.table,
        "shards": counters.shards.count,
        "shards_source": counters.shards.source,
        "buckets": [
            {"bucket": b["bucket"], "objects": b["objects_listed"], "bytes": b["bytes_listed"], "owners": b["prefixes"]}
            for b in report["buckets"]
        ],
        "datums": report["datums"],
        "put_calls": report["put_calls"],
    }
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    console.print(escape(f"CustomS3 on {_where(target)}"))
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    table.add_column("bucket", overflow="fold")  # whole names, folded at the edge rather than cut
    for name in ("objects", "bytes", "owners"):
        table.add_column(name, justify="right", no_wrap=True)
    for bucket in view["buckets"]:
        table.add_row(
            escape(bucket["bucket"]), f"{bucket['objects']:,}", f"{bucket['bytes']:,}", f"{bucket['owners']:,}"
        )
    console.print(table)
    console.print(_published(report))
    for note in [f"From the capacity counters (table {counters.table}); nothing was listed.", *counters.notes()]:
        console.print(escape(note), style="dim")


def _published(report: Mapping[str, Any]) -> str:
    calls = report["put_calls"]
    return f"published {report['datums']} datums in {calls} PutMetricData call{'s' if calls != 1 else ''}"


# --- reconcile -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcilerSettings:
    """What the deployed reconciler reads from its environment, for this stack."""

    inventory_bucket: str
    capacity_queue: str
    capacity_dead_letter_queue: str
    engine: str  # athena | duckdb
    athena_workgroup: str
    athena_database: str

    @classmethod
    def of(cls, target: Target) -> ReconcilerSettings:
        names = ResourceNames(target.prefix)
        env = _function_environment(target, function_name(target.prefix))
        default_engine = "duckdb" if _local(target) else "athena"
        return cls(
            inventory_bucket=env.get(Env.INVENTORY_BUCKET) or names.inventory_bucket,
            capacity_queue=env.get(Env.CAPACITY_QUEUE) or names.capacity_queue,
            capacity_dead_letter_queue=env.get(Env.CAPACITY_DEAD_LETTER_QUEUE) or names.capacity_dead_letter_queue,
            engine=env.get(Env.INVENTORY_ENGINE) or default_engine,
            athena_workgroup=env.get(Env.ATHENA_WORKGROUP) or names.athena_workgroup,
            athena_database=env.get(Env.ATHENA_DATABASE) or names.glue_database,
        )

    def describe(self) -> str:
        if self.engine == "duckdb":
            return f"Inventory reports from {self.inventory_bucket}, read with DuckDB."
        return (
            f"Inventory reports from {self.inventory_bucket}, queried with Athena "
            f"(workgroup {self.athena_workgroup}, database {self.athena_database})."
        )

    def inventory(self, target: Target, s3: Any) -> InventorySource:
        """A bucket's newest report: its time, and its totals per owner (queried only if the reconciler asks)."""
        from monitoring import inventory

        if self.engine not in ("athena", "duckdb"):
            raise inventory.InventoryError(f"inventory engine {self.engine!r}: choose athena or duckdb")

        def engine(bucket: str) -> InventoryEngine:
            if self.engine == "duckdb":
                return inventory.DuckDBInventory(s3)
            return inventory.AthenaInventory(
                target.client("athena"),
                workgroup=self.athena_workgroup,
                database=self.athena_database,
                table=inventory.athena_table_name(bucket),
            )

        def newest(bucket: str) -> tuple[datetime, Callable[[], dict[str, Totals]]] | None:
            key = inventory.latest_manifest(s3, self.inventory_bucket, INVENTORY_PREFIX, bucket, INVENTORY_ID)
            if key is None:
                return None
            manifest = inventory.read_manifest(s3, self.inventory_bucket, key)
            return manifest.created, lambda: inventory.inventory_truth(engine(bucket), manifest)[1]

        return newest


@app.command()
def reconcile(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    timeout: Annotated[
        int,
        typer.Option(
            min=15,
            max=MAX_TIMEOUT_SECONDS,
            help="Seconds to list in, as the function's timeout: a bucket the counters say is too large to list in "
            "them is read from its newest S3 Inventory report instead.",
        ),
    ] = DEFAULT_TIMEOUT_SECONDS,
    as_json: AsJson = False,
) -> None:
    """Check the capacity counters against the buckets now, as the scheduled reconciler does.

    Each bucket is listed while the counters say it lists within --timeout, else read from its newest S3 Inventory
    report (Athena on AWS, DuckDB locally). The drift (the counters minus the truth) is published as DriftObjects
    and DriftBytes; drift that the previous run saw identical is corrected, once the capacity queue's oldest event
    is younger than the snapshot and none waits in its dead-letter queue."""
    from monitoring import reconcile as reconciler

    lags: list[float | None] = []
    with command_errors(), _quiet(reconciler.logger):
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        counters = _counters(target)
        try:
            counters.store.counters(target.upload_bucket)  # the table is there (else every bucket would fail)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise counters.missing(target) from None
            raise
        settings = ReconcilerSettings.of(target)
        s3 = target.client("s3", config=_path_style(target.endpoint_url))
        cloudwatch = target.client("cloudwatch")
        deadline = time.monotonic() + timeout

        def remaining_ms() -> int:
            return max(0, int((deadline - time.monotonic()) * 1000))

        def lag() -> float | None:
            lags.append(reconciler.queue_lag(cloudwatch, settings.capacity_queue, settings.capacity_dead_letter_queue))
            return lags[-1]

        buckets = [target.upload_bucket, target.processed_bucket]
        try:
            status = console.status(f"Reconciling {', '.join(buckets)} on {_where(target)}…")
            with nullcontext() if as_json else status:
                report = reconciler.reconcile(
                    buckets,
                    s3=s3,
                    store=counters.store,
                    cloudwatch=cloudwatch,
                    remaining_ms=remaining_ms,
                    inventory=settings.inventory(target, s3),
                    lag_seconds=lag,
                )
        except ScanFailed as exc:
            raise fail(f"{exc} (the other bucket's results were published)") from None
    if as_json:
        view = {
            "target": target.name,
            "table": counters.table,
            "shards": counters.shards.count,
            "inventory_engine": settings.engine,
            **report,
        }
        typer.echo(json.dumps(view, indent=2))
        return
    for line in _reconciliation(report, _where(target)):
        console.print(escape(line))
    console.print(_published(report))
    for note in [*_drift_notes(report, lags), settings.describe(), *counters.notes()]:
        console.print(escape(note), style="dim")


def _reconciliation(report: Mapping[str, Any], where: str) -> list[str]:
    """Per bucket, a line of its name and indented `label  value` lines under it: under 80 columns whatever the
    names (a long reason why a bucket was not checked wraps)."""
    lines = [f"Capacity reconciled on {where}"]
    for bucket in report["buckets"]:
        lines.append(bucket["bucket"])
        if bucket["snapshot"] is None:
            lines.append(f"  not checked  {bucket['source']}")
            continue
        taken = datetime.fromisoformat(bucket["snapshot"]).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"  snapshot     {bucket['source']}, {taken} UTC")
        owners = bucket["owners_drifting"]
        drift = f"{bucket['drift_objects']:+,} objects, {bucket['drift_bytes']:+,} bytes"
        lines.append(f"  drift        {drift}, {owners:,} owner{'s' if owners != 1 else ''} drifting")
        lines.append(f"  corrected    {bucket['corrected']:,}")
    return lines


def _drift_notes(report: Mapping[str, Any], lags: list[float | None]) -> list[str]:
    """What drift means, and when it is corrected (with the capacity queue's lag, when a run read it)."""
    drifting = [
        b for b in report["buckets"] if (b["drift_objects"], b["drift_bytes"]) != (0, 0) or b["owners_drifting"]
    ]
    if not drifting:
        return []
    notes = ["Drift: the counters minus the truth (negative: object events lost on their way to the counters)."]
    if any(b["corrected"] for b in drifting):
        notes.append("Corrected: how many counters (the owners', the bucket total's) were set to the truth.")
    if any(not b["corrected"] for b in drifting):
        lag = "" if not lags else "; it is unknown now" if lags[-1] is None else f"; it is {lags[-1]:,.0f} s now"
        notes.append(
            "Drift is corrected when two runs in a row see it identical, while the capacity queue's oldest event "
            f"is younger than the snapshot{lag}."
        )
    return notes
