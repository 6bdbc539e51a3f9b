"""Options every on-call command shares: a deployed stack by name, or the running local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StackName = Annotated[
    str | None,
    typer.Option(
        "--stack-name",
        envvar="IMGOPS_STACK_NAME",
        help="A deployed imgops CloudFormation stack, e.g. imgops-pipeline [default: the running local stack]. "
        "Export IMGOPS_STACK_NAME once and every runbook command runs as written.",
    ),
]
Region = Annotated[str, typer.Option(envvar="AWS_REGION", help="Region of --stack-name.")]
StateFile = Annotated[
    Path | None, typer.Option("--state-file", help="State file of a running local stack [default: ~/.imgops].")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
