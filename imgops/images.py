"""`imgops images …`: one image's status, and running it through the worker again."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring import images as image_ops
from monitoring.target import resolve_target

app = typer.Typer(help="One image: its status and metadata, or reprocess it.", no_args_is_help=True)
console = Console(highlight=False)

ImageId = Annotated[str, typer.Argument(help="The image id (the UUID in its upload key).")]

_STATUS_STYLE = {"DONE": "green", "FAILED": "bold red", "PROCESSING": "yellow", image_ops.RETRYING: "bold yellow"}


@app.command()
def status(
    image_id: ImageId, stack_name: StackName = None, region: Region = "us-east-1", state_file: StateFile = None,
    as_json: AsJson = False,
) -> None:  # fmt: skip
    """Show the image's status and failure reason, owner, original, size, times and thumbnails.

    An image whose processing failed and waits for a retry (or sits in the DLQ) shows as RETRYING, with its
    attempts, last error and when it was last tried. --json prints the whole item as stored (status PROCESSING
    until it is DONE or FAILED), the worker's bookkeeping (claim, lease, source version) included."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        item = image_ops.status(target.table(), image_id)
    if as_json:
        typer.echo(json.dumps(item, indent=2, default=str))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # keys and ids in full, folded at the edge rather than cut
    for label, value in image_ops.status_rows(item):
        style = _STATUS_STYLE.get(value, "") if label == "status" else ""
        table.add_row(escape(label), f"[{style}]{escape(value)}[/]" if style else escape(value))
    console.print(table)


@app.command()
def reprocess(
    image_id: ImageId, stack_name: StackName = None, region: Region = "us-east-1", state_file: StateFile = None
) -> None:
    """Queue the image's original for the worker again (a fresh S3 event; thumbnails are rewritten)."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        message_id = image_ops.reprocess(
            table=target.table(),
            s3=target.client("s3"),
            sqs=target.client("sqs"),
            queue_url=target.work_queue_url,
            upload_bucket=target.upload_bucket,
            image_id=image_id,
        )
    console.print(f"Queued {image_id} for reprocessing (message {message_id}).")
