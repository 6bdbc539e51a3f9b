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
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from imgops.errors import command_errors, stderr
from loadtest.corpus import DEFAULT_MIX, build_corpus, parse_mix, upload_plan
from loadtest.harness import RunOptions, RunState
from loadtest.local.stack import LocalStack, LocalStackOptions
from loadtest.runner import STACK_LOG, RunResult, execute_run, new_run_id
from loadtest.targets import LoadTarget, aws_load_target, sink_target
from monitoring.target import NoLocalStack, StackInfo, for_local, running_stack, state_dir

app = typer.Typer(help="Load-test the pipeline: thousands of images, throughput, latency, cost.", no_args_is_help=True)
console = Console(highlight=False)


class TargetKind(StrEnum):
    local = "local"
    aws = "aws"


def default_cache_dir() -> Path:
    return state_dir() / "corpus"


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
    with command_errors():
        images = build_corpus(
            mix=parse_mix(mix), count=corpus_size, seed=seed, cache_dir=cache_dir or default_cache_dir()
        )
    folders = {image.path.parent for image in images}
    table = Table("file", "kind", "size", "bytes", "EXIF orientation")
    table.columns[0].overflow = "fold"  # names whole, folded at the edge rather than cut
    for image in images:
        table.add_row(
            escape(image.path.name if len(folders) == 1 else str(image.path)),
            image.kind,
            f"{image.width}×{image.height}",
            f"{image.size_bytes:,}",
            str(image.orientation),
        )
    if len(folders) == 1:
        console.print(f"Corpus in {escape(str(folders.pop()))}:")
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
    stack_name: Annotated[str, typer.Option(help="CloudFormation stack, with --target aws.")] = "imgops-pipeline",
    region: Annotated[str, typer.Option(envvar="AWS_REGION", help="AWS region, with --target aws.")] = "us-east-1",
    username: Annotated[str, typer.Option(envvar="IMGOPS_USERNAME", help="Cognito user, with --target aws.")] = "",
    password: Annotated[str, typer.Option(envvar="IMGOPS_PASSWORD", help="Cognito password, with --target aws.")] = "",
    timeout: Annotated[
        float, typer.Option(min=1, help="Stop after this many seconds and report what is outstanding.")
    ] = 900,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Do not wait for results: measures the upload path only.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes if an embedded stack is started [default: cores]."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Runs are written to OUT/<run id>/.")] = Path("runs"),
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.imgops/corpus].")] = None,
) -> None:
    """Push IMAGES uploads through the pipeline; print a summary and write a run folder with report.html."""
    options = RunOptions(concurrency=concurrency, rate=rate, timeout_seconds=timeout, wait_for_results=not no_wait)
    with command_errors():
        weights = parse_mix(mix)
        with console.status("Preparing the corpus (generated once, then cached)…"):
            files = build_corpus(mix=weights, count=corpus_size, seed=seed, cache_dir=cache_dir or default_cache_dir())
        plan = upload_plan(files, weights, images, seed)
        run_id = new_run_id()  # now: an embedded stack writes its log into the run folder from the start
        stack_log = out / run_id / STACK_LOG
        with _target(target, stack_name, region, username, password, workers, stack_log) as resolved:
            result = _run_with_progress(resolved, plan, options, out, region, run_id)
    _print_summary(result)


