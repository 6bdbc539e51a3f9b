"""`imgops alarms check`: which of the stack's alarms would be in ALARM right now, and why."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from rich.console import Console
from rich.table import Table

from loadtest import alarms as alarm_ops
from loadtest.cli.errors import command_errors
from loadtest.cli.target_options import AsJson, Region, StackName, StateFile
from loadtest.local import state
from loadtest.local.provision import local_session

app = typer.Typer(help="The CDK app's alarms, evaluated against the target's metrics.", no_args_is_help=True)
console = Console(highlight=False)

_STYLE = {"ALARM": "bold red", "OK": "green", "INSUFFICIENT_DATA": "yellow"}


def load_template(template: Path | None, prefix: str) -> dict[str, Any]:
    """The given template, or the CDK app synthesized in-process for this prefix (no bundling: only names matter)."""
    if template is not None:
        return dict(json.loads(template.read_text(encoding="utf-8")))
    from dashboards.app import synthesize

    with tempfile.TemporaryDirectory(prefix="imgops-synth-") as folder:
        summary = synthesize({"imgops:skip-bundling": "true", "imgops:prefix": prefix}, outdir=Path(folder))
        return dict(json.loads(summary.templates[0].read_text(encoding="utf-8")))


def evaluate_target(
    *,
    template: dict[str, Any],
    cloudwatch: Any,
    sns: Any | None,
    region: str,
    overrides: dict[str, str] | None = None,
    period: int | None = None,
    local: bool,
) -> list[alarm_ops.Evaluation]:
    """Evaluate every alarm; locally also keep their state in CloudWatch and notify the ops topic."""
    definitions = alarm_ops.alarms_from_template(template, overrides)
    topic_arns: dict[str, str] = {}
    if local and sns is not None:
        for topic in {t for d in definitions for t in d.action_topics}:
            topic_arns[topic] = sns.create_topic(Name=topic)["TopicArn"]  # idempotent: the local ops topic
    evaluations = []
    for definition in definitions:
        queried = definition
        if local and definition.stat.startswith("p"):
            # moto has no percentiles; the maximum is the conservative stand-in (noted in the reason).
            queried = replace(definition, stat="Maximum")
        evaluation = alarm_ops.decide(definition, alarm_ops.fetch_values(cloudwatch, queried, period=period))
        if queried is not definition:
            evaluation.reason += " (local: Maximum stands in for the percentile)"
        if definition.unresolved:
            evaluation.reason += f" (no local {', '.join(definition.unresolved)}: no data expected)"
        if local and sns is not None:
            alarm_ops.apply_locally(cloudwatch, sns, evaluation, topic_arns, region)
        evaluations.append(evaluation)
    return evaluations


@app.command()
def check(
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    template: Annotated[
        Path | None, typer.Option(help="A synthesized template (default: synthesize the CDK app in-process).")
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
        if stack_name:
            session = boto3.session.Session(region_name=region)
            resources = session.client("cloudformation").describe_stack_resources(StackName=stack_name)
            overrides = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources["StackResources"]}
            prefix = stack_name.removesuffix("-pipeline")
            evaluations = evaluate_target(
                template=load_template(template, prefix),
                cloudwatch=session.client("cloudwatch"),
                sns=None,
                region=region,
                overrides=overrides,
                period=period,
                local=False,
            )
        else:
            info = state.read_state(state_file)
            session = local_session(info.region)
            with console.status("Synthesizing the CDK app for its alarms…"):
                loaded = load_template(template, info.prefix)
            evaluations = evaluate_target(
                template=loaded,
                cloudwatch=session.client("cloudwatch", endpoint_url=info.endpoint_url),
                sns=session.client("sns", endpoint_url=info.endpoint_url),
                region=info.region,
                period=period,
                local=True,
            )
    if as_json:
        typer.echo(
            json.dumps([{"alarm": e.alarm.name, "state": e.state, "reason": e.reason} for e in evaluations], indent=2)
        )
        return
    table = Table("alarm", "state", "reason")
    for evaluation in evaluations:
        table.add_row(evaluation.alarm.name, f"[{_STYLE[evaluation.state]}]{evaluation.state}[/]", evaluation.reason)
    console.print(table)
    firing = [e.alarm.name for e in evaluations if e.state == "ALARM"]
    console.print(f"{len(firing)} alarm(s) in ALARM" + (f": {', '.join(firing)}" if firing else ""))
