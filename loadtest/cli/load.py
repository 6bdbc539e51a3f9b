"""`imgops loadtest …`: push many images through the pipeline and measure it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtest.cli.errors import command_errors, stderr
from loadtest.corpus import DEFAULT_MIX, CorpusError, build_corpus, parse_mix, upload_plan
from loadtest.harness import RunOptions, RunState
from loadtest.local import state as local_state
from loadtest.local.stack import LocalStack, LocalStackOptions
from loadtest.runner import RunResult, execute_run
from loadtest.targets import Target, TargetError, aws_target, local_target, running_local_stack

app = typer.Typer(
    help="Load-test the pipeline: thousands of images, throughput, latency, cost.", no_args_is_help=True
)
console = Console(highlight=False)


class TargetKind(StrEnum):
    local = "local"
    aws = "aws"


def default_cache_dir() -> Path:
    return local_state.state_dir() / "corpus"


Mix = Annotated[str, typer.Option(help="Share of each kind: jpeg12mp, jpeg1080, png (alpha), webp.")]
Seed = Annotated[int, typer.Option(help="Seed: the same seed and mix give the same bytes.")]
CorpusSize = Annotated[
    int, typer.Option(min=1, max=1000, help="Distinct files generated (uploads cycle through them).")
]


@app.command()
def corpus(
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    corpus_size: CorpusSize = 24,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where generated files are kept [default: ~/.imgops/corpus].")
    ] = None,
) -> None:
    """Generate (or find cached) the upload corpus and list it."""
    with command_errors(), _corpus_errors():
        images = build_corpus(
            mix=parse_mix(mix), count=corpus_size, seed=seed, cache_dir=cache_dir or default_cache_dir()
        )
    table = Table("file", "kind", "size", "bytes", "EXIF orientation")
    for image in images:
        table.add_row(
            str(image.path),
            image.kind,
            f"{image.width}×{image.height}",
            f"{image.size_bytes:,}",
            str(image.orientation),
        )
    console.print(table)


@app.command()
def run(
    images: Annotated[int, typer.Option(min=1, max=1_000_000, help="Uploads to send.")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="Uploads in flight at once.")] = 16,
    rate: Annotated[
        float | None, typer.Option(min=0.01, help="Open-loop upload rate, images/s (default: closed loop).")
    ] = None,
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    corpus_size: CorpusSize = 24,
    target: Annotated[
        TargetKind,
        typer.Option(help="local: the embedded stack (started if none runs); aws: a deployed stack."),
    ] = TargetKind.local,
    stack_name: Annotated[str, typer.Option(help="CloudFormation stack name, with --target aws.")] = "imgops",
    region: Annotated[
        str, typer.Option(envvar="AWS_REGION", help="AWS region, with --target aws.")
    ] = "us-east-1",
    username: Annotated[
        str, typer.Option(envvar="IMGOPS_USERNAME", help="Cognito user, with --target aws.")
    ] = "",
    password: Annotated[
        str, typer.Option(envvar="IMGOPS_PASSWORD", help="Cognito password, with --target aws.")
    ] = "",
    timeout: Annotated[
        float, typer.Option(min=1, help="Stop after this many seconds and report what is outstanding.")
    ] = 900,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Do not wait for results: measures the upload path only.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=0, max=64, help="Worker processes if an embedded stack is started [default: cores]."
        ),
    ] = 0,
    out: Annotated[Path, typer.Option(help="Runs are written to OUT/<run id>/.")] = Path("runs"),
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.imgops/corpus].")] = None,
) -> None:
    """Push IMAGES uploads through the pipeline; print a summary and write a run folder with report.html."""
    options = RunOptions(
        concurrency=concurrency, rate=rate, timeout_seconds=timeout, wait_for_results=not no_wait
    )
    with command_errors(), _corpus_errors():
        weights = parse_mix(mix)
        with console.status("Preparing the corpus (generated once, then cached)…"):
            files = build_corpus(
                mix=weights, count=corpus_size, seed=seed, cache_dir=cache_dir or default_cache_dir()
            )
        plan = upload_plan(files, weights, images, seed)
        with _target(target, stack_name, region, username, password, workers) as resolved:
            result = _run_with_progress(resolved, plan, options, out, region)
    _print_summary(result)


@contextlib.contextmanager
def _corpus_errors() -> Iterator[None]:
    try:
        yield
    except (CorpusError, TargetError) as exc:
        stderr.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@contextlib.contextmanager
def _target(
    kind: TargetKind, stack_name: str, region: str, username: str, password: str, workers: int
) -> Iterator[Target]:
    if kind is TargetKind.aws:
        yield aws_target(stack_name=stack_name, region=region, username=username, password=password)
        return
    info = running_local_stack()
    if info is not None:
        console.print(f"Using the running local stack at {info.api_url}.")
        yield local_target(info)
        return
    with console.status("No local stack is running: starting an embedded one…"):
        stack = LocalStack(LocalStackOptions(workers=workers or (os.cpu_count() or 2)))
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        info = stack.start()
        console.print(
            f"Embedded local stack up ({stack.options.workers} workers); it stops when the run ends."
        )
        yield local_target(info)
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _run_with_progress(
    target: Target, plan: list[Any], options: RunOptions, out: Path, region: str
) -> RunResult:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    total = len(plan)
    with progress:
        uploaded = progress.add_task("uploaded", total=total, detail="")
        finished = progress.add_task("finished", total=total, detail="", visible=options.wait_for_results)

        def tick(state: RunState) -> None:
            counts = state.counts()
            sent = sum(counts.get(s, 0) for s in ("UPLOADED", "SENT", "DONE", "FAILED"))
            done, failed = counts.get("DONE", 0), counts.get("FAILED", 0)
            rate = (done + failed) / max(1e-9, time.time() - state.started)
            progress.update(
                uploaded,
                completed=sent + counts.get("UPLOAD_ERROR", 0),
                detail=f"upload errors {counts.get('UPLOAD_ERROR', 0)}",
            )
            progress.update(
                finished,
                completed=done + failed,
                detail=f"done {done} · failed {failed} · in flight {counts.get('UPLOADED', 0)}"
                f" · {rate:.1f} images/s",
            )

        try:
            return execute_run(
                target=target, plan=plan, options=options, out_dir=out, region=region, on_tick=tick
            )
        except KeyboardInterrupt:
            stderr.print("interrupted: no report written")
            raise typer.Exit(130) from None


def _print_summary(result: RunResult) -> None:
    summary = result.summary
    console.print(
        f"\n[bold]Run {summary['run_id']}[/bold] on {summary['target']}: "
        + ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    )
    console.print(
        f"throughput {summary['throughput_images_per_s']} images/s · "
        f"uploads {summary['upload_images_per_s']} images/s, "
        f"{summary['upload_mb_per_s']} MB/s · {summary['duration_s']} s"
    )
    table = Table("stage (ms)", "p50", "p90", "p99", "max", "n")
    for stage, row in summary["latency_ms"].items():
        table.add_row(
            stage, *(_fmt(row[k]) for k in ("p50", "p90", "p99", "max")), str(int(row["count"] or 0))
        )
    console.print(table)
    worker = summary["worker"]
    if worker.get("invocations"):
        console.print(
            f"worker: {worker['invocations']} invocations · duration p50 {worker['duration_ms']['p50']} ms, "
            f"p99 {worker['duration_ms']['p99']} ms · billed p50 {worker['billed_ms_p50']} ms · "
            f"max memory used {worker['max_memory_used_mb']} of {worker['memory_size_mb']} MB"
        )
    for reason, count in summary["errors"].items():
        console.print(f"[yellow]{count} × {reason}[/yellow]")
    console.print(f"cost ≈ ${summary['cost_per_1000_images_usd']} per 1,000 images (see cost.csv)")
    console.print(f"report: {result.folder / 'report.html'}")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"
