"""`imgops dlq …`: inspect, redrive and purge the worker's dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from imgops.errors import command_errors, stderr
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring import dlq as dlq_ops
from monitoring.target import resolve_target

app = typer.Typer(help="The worker's dead-letter queue: look first, then redrive or purge.", no_args_is_help=True)
console = Console(highlight=False)

RECEIVE_COUNT_NOTE = (
    "Inspecting receives every message (and hands it straight back): SQS counts each receive, so every "
    "message's receive count (receive_count in --json) went up by one."
)


def _table(messages: list[dlq_ops.DlqMessage], title: str) -> Table:
    """One block per message that fits 80 columns: the short message id `redrive --id` takes, then the whole
    image id `imgops images status` takes (neither ever wraps), attempts and age; the user, the key, and what
    happened (status, reason, last error) on the lines below, folded at the edge rather than cut."""
    short = dlq_ops.short_ids([m.message_id for m in messages])
    table = Table(title=escape(title), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_lines=True)
    table.add_column("message", no_wrap=True)
    table.add_column("image · user · key · what happened", overflow="fold")
    now = datetime.now(UTC)
    for m in messages:
        head = [escape(m.image_id) or "-"]
        if m.image_id and m.status != dlq_ops.NO_ITEM:
            head.append(f"{m.attempts} attempt{'s' if m.attempts != 1 else ''}")
        if age := dlq_ops.age(m, now):
            head.append(f"sent {age}")
        lines = [" · ".join(head)]
        if m.user_id:
            lines.append(f"user {escape(m.user_id)}")
        if m.s3_key:
            lines.append(escape(m.s3_key))  # unlabelled: a label would wrap on its own line before a long key
        lines.append(_what_happened(m))
        table.add_row(short[m.message_id], "\n".join(line for line in lines if line))
    return table


def _what_happened(m: dlq_ops.DlqMessage) -> str:
    """`RETRYING · last error ProvisionedThroughput…: claim (PutItem): …`, `FAILED: reason`, `no item`."""
    shown = m.state or m.status
    status = f"[bold]{escape(shown)}[/bold]" if shown else ""
    if m.reason:
        status = f"{status}: {escape(m.reason)}" if status else escape(m.reason)
    if m.last_error:
        return f"{status} · last error {escape(m.last_error)}" if status else f"last error {escape(m.last_error)}"
    return status


def _groups_table(groups: list[dlq_ops.ErrorGroup], short: dict[str, str], title: str) -> Table:
    table = Table(title=escape(title), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("error class", overflow="fold")
    table.add_column("example messages", overflow="fold")
    for group in groups:
        examples = ", ".join(short[m.message_id] for m in group.messages[:3])
        more = len(group.messages) - 3
        table.add_row(
            str(len(group.messages)), escape(group.error_class), examples + (f" (+{more})" if more > 0 else "")
        )
    return table


@app.command()
def inspect(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    limit: Annotated[int | None, typer.Option(min=1, help="List at most this many.")] = None,
    by_error: Annotated[
        bool, typer.Option("--by-error", help="Group by error class (the code of the item's last error), counted.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """List DLQ messages: image, user, key, attempts, last error and age, leaving the DLQ as it was.

    Inspecting receives every message and hands it straight back: SQS counts every receive, so each inspection
    raises every message's receive count by one."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        messages = dlq_ops.inspect(target.client("sqs"), target.dlq_url, target.table(), limit)
    groups = dlq_ops.by_error(messages)
    if as_json:
        typer.echo(json.dumps([g.view() for g in groups], indent=2) if by_error else dlq_ops.as_json(messages))
        return
    if not messages:
        console.print(f"The DLQ is empty ({escape(target.dlq_url)}).")
        return
    short = dlq_ops.short_ids([m.message_id for m in messages])
    if by_error:
        console.print(_groups_table(groups, short, f"{len(messages)} message(s) on {target.dlq_url}, by error"))
        console.print("Next: imgops dlq redrive --error-class CLASS --canary 1", style="dim")
    else:
        console.print(_table(messages, f"{len(messages)} message(s) on {target.dlq_url}"))
        console.print(
            "Next: imgops images status IMAGE-ID; imgops dlq inspect --by-error; "
            "imgops dlq redrive --id MESSAGE | --error-class CLASS [--canary N]",
            style="dim",
        )
    console.print(RECEIVE_COUNT_NOTE, style="dim")


