"""`imgops dlq …`: inspect, redrive and purge the worker's dead-letter queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors, stderr
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring import dlq as dlq_ops
from monitoring.images import ago
from monitoring.target import resolve_target

app = typer.Typer(help="The worker's dead-letter queue: look first, then redrive or purge.", no_args_is_help=True)
console = Console(highlight=False)

# From this console width on, the table also says how long ago each message was sent (it is always in --json).
_WIDE = 100


def _table(messages: list[dlq_ops.DlqMessage], title: str) -> Table:
    """One row per message that fits 80 columns: the short message id `redrive --id` takes and the whole image id
    `imgops images status` takes never wrap; the status and reason wrap."""
    short = dlq_ops.short_ids([m.message_id for m in messages])
    wide = console.width >= _WIDE
    table = Table(title=escape(title), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("message", no_wrap=True)
    table.add_column("image id", no_wrap=True)
    table.add_column("recv", justify="right", no_wrap=True)
    if wide:
        table.add_column("sent", no_wrap=True)
    table.add_column("status: reason", overflow="fold")
    now = datetime.now(UTC)
    for m in messages:
        cells = [short[m.message_id], escape(m.image_id) or "-", str(m.receive_count)]
        cells += [ago(m.sent_at, now)] if wide else []
        status = f"[bold]{escape(m.status)}[/bold]" if m.status else ""
        table.add_row(*cells, f"{status}: {escape(m.reason)}" if status and m.reason else status or escape(m.reason))
    return table


@app.command()
def inspect(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    limit: Annotated[int | None, typer.Option(min=1, help="List at most this many.")] = None,
    as_json: AsJson = False,
) -> None:
    """List DLQ messages with their image's status and failure reason, leaving the DLQ as it was."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        messages = dlq_ops.inspect(target.client("sqs"), target.dlq_url, target.table(), limit)
    if as_json:
        typer.echo(dlq_ops.as_json(messages))
    elif messages:
        console.print(_table(messages, f"{len(messages)} message(s) on {target.dlq_url}"))
        console.print("Next: imgops images status IMAGE-ID; imgops dlq redrive --id MESSAGE", style="dim")
    else:
        console.print(f"The DLQ is empty ({escape(target.dlq_url)}).")


@app.command()
def redrive(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    message_id: Annotated[
        list[str] | None,
        typer.Option(
            "--id", metavar="ID", help="Only this message: its id, or the prefix `dlq inspect` shows (repeatable)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--max", min=1, help="Move at most this many.")] = None,
    as_json: AsJson = False,
) -> None:
    """Move DLQ messages back to the work queue (SQS's move task on AWS; copy-then-delete elsewhere)."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        result = dlq_ops.redrive(
            target.client("sqs"),
            dlq_url=target.dlq_url,
            queue_url=target.work_queue_url,
            ids=set(message_id) if message_id else None,
            limit=limit,
            prefer_move_task=not target.local,  # moto has no message-move task
        )
    if as_json:
        typer.echo(json.dumps({"method": result.method, "moved": result.moved, "error": result.error}))
    elif result.method == "move-task":
        console.print(
            f"Started SQS message move task {escape(result.moved[0])}: all DLQ messages go back to the work queue."
        )
    else:
        moved = escape(", ".join(result.moved) or "-")
        console.print(f"Moved {len(result.moved)} message(s) back to the work queue: {moved}")
    if result.error:
        stderr.print(f"[red]error:[/red] {escape(result.error)}; the rest are still on the DLQ")
        raise typer.Exit(1)


@app.command()
def purge(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the messages are deleted for good.")] = False,
    as_json: AsJson = False,
) -> None:
    """Delete every DLQ message (only with --yes) and print what was removed."""
    if not yes:
        stderr.print(
            "[red]error:[/red] purge deletes every DLQ message for good; run `imgops dlq inspect` first, then add --yes"
        )
        raise typer.Exit(1)
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        removed = dlq_ops.purge(target.client("sqs"), target.dlq_url, target.table())
    if as_json:
        typer.echo(dlq_ops.as_json(removed))
    elif removed:
        console.print(_table(removed, f"removed {len(removed)} message(s)"))
    else:
        console.print("The DLQ was empty; nothing removed.")
