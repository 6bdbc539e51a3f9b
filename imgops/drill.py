"""`imgops drill …`: rehearse a runbook end to end on the local stack."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from imgops.errors import command_errors, stderr

app = typer.Typer(help="Rehearse runbooks on a time-compressed local stack.", no_args_is_help=True)
console = Console(highlight=False)


@app.command("dlq")
def dlq_drill(
    healthy: Annotated[int, typer.Option(min=1, max=200, help="Healthy uploads before the fault.")] = 8,
    poison: Annotated[int, typer.Option(min=1, max=100, help="Uploads that meet the injected throttle.")] = 4,
    timeout: Annotated[float, typer.Option(min=10, help="Seconds each wait may take.")] = 90.0,
) -> None:
    """DLQ alarm drill: throttle → DLQ → ALARM → inspect → fix → redrive → every image DONE → OK."""
    from loadtest.drill import DrillFailed, DrillOptions, run_drill  # the whole local stack: only when drilling

    with command_errors():
        try:
            result = run_drill(DrillOptions(healthy=healthy, poison=poison, timeout_seconds=timeout), console.print)
        except DrillFailed as exc:
            stderr.print(f"[red]DRILL FAILED:[/red] {exc}")
            raise typer.Exit(1) from None
    console.print(
        f"[green]DRILL PASSED[/green]: {result['done']} of {result['images']} images DONE, "
        f"{result['redriven']} redriven from the DLQ, nothing lost."
    )
