"""`imgops monitoring …`: the metrics imgops publishes itself (CustomS3 bucket sizes and object counts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import boto3
import typer
from botocore.config import Config
from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

from loadtest.cli.errors import command_errors, stderr
from loadtest.cli.target_options import Region, StackName, StateFile
from loadtest.local import state
from loadtest.targets import TargetError
from pipeline.resources import StackOutputs

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
        stderr.print(f"[red]error:[/red] {failure} (the other bucket's metrics were published)", soft_wrap=True)
        raise typer.Exit(1)
    _print_report(report, where)


def _target(
    stack_name: str | None,
    region: str,
    state_file: Path | None,
    upload_bucket: str | None,
    processed_bucket: str | None,
) -> tuple[S3Client, CloudWatchClient, list[str], str]:
    """Named buckets, else a deployed stack's (its outputs), else the running local stack's."""
    if (upload_bucket is None) != (processed_bucket is None):
        raise typer.BadParameter("give both --upload-bucket and --processed-bucket, or neither")
    if upload_bucket is not None and processed_bucket is not None:
        buckets = [upload_bucket, processed_bucket]
    elif stack_name:
        buckets = _stack_buckets(stack_name, region)
    else:
        from loadtest.local.provision import local_session  # never send real credentials to the embedded AWS

        info = state.read_state(state_file)
        session = local_session(info.region)
        return (
            _s3(session, info.endpoint_url),
            session.client("cloudwatch", endpoint_url=info.endpoint_url),
            [info.upload_bucket, info.processed_bucket],
            f"the local stack ({info.endpoint_url})",
        )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    session = boto3.session.Session(region_name=region)
    return _s3(session, endpoint), session.client("cloudwatch"), buckets, endpoint or f"AWS {region}"


def _stack_buckets(stack_name: str, region: str) -> list[str]:
    """The upload and processed buckets from a deployed stack's outputs (see pipeline.resources.StackOutputs)."""
    cloudformation = boto3.session.Session(region_name=region).client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise TargetError(f"cannot read stack {stack_name!r} in {region}: {exc}") from None
    outputs = {o.get("OutputKey", ""): o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    needed = (StackOutputs.UPLOAD_BUCKET, StackOutputs.PROCESSED_BUCKET)
    missing = [key for key in needed if not outputs.get(key)]
    if missing:
        raise TargetError(f"stack {stack_name!r} lacks outputs {', '.join(missing)}; is it an imgops stack?")
    return [outputs[key] for key in needed]


def _s3(session: boto3.session.Session, endpoint: str | None) -> S3Client:
    # Path-style on an endpoint (moto, LocalStack), as the Lambda does.
    config = Config(s3={"addressing_style": "path"}) if endpoint else Config()
    return session.client("s3", endpoint_url=endpoint, config=config)


def _print_report(report: dict[str, Any], where: str) -> None:
    table = Table("bucket", "objects", "bytes", "prefixes", "complete", title=f"CustomS3 on {where}")
    for bucket in report["buckets"]:
        table.add_row(
            bucket["bucket"],
            f"{bucket['objects_listed']:,}",
            f"{bucket['bytes_listed']:,}",
            str(bucket["prefixes"]),
            "yes" if bucket["complete"] else "[yellow]no: nothing published for it[/yellow]",
        )
    console.print(table)
    calls = report["put_calls"]
    console.print(f"published {report['datums']} datums in {calls} PutMetricData call{'s' if calls != 1 else ''}")
