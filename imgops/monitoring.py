"""`imgops monitoring …`: the metrics imgops publishes itself (CustomS3 bucket sizes and object counts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from botocore.config import Config
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors, stderr
from imgops.options import Region, StackName, StateFile
from monitoring.target import client_config, resolve_target, sdk_client

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client

app = typer.Typer(
    help="Metrics imgops publishes itself: CustomS3 bucket sizes and object counts.", no_args_is_help=True
)
console = Console(highlight=False)

# The deployed function's budget at the default 5-minute schedule (monitoring.s3_metrics.timeout_seconds(300)).
DEFAULT_TIMEOUT_SECONDS = 290


@app.callback()
def _group() -> None:
    """Keeps `publish` a named subcommand even while it is the only one."""


@app.command()
def publish(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    upload_bucket: Annotated[
        str | None,
        typer.Option(help="With --processed-bucket: these buckets, on AWS_ENDPOINT_URL or AWS (no stack needed)."),
    ] = None,
    processed_bucket: Annotated[str | None, typer.Option(help="See --upload-bucket.")] = None,
    timeout: Annotated[
        int,
        typer.Option(min=15, max=3600, help="Stop listing after N seconds, as the Lambda does at its deadline."),
    ] = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Run the bucket-metrics scan now and publish CustomS3, as the scheduled Lambda does."""
    from monitoring import s3_metrics

    s3_metrics.logger.setLevel("WARNING")  # its INFO lines are for CloudWatch Logs, not this console
    with command_errors():
        s3, cloudwatch, buckets, where = _target(stack_name, region, state_file, upload_bucket, processed_bucket)
        deadline = time.monotonic() + timeout

        def remaining_ms() -> int:
            return max(0, int((deadline - time.monotonic()) * 1000))

        failure: str | None = None
        with console.status(f"Listing {', '.join(buckets)} on {where}…"):
            try:
                report = s3_metrics.measure(buckets, s3=s3, cloudwatch=cloudwatch, remaining_ms=remaining_ms)
            except s3_metrics.ScanFailed as exc:
                failure, report = str(exc), {}
    if failure is not None:
        stderr.print(f"[red]error:[/red] {escape(failure)} (the other bucket's metrics were published)", soft_wrap=True)
        raise typer.Exit(1)
    _print_report(report, where)


def _target(
    stack_name: str | None,
    region: str,
    state_file: Path | None,
    upload_bucket: str | None,
    processed_bucket: str | None,
) -> tuple[S3Client, CloudWatchClient, list[str], str]:
    """Named buckets (on AWS_ENDPOINT_URL or AWS), else a deployed stack's, else the running local stack's."""
    if (upload_bucket is None) != (processed_bucket is None):
        raise typer.BadParameter("give both --upload-bucket and --processed-bucket, or neither")
    if upload_bucket is not None and processed_bucket is not None:
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        return (
            sdk_client("s3", region, config=_path_style(endpoint)),
            sdk_client("cloudwatch", region),
            [upload_bucket, processed_bucket],
            endpoint or f"AWS {region}",
        )
    target = resolve_target(stack_name=stack_name, region=region, state=state_file)
    where = f"the local stack ({target.endpoint_url})" if target.local else target.name
    return (
        target.client("s3", config=_path_style(target.endpoint_url)),
        target.client("cloudwatch"),
        [target.upload_bucket, target.processed_bucket],
        where,
    )


def _path_style(endpoint: str | None) -> Config:
    # Path-style on an endpoint (moto, LocalStack), as the Lambda does.
    return client_config().merge(Config(s3={"addressing_style": "path"})) if endpoint else client_config()


def _print_report(report: dict[str, Any], where: str) -> None:
    table = Table("bucket", "objects", "bytes", "prefixes", "complete", title=escape(f"CustomS3 on {where}"))
    table.columns[0].overflow = "fold"  # bucket names whole, folded at the edge rather than cut
    for bucket in report["buckets"]:
        table.add_row(
            escape(bucket["bucket"]),
            f"{bucket['objects_listed']:,}",
            f"{bucket['bytes_listed']:,}",
            str(bucket["prefixes"]),
            "yes" if bucket["complete"] else "[yellow]no: nothing published for it[/yellow]",
        )
    console.print(table)
    calls = report["put_calls"]
    console.print(f"published {report['datums']} datums in {calls} PutMetricData call{'s' if calls != 1 else ''}")