@contextlib.contextmanager
def _target(
    kind: TargetKind,
    stack_name: str,
    region: str,
    username: str,
    password: str,
    workers: int | None,
    stack_log: Path | None = None,
) -> Iterator[LoadTarget]:
    """The stack to load; an embedded one started here writes its output (worker REPORT lines, logs) to
    `stack_log`, if given, rather than into the progress display."""
    if kind is TargetKind.aws:
        yield aws_load_target(stack_name=stack_name, region=region, username=username, password=password)
        return
    try:
        info: StackInfo | None = running_stack()
    except NoLocalStack:
        info = None
    if info is not None:
        console.print(f"Using the running local stack at {info.api_url}.")
        yield LoadTarget(for_local(info), info.demo_username, info.demo_password)
        return
    stack = LocalStack(LocalStackOptions(workers=workers or (os.cpu_count() or 2), log_file=stack_log))
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with console.status("No local stack is running: starting an embedded one…"):
            info = stack.start()
        workers_text = "1 worker" if stack.options.workers == 1 else f"{stack.options.workers} workers"
        console.print(f"Embedded local stack up ({workers_text}); it stops when the run ends.")
        if stack_log is not None:
            console.print(f"Its output (worker REPORT lines, logs): {escape(str(stack_log))}")
        yield LoadTarget(for_local(info), info.demo_username, info.demo_password)
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _run_with_progress(
    target: LoadTarget, plan: list[Any], options: RunOptions, out: Path, region: str, run_id: str
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
                detail=f"done {done} · failed {failed} · in flight {counts.get('UPLOADED', 0)} · {rate:.1f} images/s",
            )

        try:
            return execute_run(
                target=target, plan=plan, options=options, out_dir=out, region=region, on_tick=tick, run_id=run_id
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
        table.add_row(stage, *(_fmt(row[k]) for k in ("p50", "p90", "p99", "max")), str(int(row["count"] or 0)))
    console.print(table)
    worker = summary["worker"]
    if worker.get("invocations"):
        console.print(
            f"worker: {worker['invocations']} invocations · duration p50 {worker['duration_ms']['p50']} ms, "
            f"p99 {worker['duration_ms']['p99']} ms · billed p50 {worker['billed_ms_p50']} ms · "
            f"max memory used {worker['max_memory_used_mb']} of {worker['memory_size_mb']} MB"
        )
    for reason, count in summary["errors"].items():
        console.print(f"[yellow]{count} × {escape(reason)}[/yellow]")
    console.print(f"cost ≈ ${summary['cost_per_1000_images_usd']} per 1,000 images (see cost.csv)")
    console.print(f"report: {escape(str(result.folder / 'report.html'))}")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


class Strategy(StrEnum):
    cost = "cost"
    speed = "speed"
    balanced = "balanced"


class Architecture(StrEnum):
    x86_64 = "x86_64"
    arm64 = "arm64"


def _memory_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected comma-separated megabytes, e.g. 512,1024,1769") from None
    if not sizes or sizes[0] < 128 or sizes[-1] > 10240:
        raise typer.BadParameter("Lambda memory sizes are 128 to 10,240 MB")
    return sizes


@app.command()
def sizing(
    memory: Annotated[str, typer.Option(help="Memory sizes to evaluate, MB.")] = "128,256,512,1024,1536,1769,3008",
    arch: Annotated[Architecture, typer.Option(help="Lambda architecture (prices differ).")] = Architecture.x86_64,
    strategy: Annotated[Strategy, typer.Option(help="Which recommendation to lead with.")] = Strategy.balanced,
    sample: Annotated[int, typer.Option(min=1, max=500, help="Images from the corpus to run the worker on.")] = 12,
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    target: Annotated[
        TargetKind, typer.Option(help="local: measure here and model; aws: set the real function.")
    ] = TargetKind.local,
    stack_name: Annotated[str, typer.Option(help="CloudFormation stack, with --target aws.")] = "imgops-pipeline",
    region: Annotated[str, typer.Option(envvar="AWS_REGION", help="Region of the price table / stack.")] = "us-east-1",
    username: Annotated[str, typer.Option(envvar="IMGOPS_USERNAME", help="Cognito user, with --target aws.")] = "",
    password: Annotated[str, typer.Option(envvar="IMGOPS_PASSWORD", help="Cognito password, with --target aws.")] = "",
    out: Annotated[Path, typer.Option(help="Results go to OUT/sizing-<id>/.")] = Path("runs"),
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.imgops/corpus].")] = None,
) -> None:
    """Recommend the worker's memory size: cost, speed and balanced, like AWS Lambda Power Tuning."""
    from loadtest.cost import load_prices
    from loadtest.runner import new_run_id
    from loadtest.sizing import aws_sizing, recommend
    from loadtest.sizing_report import write_sizing

    sizes = _memory_sizes(memory)
    with command_errors():
        prices = load_prices(region)
        gb_second = prices["lambda"]["gb_second"][arch.value]
        per_request = prices["lambda"]["per_million_requests"] / 1e6
        weights = parse_mix(mix)
        files = build_corpus(mix=weights, count=max(sample, 4), seed=seed, cache_dir=cache_dir or default_cache_dir())
        plan = upload_plan(files, weights, sample, seed)
        if target is TargetKind.aws:
            resolved = aws_load_target(stack_name=stack_name, region=region, username=username, password=password)

            def run_batch() -> float:
                options = RunOptions(timeout_seconds=300)
                result = execute_run(target=resolved, plan=plan, options=options, out_dir=out, region=region)
                return float(result.frame["started_at"].min())

            with console.status("Setting the deployed worker to each memory size and sending a batch…"):
                table = aws_sizing(resolved, sizes, run_batch, gb_second=gb_second, per_request=per_request)
            notes = ["All figures measured on AWS from the worker's REPORT lines (per invocation)."]
            measured: dict[str, Any] = {}
            raw: list[dict[str, Any]] = []
        else:
            table, measured, notes, raw = _local_sizing(plan, sizes, gb_second, per_request)
        recommendations = recommend(table)
        folder = out / f"sizing-{new_run_id()}"
        folder.mkdir(parents=True, exist_ok=True)
        write_sizing(
            folder,
            table=table,
            recommendations=recommendations,
            measured=measured,
            notes=notes,
            arch=arch.value,
            measurements=raw,
        )
    _print_sizing(table, recommendations, strategy.value, measured, notes, folder)


