"""`imgops dashboards …`: the CDK app's CloudFormation, dashboards and alarms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from loadtest.cli.errors import command_errors, stderr
from loadtest.local import state
from loadtest.local.provision import StackInfo
from pipeline.resources import ResourceNames

if TYPE_CHECKING:
    from dashboards.render import RenderOptions, RenderResult

app = typer.Typer(help="The CDK app: CloudFormation template, dashboards and alarms.", no_args_is_help=True)
console = Console(highlight=False)


@app.callback()
def _group() -> None:
    """Subcommands: synth, render."""


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
    state_file: Annotated[
        Path | None,
        typer.Option("--state-file", help="State file of a running local stack [default: ~/.imgops/local-stack.json]."),
    ] = None,
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
    """Draw the dashboards from the local stack's CloudWatch: a PNG per dashboard and one HTML page."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dashboards.errors import SynthError
    from dashboards.render import RenderError, RenderOptions

    if period is not None and period not in (1, 5, 10, 30) and period % 60:
        stderr.print(
            f"[red]error:[/red] --period {period}: CloudWatch takes 1, 5, 10, 30 or a multiple of 60", soft_wrap=True
        )
        raise typer.Exit(1)
    with command_errors():
        info = state.read_state(state_file)
        try:
            body = _template(template, info.prefix, metrics_rate)
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
            ) as progress:
                task = progress.add_task("Rendering…", total=None)
                result = _render(
                    body,
                    info,
                    out,
                    RenderOptions(hours=hours, period=period),
                    on_step=lambda step: progress.update(task, description=step),
                )
        except (RenderError, SynthError) as exc:
            stderr.print(f"[red]error:[/red] {exc}", soft_wrap=True)  # one line, however narrow the terminal
            raise typer.Exit(1) from None
    for dashboard in result.dashboards:
        typer.echo(str(dashboard.png))
        console.print(
            f"  {dashboard.name}: {dashboard.widgets} widgets, {dashboard.with_data} of {dashboard.metric_widgets} "
            f"graphs with data (details: {dashboard.sidecar.name})"
        )
    typer.echo(str(result.html))
    if result.unresolved:
        console.print(f"Tokens without a local value: {', '.join(result.unresolved)}", style="yellow")


def _template(path: Path | None, prefix: str, metrics_rate: int) -> dict[str, Any]:
    """The given template, or a fresh in-process synth for the local stack's prefix (names then match)."""
    from dashboards import config
    from dashboards.render import RenderError, load_template, synthesized_template

    if path is None:
        with console.status("Synthesizing the CDK app (no bundling, no cdk-nag)…"):
            body = synthesized_template({config.PREFIX: prefix, config.METRICS_RATE_MINUTES: str(metrics_rate)})
    else:
        body = load_template(path)
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


def _render(
    template: dict[str, Any], info: StackInfo, out: Path, options: RenderOptions, *, on_step: Callable[[str], None]
) -> RenderResult:
    from dashboards.render import PhysicalIds, render
    from loadtest.local.provision import local_session
    from loadtest.local.stack import LOCAL_API_ID

    names = ResourceNames(info.prefix)
    ids = PhysicalIds(
        region=info.region,
        stack_name=f"{info.prefix}-pipeline",
        api_id=LOCAL_API_ID,
        queue_urls={names.work_queue: info.queue_url, names.dead_letter_queue: info.dlq_url},
        topic_arns={names.notifications_topic: info.topic_arn},
        user_pool_id=info.user_pool_id,
        user_pool_client_id=info.user_pool_client_id,
    )
    cloudwatch = local_session(info.region).client("cloudwatch", endpoint_url=info.endpoint_url)
    return render(template, cloudwatch, ids, out, options, on_step=on_step)
