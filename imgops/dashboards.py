"""`imgops dashboards …`: the CDK app's CloudFormation, dashboards and alarms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from imgops.errors import command_errors, stderr
from imgops.options import AsJson, Region, StackName, StateFile
from monitoring.target import resolve_target
from pipeline.resources import ResourceNames

app = typer.Typer(help="The CDK app: CloudFormation template, dashboards and alarms.", no_args_is_help=True)
console = Console(highlight=False)


@app.callback()
def _group() -> None:
    """Subcommands: synth, render, bundle."""


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
        Literal["x86_64", "arm64"] | None,
        typer.Option(
            "--arch", help="Lambda architecture (selects the wheels) [default: the CDK app's].", show_default=False
        ),
    ] = None,
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

        context = {
            config.PREFIX: prefix,
            config.ARCHITECTURE: arch or config.AppConfig().architecture,
            config.SKIP_BUNDLING: "true" if skip_bundling else "false",
            config.METRICS_RATE_MINUTES: str(metrics_rate),
        }
        with console.status("Synthesizing (bundling Lambda code{})…".format("" if skip_bundling else " + pip")):
            summary = synthesize(context, outdir=out)
    for template in summary.templates:
        typer.echo(str(template))
    console.print(f"{summary.dashboards} dashboards, {summary.alarms} alarms", style="green")
    if skip_bundling:
        console.print("Bundles hold sources only (--skip-bundling): synthesize without it to deploy.", style="yellow")


@app.command()
def render(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the PNGs, their JSON sidecars and the HTML page.")
    ] = Path("dashboards-rendered"),
    period: Annotated[
        int | None,
        typer.Option(
            "--period",
            min=1,
            help="Seconds per datapoint for every widget [default: each widget's own, 300 s as deployed].",
        ),
    ] = None,
    hours: Annotated[float, typer.Option("--hours", min=0.05, max=24 * 15, help="Time range: the last N hours.")] = 3.0,
    stack_name: StackName = None,
    region: Region = "us-east-1",
    state_file: StateFile = None,
    template: Annotated[
        Path | None,
        typer.Option(
            "--template",
            exists=True,
            dir_okay=False,
            help="A synthesized template (cdk.out/Imgops.template.json) instead of synthesizing now.",
        ),
    ] = None,
    metrics_rate: Annotated[
        Literal[1, 5, 60], typer.Option("--metrics-rate", help="Bucket-metrics schedule to synthesize with (minutes).")
    ] = 5,
) -> None:
    """Draw the dashboards from the target's CloudWatch (the local stack by default): PNGs and an HTML page."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dashboards.render import RenderOptions
    from dashboards.render import render as draw
    from dashboards.template import physical_ids

    if period is not None and period not in (1, 5, 10, 30) and period % 60:
        stderr.print(
            f"[red]error:[/red] --period {period}: CloudWatch takes 1, 5, 10, 30 or a multiple of 60", soft_wrap=True
        )
        raise typer.Exit(1)
    with command_errors():
        target = resolve_target(stack_name=stack_name, region=region, state=state_file)
        body = _template(template, target.prefix, metrics_rate)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
        ) as progress:
            task = progress.add_task("Rendering…", total=None)
            result = draw(
                body,
                target.client("cloudwatch"),
                physical_ids(target),
                out,
                RenderOptions(hours=hours, period=period),
                on_step=lambda step: progress.update(task, description=step),
            )
    for dashboard in result.dashboards:
        typer.echo(str(dashboard.png))
        console.print(
            f"  {dashboard.name}: {dashboard.widgets} widgets, {dashboard.with_data} of {dashboard.metric_widgets} "
            f"graphs with data (details: {dashboard.sidecar.name})"
        )
    typer.echo(str(result.html))
    if result.unresolved:
        console.print(f"Tokens without a local value: {', '.join(result.unresolved)}", style="yellow")


@app.command()
def bundle(
    arch: Annotated[
        Literal["x86_64", "arm64"] | None,
        typer.Option("--arch", help="Lambda architecture [default: the CDK app's].", show_default=False),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Keep the bundles in this folder [default: a temporary one].")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Build the three Lambda bundles as a deploy would and check each loads on its runtime (size, libraries)."""
    import json
    import tempfile

    from dashboards.config import AppConfig
    from dashboards.lambda_bundle import BUNDLES, PYTHON_VERSION, build_bundle

    architecture = arch or AppConfig().architecture
    rows: list[dict[str, Any]] = []
    with command_errors(), tempfile.TemporaryDirectory(prefix="imgops-bundle-") as scratch:
        root = out or Path(scratch)
        for name, spec in BUNDLES.items():
            with console.status(f"pip: the {name} bundle for {architecture} (python{PYTHON_VERSION})…"):
                report = build_bundle(
                    root / name, packages=spec.packages, requirements=spec.requirements, architecture=architecture
                )
            if report is None:  # every bundle has requirements; a bundle without any is its sources
                continue
            rows.append(
                {
                    "bundle": name,
                    "architecture": architecture,
                    "python": PYTHON_VERSION,
                    "files": report.files,
                    "unzipped_bytes": report.unzipped_bytes,
                    "zipped_bytes": report.zipped_bytes(),
                    "native_files": len(report.native_files),
                    "newest_glibc": ".".join(map(str, report.newest_glibc)) if report.native_files else None,
                    "runtime_libraries": sorted(report.system_libraries),
                    "path": str(root / name) if out else None,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(box=None, title=f"Lambda bundles ({architecture}, python{PYTHON_VERSION}): all load")
    for column in ("bundle", "files", "unzipped", "zipped", "native", "glibc"):
        table.add_column(column, justify="left" if column == "bundle" else "right")
    for row in rows:
        table.add_row(
            str(row["bundle"]),
            f"{row['files']:,}",
            f"{int(row['unzipped_bytes']) / 2**20:.1f} MB",
            f"{int(row['zipped_bytes']) / 2**20:.1f} MB",
            str(row["native_files"]),
            row["newest_glibc"] or "-",
        )
    console.print(table)
    linked = sorted({library for row in rows for library in row["runtime_libraries"]})
    console.print(f"From the runtime: {', '.join(linked) or 'nothing'}", soft_wrap=False)
    if out:
        console.print(f"Bundles in {out}")


def _template(path: Path | None, prefix: str, metrics_rate: int) -> dict[str, Any]:
    """The given template, or the CDK app's for the local stack's prefix (names then match)."""
    from dashboards import config
    from dashboards.render import RenderError
    from dashboards.template import template_for

    with console.status("Reading the CDK app's dashboards…"):
        body = template_for(path, prefix, {config.METRICS_RATE_MINUTES: str(metrics_rate)})
    queues = {
        r.get("Properties", {}).get("QueueName")
        for r in body["Resources"].values()
        if r.get("Type") == "AWS::SQS::Queue"
    }
    expected = ResourceNames(prefix).work_queue
    if expected not in queues:
        raise RenderError(
            f"the template has no queue {expected!r}: it was synthesized for another prefix than the local "
            f"stack's ({prefix!r})"
        )
    return body