def _local_sizing(
    plan: list[Any], sizes: tuple[int, ...], gb_second: float, per_request: float
) -> tuple[Any, dict[str, Any], list[str], list[dict[str, Any]]]:
    from loadtest.sizing import local_sizing

    with _target(TargetKind.local, "", "us-east-1", "", "", 1) as resolved:
        status = console.status("Measuring…")
        with status:
            return local_sizing(
                resolved.stack, plan, sizes, gb_second=gb_second, per_request=per_request, on_step=status.update
            )


def _print_sizing(
    table: Any,
    recommendations: dict[str, int],
    lead: str,
    measured: dict[str, Any],
    notes: list[str],
    folder: Path,
) -> None:
    view = Table("memory MB", "p50 ms", "p95 ms", "billed ms", "$ / 1,000 images", "OOM")
    for memory, row in table.iterrows():
        style = "bold green" if memory == recommendations[lead] else ""
        view.add_row(
            str(memory),
            f"{row['duration_p50_ms']:,.0f}",
            f"{row['duration_p95_ms']:,.0f}",
            f"{row['billed_ms_mean']:,.0f}",
            f"{row['cost_per_1000_images_usd']:.5f}",
            str(row["oom"]),
            style=style,
        )
    console.print(view)
    if measured:
        console.print("measured: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in measured.items()))
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    console.print(
        f"recommended ({lead}): [bold]{recommendations[lead]} MB[/bold] · "
        + " · ".join(f"{name} {mb} MB" for name, mb in recommendations.items())
    )
    console.print(f"report: {escape(str(folder / 'report.html'))}")


@app.command()
def selfcheck(
    images: Annotated[int, typer.Option(min=1, max=100_000, help="Uploads to send to the sink.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="Uploads in flight at once.")] = 32,
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    corpus_size: CorpusSize = 24,
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.imgops/corpus].")] = None,
) -> None:
    """How fast the harness alone can push uploads: against a do-nothing loopback sink instead of AWS."""
    from loadtest.harness import LoadTest
    from loadtest.sink import UploadSink

    with command_errors():
        weights = parse_mix(mix)
        files = build_corpus(mix=weights, count=corpus_size, seed=seed, cache_dir=cache_dir or default_cache_dir())
        plan = upload_plan(files, weights, images, seed)
        with UploadSink() as sink:
            options = RunOptions(concurrency=concurrency, wait_for_results=False)
            state = LoadTest(sink_target(sink.url), plan, options).run()
    counts = state.counts()
    elapsed = max(1e-9, (state.finished or time.time()) - state.started)
    sent = counts.get("SENT", 0)
    megabytes = sum(r.bytes_in for r in state.records if r.status == "SENT") / 1e6
    console.print(
        f"harness self-check: {sent} of {images} uploads in {elapsed:.2f} s = "
        f"[bold]{sent / elapsed:.0f} uploads/s[/bold]"
        f", {megabytes / elapsed:.0f} MB/s ({concurrency} in flight; errors {counts.get('UPLOAD_ERROR', 0)})"
    )
    if counts.get("UPLOAD_ERROR"):
        raise typer.Exit(1)
