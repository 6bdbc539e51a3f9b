"""`imgops capacity top`: who fills a bucket, from the capacity counters (no listing)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring import capacity_top
from monitoring.capacity_top import By, Which
from monitoring.target import resolve_target

app = typer.Typer(help="The buckets' owners by bytes and objects, from the capacity counters.", no_args_is_help=True)
console = Console(highlight=False)


@app.callback()
def _group() -> None:
    """Keeps `top` a named subcommand even while it is the only one."""


def _table(top: capacity_top.TopOwners) -> Table:
    """Rank, user id (or prefix), objects, size and share, the bucket's total below: about 70 columns with a user
    id, so 80 hold it; a long prefix folds rather than widen the table."""
    table = Table(
        title=escape(f"Top {len(top.owners)} by {top.by}"),
        title_justify="left",
        box=box.SIMPLE,
        show_edge=False,
        pad_edge=False,
        show_footer=True,
    )
    names = ("#", "user / prefix", "objects", "size", f"% {top.by}")
    for n, (name, total) in enumerate(zip(names, top.total_row(), strict=True)):
        if n == 1:
            table.add_column(name, footer=escape(total), overflow="fold")
        else:
            table.add_column(name, footer=escape(total), justify="right", no_wrap=True)
    for row in top.rows():
        table.add_row(*map(escape, row))
    return table


@app.command()
def top(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    bucket: Annotated[Which, typer.Option(help="Which of the stack's buckets.")] = Which.UPLOADS,
    by: Annotated[By, typer.Option(help="Rank owners by bytes or by objects.")] = By.BYTES,
    limit: Annotated[int, typer.Option(min=1, help="Show this many owners; the rest are summed.")] = 10,
    as_json: AsJson = False,
) -> None:
    """The largest owners of a bucket, from the capacity counters (nothing is listed).

    An owner is an uploader (user-uploads/<user>/, shown as the user id) or a top-level prefix; each is shown with
    its objects, size and share of the bucket, the others summed, then the bucket's total. The counters' shard
    count is the deployed counter function's (IMGOPS_CAPACITY_SHARDS), else the default; the output says which."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        found = capacity_top.read_top(target, which=bucket, by=by, limit=limit)
    if as_json:
        typer.echo(json.dumps(found.view(), indent=2))
        return
    console.print(escape(found.headline()))
    if not found.owners:
        console.print("Nothing counted in this bucket.")
    else:
        console.print(_table(found))
    for note in found.notes():
        console.print(escape(note), style="dim")
