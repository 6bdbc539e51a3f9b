"""`imgops alarms check`: which of the stack's alarms would be in ALARM right now, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dashboards import alarms as alarm_ops
from dashboards.template import template_for
from imgops.errors import command_errors
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring.target import resolve_target

app = typer.Typer(help="The CDK app's alarms, evaluated against the target's metrics.", no_args_is_help=True)
console = Console(highlight=False)

_STYLE = {"ALARM": "bold red", "OK": "green", "INSUFFICIENT_DATA": "yellow"}


@app.callback()
def _group() -> None:
    """Keeps `check` a named subcommand."""


@app.command()
def check(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    template: Annotated[
        Path | None,
        typer.Option(help="A synthesized template [default: the CDK app's, synthesized once and cached]."),
    ] = None,
    period: Annotated[
        int | None,
        typer.Option(min=1, help="Evaluate with this period (seconds) instead of the alarm's: time-compressed drills."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate each alarm (threshold, comparison, statistic, period, M of N, missing data); on the local stack
    also set its state in CloudWatch and publish the alarm message to the ops topic, as AWS would."""
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        with console.status("Reading the CDK app's alarms…"):
            loaded = template_for(template, target.prefix)
        evaluations = alarm_ops.check(loaded, target, period=period)
    if as_json:
        typer.echo(
            json.dumps([{"alarm": e.alarm.name, "state": e.state, "reason": e.reason} for e in evaluations], indent=2)
        )
        return
    table = Table("alarm", "state", "reason")
    for evaluation in evaluations:
        table.add_row(
            escape(evaluation.alarm.name),
            f"[{_STYLE[evaluation.state]}]{evaluation.state}[/]",
            escape(evaluation.reason),
        )
    console.print(table)
    firing = [e.alarm.name for e in evaluations if e.state == "ALARM"]
    console.print(escape(f"{len(firing)} alarm(s) in ALARM" + (f": {', '.join(firing)}" if firing else "")))


@app.command("test")
def scenarios(
    template: Annotated[
        Path | None,
        typer.Option(help="A synthesized template [default: the CDK app's, synthesized once and cached]."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run the alarm scenarios (a failing worker, a 5xx burst, a quiet night and more) against the CDK app's
    alarms: each must fire within its time, and stay quiet where nothing is wrong. Exit 1 on a failure."""
    from dashboards.scenarios import run_all

    with command_errors():
        with console.status("Reading the CDK app's alarms…"):
            loaded = template_for(template, "imgops")
        outcomes = run_all(loaded)
    problems = [problem for outcome in outcomes for problem in outcome.problems()]
    if as_json:
        rows = [
            {
                "scenario": o.scenario.name,
                "story": o.scenario.story,
                "must_fire_within_minutes": dict(o.scenario.must_fire),
                "fired_after_minutes": {slug: minute for slug, minute in o.first_alarm.items() if minute is not None},
                "problems": o.problems(),
            }
            for o in outcomes
        ]
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table("scenario", "fires (minutes after it starts)", "result")
        for outcome in outcomes:
            fired = [f"{slug} ({minute})" for slug, minute in outcome.first_alarm.items() if minute is not None]
            verdict = "[red]FAIL[/red]" if outcome.problems() else "[green]ok[/green]"
            table.add_row(escape(outcome.scenario.name), escape(", ".join(fired) or "nothing"), verdict)
        console.print(table)
        for problem in problems:
            console.print(f"[red]✗[/red] {escape(problem)}")
    if problems:
        raise typer.Exit(1)
