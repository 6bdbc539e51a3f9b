"""`imgops dashboards …`: the CDK app's CloudFormation, dashboards and alarms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from loadtest.cli.errors import command_errors, stderr

app = typer.Typer(help="The CDK app: CloudFormation template, dashboards and alarms.", no_args_is_help=True)
console = Console(highlight=False)


@app.callback()
def _group() -> None:
    """Keeps `synth` a named subcommand even while it is the only one."""


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Cloud assembly directory.")] = Path("cdk.out"),
    skip_bundling: Annotated[
        bool,
        typer.Option(
            "--skip-bundling",
            help="Bundle only the source packages, no pip install (offline, fast; not deployable).",
        ),
    ] = False,
    arch: Annotated[
        Literal["x86_64", "arm64"], typer.Option("--arch", help="Lambda architecture (selects the wheels).")
    ] = "arm64",
    metrics_rate: Annotated[
        Literal[1, 5, 60], typer.Option("--metrics-rate", help="Bucket-metrics scan every N minutes.")
    ] = 5,
    prefix: Annotated[str, typer.Option(help="Prefix of every resource name.")] = "imgops",
) -> None:
    """Synthesize the stack in-process (cdk-nag checks included) and say what it contains."""
    with command_errors():
        # Imported here: aws_cdk starts the jsii runtime, which every other imgops command can do without.
        from dashboards import config
        from dashboards.app import synthesize
        from dashboards.errors import SynthError

        context = {
            config.PREFIX: prefix,
            config.ARCHITECTURE: arch,
            config.SKIP_BUNDLING: "true" if skip_bundling else "false",
            config.METRICS_RATE_MINUTES: str(metrics_rate),
        }
        try:
            with console.status("Synthesizing (bundling Lambda code{})…".format("" if skip_bundling else " + pip")):
                summary = synthesize(context, outdir=out)
        except SynthError as exc:
            # Same one-line form as command_errors(), which does not know dashboards.errors.SynthError (yet).
            stderr.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    for template in summary.templates:
        typer.echo(str(template))
    console.print(f"{summary.dashboards} dashboards, {summary.alarms} alarms", style="green")
    if skip_bundling:
        console.print("Bundles hold sources only (--skip-bundling): synthesize without it to deploy.", style="yellow")
