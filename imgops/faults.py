"""`imgops faults …`: inject AWS errors, throttling and worker crashes into the running local stack."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from imgops.errors import command_errors
from localaws.faults import parse_rules, read_rules, write_rules
from monitoring.target import faults_file

app = typer.Typer(
    help="Fault injection for the local stack (its workers re-read the rules live).", no_args_is_help=True
)
console = Console(highlight=False)


@app.command("set")
def set_faults(
    rules: Annotated[
        str,
        typer.Argument(
            help="SERVICE:OPERATION=RATE:CODE[,…], e.g. dynamodb:PutItem=1:ProvisionedThroughputExceededException, "
            "sns:Publish=0.2:Throttling, s3:PutObject=0.01:SIGKILL (kills the worker mid-batch)."
        ),
    ],
) -> None:
    """Replace the fault rules."""
    with command_errors():
        parsed = parse_rules(rules)
        write_rules(faults_file(), parsed)
    console.print(f"{len(parsed)} fault rule(s) active: {rules}")


@app.command()
def clear() -> None:
    """Remove every fault rule."""
    with command_errors():
        write_rules(faults_file(), [])
    console.print("No fault rules active.")


@app.command()
def show() -> None:
    """Print the active fault rules."""
    rules = read_rules(faults_file())
    for rule in rules:
        console.print(f"{rule.service}:{rule.operation}={rule.rate}:{rule.code}")
    if not rules:
        console.print("No fault rules active.")
