"""`imgops drill <alarm>` / `imgops drill all`: fire an alarm on the local stack, walk its runbook back to OK."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from drills.names import ALIASES, CAUSES
from imgops.errors import command_errors, stderr

if TYPE_CHECKING:
    from drills.framework import DrillOptions, DrillResult

app = typer.Typer(
    help="Rehearse each alarm's runbook on a time-compressed local stack: the alarm fires, the runbook's "
    "fix brings it back to OK, nothing is lost.",
    no_args_is_help=True,
)
console = Console(highlight=False)

Timeout = Annotated[float, typer.Option(min=10, help="Seconds each wait for images or queues may take.")]
TemplateOption = Annotated[
    Path | None,
    typer.Option(help="A synthesized template [default: the CDK app's, synthesized once and cached]."),
]


def _say(line: str) -> None:
    console.print(escape(line))


def _run(names: list[str], options: DrillOptions) -> list[DrillResult]:
    """Run the drills on one stack; a failed expectation ends the command with DRILL FAILED and exit 1."""
    from drills.catalogue import find  # the whole local stack: only when drilling
    from drills.framework import DrillFailed, run_drills

    with command_errors():
        try:
            return run_drills([find(name) for name in names], options, _say)
        except DrillFailed as exc:
            stderr.print(f"[red]DRILL FAILED:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None


def _options(timeout: float, template: Path | None, *, healthy: int = 8, poison: int = 4) -> DrillOptions:
    from drills.framework import DrillOptions

    return DrillOptions(timeout_seconds=timeout, template=template, healthy=healthy, poison=poison)


@app.command("all")
def all_drills(timeout: Timeout = 90.0, template: TemplateOption = None) -> None:
    """Every drill in a row on one local stack, then each one's time (runbooks/README.md says how long)."""
    results = _run(list(CAUSES), _options(timeout, template))
    console.print()
    for result in results:
        console.print(f"  {result.alarm:<36} {result.seconds:5.0f} s")
    total = sum(result.seconds for result in results)
    console.print(f"[green]DRILL PASSED[/green]: {len(results)} drills in {total:.0f} s, nothing lost.")


@app.command("dlq")
def dlq_drill(
    healthy: Annotated[int, typer.Option(min=1, max=200, help="Healthy uploads before the fault.")] = 8,
    poison: Annotated[int, typer.Option(min=1, max=100, help="Uploads that meet the injected throttle.")] = 4,
    timeout: Timeout = 90.0,
    template: TemplateOption = None,
) -> None:
    """The dlq-not-empty drill: throttle → DLQ → ALARM → inspect → fix → redrive → every image DONE → OK."""
    [result] = _run([ALIASES["dlq"]], _options(timeout, template, healthy=healthy, poison=poison))
    console.print(f"[green]DRILL PASSED[/green]: {escape(result.details)}")


def _drill_command(alarm: str, cause: str) -> Callable[..., None]:
    def command(timeout: Timeout = 90.0, template: TemplateOption = None) -> None:
        [result] = _run([alarm], _options(timeout, template))
        console.print(f"[green]DRILL PASSED[/green]: {escape(result.details)} ({result.seconds:.0f} s)")

    command.__doc__ = f"Cause: {cause}. Fire {alarm}, walk runbooks/{alarm}.md to OK."
    return command


for _alarm, _cause in CAUSES.items():
    app.command(_alarm)(_drill_command(_alarm, _cause))