@contextmanager
def _progress() -> Iterator[Progress]:
    """Progress on stderr, on a terminal only (nothing in piped output, or in --json's)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    ) as progress:
        yield progress


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
    error_class: Annotated[
        str | None,
        typer.Option(
            "--error-class", metavar="CLASS", help="Only messages of this class, as `dlq inspect --by-error` names it."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--max", min=1, help="Move at most this many.")] = None,
    canary: Annotated[
        int | None,
        typer.Option(
            "--canary",
            metavar="N",
            min=1,
            help="Move N first and wait until they finish; move the rest only if none fails again (else exit 1).",
        ),
    ] = None,
    canary_timeout: Annotated[
        int | None,
        typer.Option(
            "--canary-timeout",
            metavar="SECONDS",
            min=1,
            help="How long to wait for the canaries [default: the work queue's visibility timeout + 60 s].",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Move DLQ messages back to the work queue (SQS's move task on AWS; copy-then-delete elsewhere, and whenever
    some are chosen). Each is deleted from the DLQ only once the work queue has accepted its copy."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        sqs, table = target.client("sqs"), target.table()
        ids = set(message_id) if message_id else None
        with _progress() as progress:
            moving = progress.add_task("moving", total=None, visible=canary is None)

            def moved(_: str) -> None:
                progress.advance(moving)

            if canary is None:
                result = dlq_ops.redrive(
                    sqs,
                    dlq_url=target.dlq_url,
                    queue_url=target.work_queue_url,
                    ids=ids,
                    limit=limit,
                    prefer_move_task=not target.local,  # moto has no message-move task
                    on_move=moved,
                    table=table,
                    error_class=error_class,
                )
            else:
                timeout = canary_timeout or dlq_ops.default_canary_timeout(
                    dlq_ops.visibility_timeout(sqs, target.work_queue_url)
                )
                waiting = progress.add_task("canaries", total=canary)

                def polled(canaries: list[dlq_ops.Canary], elapsed: float) -> None:
                    done = sum(c.finished for c in canaries)
                    running = sum(not c.outcome for c in canaries)
                    text = f"canaries: {done} finished, {running} running ({elapsed:.0f} of {timeout} s)"
                    progress.update(waiting, total=len(canaries), completed=done, description=text)

                def rest(count: int) -> None:
                    progress.update(waiting, visible=False)
                    progress.update(moving, total=count, completed=0, visible=True, description="moving the rest")

                result = dlq_ops.canary_redrive(
                    sqs,
                    table,
                    dlq_url=target.dlq_url,
                    queue_url=target.work_queue_url,
                    count=canary,
                    timeout=timeout,
                    ids=ids,
                    error_class=error_class,
                    limit=limit,
                    on_poll=polled,
                    before_rest=rest,
                    on_move=moved,
                )
    if as_json:
        typer.echo(json.dumps(result.view()))
    else:
        _report(result)
    if result.error:
        failed = next((c for c in result.canaries if c.failed), None)
        # The canaries' lines above say which and why; --json has it all in "error".
        summary = f"canary {failed.outcome} (above)" if failed is not None and not as_json else result.error
        left = f"; {result.left} message(s) left on the DLQ" if result.left else ""
        stderr.print(f"[red]error:[/red] {escape(summary)}{left}")
        raise typer.Exit(1)


def _canary_line(canary: dlq_ops.Canary, short: str) -> str:
    """`  3f2a1b0c  image 0b6f…  failed again: ProvisionedThroughputExceededException: claim (PutItem): …`."""
    outcome = f"[bold]{escape(canary.outcome or 'running')}[/bold]"
    detail = f": {escape(canary.detail)}" if canary.detail else ""
    return f"  {short}  image {escape(canary.message.image_id)}  {outcome}{detail}"


def _report(result: dlq_ops.RedriveResult) -> None:
    if result.method == "move-task":
        console.print(
            f"Started SQS message move task {escape(result.moved[0])}: all DLQ messages go back to the work queue."
        )
        return
    canary_ids = {c.message.message_id for c in result.canaries}
    if result.canaries:
        short = dlq_ops.short_ids([c.message.message_id for c in result.canaries])
        finished = [c for c in result.canaries if c.finished]
        console.print(f"Canaries: {len(finished)} of {len(result.canaries)} finished after the redrive.")
        for c in result.canaries:
            console.print(_canary_line(c, short[c.message.message_id]))
        if any(c.failed for c in result.canaries):
            console.print(
                "The canaries stay on the work queue: a failing one comes back to the DLQ after its last receive. "
                "Find the cause (imgops images status IMAGE-ID; the worker's logs) before redriving the rest.",
                style="dim",
            )
    rest = [m for m in result.moved if m not in canary_ids]
    if rest or not result.canaries:
        label = "the other " if result.canaries else ""
        console.print(f"Moved {label}{len(rest)} message(s) back to the work queue: {escape(', '.join(rest) or '-')}")


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
