"""`imgops loadtest …`: push many images through the pipeline and measure it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from imgops.errors import command_errors, stderr
from loadtest.corpus import DEFAULT_MIX
from loadtest.corpus import default_cache_dir as corpus_cache_dir

if TYPE_CHECKING:
    from loadtest.harness import RunOptions
    from loadtest.runner import RunResult
    from loadtest.targets import LoadTarget

app = typer.Typer(help="Load-test the pipeline: thousands of images, throughput, latency, cost.", no_args_is_help=True)
console = Console(highlight=False)


class TargetKind(StrEnum):
    local = "local"
    aws = "aws"


Mix = Annotated[str, typer.Option(help="Share of each kind: jpeg12mp, jpeg1080, png (alpha), webp, heic12mp, avif.")]
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
        Path | None, typer.Option(help="Where generated files are kept [default: ~/.cache/imgops/corpus].")
    ] = None,
) -> None:
    """Generate (or find cached) the upload corpus and list it."""
    from loadtest.corpus import build_corpus, parse_mix

    with command_errors():
        images = build_corpus(
            mix=parse_mix(mix), count=corpus_size, seed=seed, cache_dir=cache_dir or corpus_cache_dir()
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
    images: Annotated[
        int | None,
        typer.Option(min=1, max=1_000_000, help="Uploads to send [default: 1000; with --stages: at most this many]."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=512, help="Uploads in flight at once (open model: the most at once).")
    ] = 16,
    rate: Annotated[
        float | None, typer.Option(min=0.01, help="Open-loop upload rate, images/s (default: closed loop).")
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            help="Open-loop ramps, e.g. 30s:2/s,60s:20/s,30s:0/s: the start rate goes linearly from the previous "
            "target (0 at first) to each stage's over its duration; the stages set the number of uploads."
        ),
    ] = None,
    max_lag: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Open loop: a start that cannot begin this many seconds after its intended time (no upload slot "
            "free) is dropped, not sent late [default: 1].",
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            help="Pass/fail over the summary, repeatable: e2e_p99<5s, upload_p95<800ms, failed_rate<1%, "
            "throughput>8/s, cost_per_1000<0.10 (`imgops loadtest thresholds` lists them). A breach exits 99."
        ),
    ] = None,
    thresholds_file: Annotated[
        Path | None,
        typer.Option(help="Thresholds kept in a file (TOML or JSON; see loadtest/thresholds.example.toml)."),
    ] = None,
    abort_on_fail: Annotated[
        bool, typer.Option("--abort-on-fail", help="Stop the run at the first breach (checked every second).")
    ] = False,
    abort_delay: Annotated[
        float | None, typer.Option(min=0, help="With --abort-on-fail: judge nothing before this many seconds.")
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write the thresholds as JUnit XML here (for CI).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print summary.json on stdout (progress goes to stderr).")
    ] = False,
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
        float | None,
        typer.Option(
            min=1,
            help="Stop after this many seconds and report what is outstanding [default: 900, plus the stages' "
            "length with --stages or --rate].",
        ),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Do not wait for results: measures the upload path only.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes if an embedded stack is started [default: cores]."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Runs are written to OUT/<run id>/.")] = Path("runs"),
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.cache/imgops/corpus].")] = None,
) -> None:
    """Push IMAGES uploads through the pipeline; print a summary and write a run folder with report.html.

    Exits 99 when a threshold is breached (naming it and what was observed), 0 otherwise.
    """
    from loadtest.corpus import build_corpus, parse_mix, upload_plan
    from loadtest.harness import RunOptions
    from loadtest.runner import STACK_LOG, new_run_id
    from loadtest.stages import parse_stages
    from loadtest.thresholds import THRESHOLDS_EXIT_CODE, threshold_set

    if rate is not None and stages is not None:
        raise typer.BadParameter("--rate is one constant stage: give --rate or --stages, not both")
    out_console = Console(stderr=True, highlight=False) if as_json else console
    with command_errors():
        schedule = parse_stages(stages) if stages is not None else None
        count = min(images or schedule.count(), schedule.count()) if schedule is not None else images or 1000
        gates = threshold_set(
            threshold or [], file=thresholds_file, abort_on_fail=abort_on_fail, abort_delay_s=abort_delay or 0.0
        )
        options = RunOptions(
            concurrency=concurrency,
            rate=rate,
            schedule=schedule,
            max_lag_seconds=1.0 if max_lag is None else max_lag,
            timeout_seconds=timeout or 900 + (schedule.duration_s if schedule else count / rate if rate else 0),
            wait_for_results=not no_wait,
        )
        weights = parse_mix(mix)
        with out_console.status("Preparing the corpus (generated once, then cached)…"):
            files = build_corpus(mix=weights, count=corpus_size, seed=seed, cache_dir=cache_dir or corpus_cache_dir())
        plan = upload_plan(files, weights, count, seed)
        run_id = new_run_id()  # now: an embedded stack writes its log into the run folder from the start
        stack_log = out / run_id / STACK_LOG
        with _target(target, stack_name, region, username, password, workers, stack_log, out_console) as resolved:
            result = _run_with_progress(resolved, plan, options, out, region, run_id, gates, junit, out_console)
    if as_json:
        import json

        print(json.dumps(result.summary, indent=2))
    else:
        _print_summary(result)
    if result.breached:
        for verdict in result.breached:
            stderr.print(f"[red]threshold breached:[/red] {escape(verdict.message)}")
        raise typer.Exit(THRESHOLDS_EXIT_CODE)


@contextlib.contextmanager
def _target(
    kind: TargetKind,
    stack_name: str,
    region: str,
    username: str,
    password: str,
    workers: int | None,
    stack_log: Path | None = None,
    out: Console | None = None,
) -> Iterator[LoadTarget]:
    """The stack to load; an embedded one started here writes its output (worker REPORT lines, logs) to
    `stack_log`, if given, rather than into the progress display. Messages go to `out` (default: stdout)."""
    from loadtest.targets import LoadTarget, aws_load_target
    from localaws.stack import LocalStack, LocalStackOptions
    from monitoring.target import NoLocalStack, StackInfo, for_local, running_stack

    out = out or console
    if kind is TargetKind.aws:
        yield aws_load_target(stack_name=stack_name, region=region, username=username, password=password)
        return
    try:
        info: StackInfo | None = running_stack()
    except NoLocalStack:
        info = None
    if info is not None:
        out.print(f"Using the running local stack at {info.api_url}.")
        yield LoadTarget(for_local(info), info.demo_username, info.demo_password)
        return
    stack = LocalStack(LocalStackOptions(workers=workers or (os.cpu_count() or 2), log_file=stack_log))
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with out.status("No local stack is running: starting an embedded one…"):
            info = stack.start()
        workers_text = "1 worker" if stack.options.workers == 1 else f"{stack.options.workers} workers"
        out.print(f"Embedded local stack up ({workers_text}); it stops when the run ends.")
        if stack_log is not None:
            out.print(f"Its output (worker REPORT lines, logs): {escape(str(stack_log))}")
        yield LoadTarget(for_local(info), info.demo_username, info.demo_password)
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _run_with_progress(
    target: LoadTarget,
    plan: list[Any],
    options: RunOptions,
    out: Path,
    region: str,
    run_id: str,
    thresholds: Any = None,
    junit: Path | None = None,
    display: Console | None = None,
) -> RunResult:
    from loadtest.harness import RunState
    from loadtest.runner import execute_run

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=12),  # room at 80 columns for the counts and the detail
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=display or console,
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
            dropped = counts.get("DROPPED", 0)
            progress.update(
                uploaded,
                completed=sent + counts.get("UPLOAD_ERROR", 0) + dropped,
                detail=f"upload errors {counts.get('UPLOAD_ERROR', 0)}" + (f" · dropped {dropped}" if dropped else ""),
            )
            progress.update(
                finished,
                completed=done + failed,
                detail=f"done {done} · failed {failed} · in flight {counts.get('UPLOADED', 0)} · {rate:.1f} images/s",
            )

        try:
            return execute_run(
                target=target,
                plan=plan,
                options=options,
                out_dir=out,
                region=region,
                on_tick=tick,
                run_id=run_id,
                thresholds=thresholds,
                junit=junit,
            )
        except KeyboardInterrupt:
            stderr.print("interrupted: no report written")
            raise typer.Exit(130) from None


def _print_summary(result: RunResult) -> None:
    from loadtest.thresholds import format_ms

    summary = result.summary
    console.print(
        f"\n[bold]Run {summary['run_id']}[/bold] on {summary['target']}: "
        + ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    )
    console.print(
        f"throughput {summary['throughput_images_per_s']:,} images/s · "
        f"uploads {summary['upload_images_per_s']:,} images/s, "
        f"{summary['upload_mb_per_s']:,} MB/s · {summary['duration_s']:,} s"
    )
    starts = summary["starts"]
    if summary["model"] == "open":
        console.print(
            f"starts: target {starts['target_rate_per_s']:,}/s, achieved {starts['achieved_rate_per_s'] or 0:,}/s"
            f" · late {starts['late']:,} (> {starts['late_after_ms']:g} ms)"
            f" · dropped {starts['dropped']:,} (> {starts['max_lag_ms'] / 1000:g} s)"
        )
        _print_timeline(summary["timeline"])
    if summary.get("aborted"):
        console.print(f"[red]{escape(summary['aborted'])}[/red]")
    table = Table("stage", "from", "p50", "p90", "p99", "max", "n", title="Stage latency (HDR, 3 digits)")
    for stage, views in summary["stages_ms"].items():
        for view in ("intended", "actual"):
            row = views[view]
            cells = (format_ms(row[k]) if row[k] is not None else "–" for k in ("p50", "p90", "p99", "max"))
            table.add_row(stage if view == "intended" else "", view, *cells, f"{int(row['count'] or 0):,}")
    console.print(table)
    components = Table("component", "p50", "p90", "p99", "max", "n")
    for stage, row in summary["latency_ms"].items():
        cells = (format_ms(row[k]) if row[k] is not None else "–" for k in ("p50", "p90", "p99", "max"))
        components.add_row(stage, *cells, f"{int(row['count'] or 0):,}")
    console.print(components)
    worker = summary["worker"]
    if worker.get("invocations"):
        console.print(
            f"worker: {worker['invocations']:,} invocations · duration p50 {format_ms(worker['duration_ms']['p50'])}"
            f", p99 {format_ms(worker['duration_ms']['p99'])} · billed p50 {format_ms(worker['billed_ms_p50'])}"
        )
        console.print(
            f"worker memory: max used {worker['max_memory_used_mb']:,} of {worker['memory_size_mb']:,} MB · "
            f"cold starts {worker['cold_starts']:,}"
        )
    for reason, count in summary["errors"].items():
        console.print(f"[yellow]{count:,} × {escape(reason)}[/yellow]")
    console.print(f"cost ≈ ${summary['cost_per_1000_images_usd']:.4f} per 1,000 images (see cost.csv)")
    for verdict in result.verdicts:
        mark = "[green]✓[/green]" if verdict.ok else "[red]✗[/red]"
        console.print(f"{mark} {escape(verdict.threshold.expression)}: observed {escape(verdict.observed_text)}")
    console.print(f"report: {escape(str(result.folder / 'report.html'))}")


def _print_timeline(timeline: list[dict[str, Any]], rows: int = 20) -> None:
    """Target vs achieved start rate per second (buckets of several seconds for a long run); done and failed per
    second; the worst e2e p99 (from the intended start) of the uploads meant to start then."""
    import math

    from loadtest.thresholds import format_ms

    if not timeline:
        return
    step = max(1, math.ceil(len(timeline) / rows))
    title = "Starts per second" if step == 1 else f"Starts per second (mean over {step} s)"
    table = Table("second", "target", "achieved", "late", "dropped", "done", "failed", "e2e p99", title=title)
    for start in range(0, len(timeline), step):
        bucket = timeline[start : start + step]
        targets = [r["target_per_s"] for r in bucket if r["target_per_s"] is not None]
        worst = [r["e2e_p99_ms"] for r in bucket if r["e2e_p99_ms"] is not None]
        label = f"{start}" if len(bucket) == 1 else f"{start}–{start + len(bucket) - 1}"
        table.add_row(
            label,
            f"{sum(targets) / len(bucket):.1f}" if targets else "–",
            f"{sum(r['started'] for r in bucket) / len(bucket):.1f}",
            str(sum(r["late"] for r in bucket)),
            str(sum(r["dropped"] for r in bucket)),
            f"{sum(r['completed'] for r in bucket) / len(bucket):.1f}",
            str(sum(r["failed"] for r in bucket)),
            format_ms(max(worst)) if worst else "–",
        )
    console.print(table)


class Strategy(StrEnum):
    cost = "cost"
    speed = "speed"
    balanced = "balanced"


class ArchChoice(StrEnum):
    x86_64 = "x86_64"
    arm64 = "arm64"
    both = "both"


class Basis(StrEnum):
    measured = "measured"
    modeled = "modeled"


def _memory_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected comma-separated megabytes, e.g. 512,1024,1769") from None
    if not sizes or sizes[0] < 128 or sizes[-1] > 10240:
        raise typer.BadParameter("Lambda memory sizes are 128 to 10,240 MB")
    return sizes


def _architectures(choice: ArchChoice | None, template_arch: str) -> tuple[str, ...]:
    """The first leads (its costs drive the recommendation): the template's unless one is named."""
    if choice is None:
        return (template_arch,)
    if choice is ArchChoice.both:
        other = "x86_64" if template_arch == "arm64" else "arm64"
        return (template_arch, other)
    return (choice.value,)


@app.command()
def sizing(
    memory: Annotated[str, typer.Option(help="Memory sizes to evaluate, MB.")] = "128,256,512,1024,1536,1769,3008",
    arch: Annotated[
        ArchChoice | None,
        typer.Option(help="Price for x86_64, arm64, or both side by side [default: the template's]."),
    ] = None,
    strategy: Annotated[Strategy, typer.Option(help="Which recommendation to lead with.")] = Strategy.balanced,
    balanced_weight: Annotated[
        float, typer.Option(min=0, max=1, help="balanced: weight of cost (1 - it: of speed).")
    ] = 0.5,
    sample: Annotated[
        int, typer.Option(min=1, max=500, help="Images, stratified over the mix (at least 2 per kind).")
    ] = 12,
    invocations: Annotated[
        int | None, typer.Option(min=1, max=5000, help="Timed invocations per size [default: --sample].")
    ] = None,
    trim: Annotated[
        float, typer.Option(min=0, max=0.45, help="Share of each kind's slowest and fastest discarded.")
    ] = 0.2,
    basis: Annotated[Basis, typer.Option(help="Durations the strategies use.")] = Basis.measured,
    measure_below_floor: Annotated[
        bool,
        typer.Option("--measure-below-floor", help="Also measure sizes the worst-case input kills."),
    ] = False,
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    target: Annotated[
        TargetKind, typer.Option(help="local: measure here; aws: set the deployed function to each size.")
    ] = TargetKind.local,
    stack_name: Annotated[str, typer.Option(help="CloudFormation stack, with --target aws.")] = "imgops-pipeline",
    region: Annotated[str, typer.Option(envvar="AWS_REGION", help="Region of the price table / stack.")] = "us-east-1",
    username: Annotated[str, typer.Option(envvar="IMGOPS_USERNAME", help="Cognito user, with --target aws.")] = "",
    password: Annotated[str, typer.Option(envvar="IMGOPS_PASSWORD", help="Cognito password, with --target aws.")] = "",
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Write the recommended size into cdk.json (imgops:worker-memory-mb); with --target aws also "
            "set it on the deployed function, after a confirmation.",
        ),
    ] = False,
    cdk_json: Annotated[
        Path | None, typer.Option(help="The CDK app's cdk.json for --apply [default: this checkout's].")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="With --apply --target aws: do not ask.")] = False,
    out: Annotated[Path, typer.Option(help="Results go to OUT/sizing-<id>/.")] = Path("runs"),
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.cache/imgops/corpus].")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a Power Tuning-shaped result (progress goes to stderr).")
    ] = False,
) -> None:
    """Recommend the worker's memory size: cost, speed and balanced, like AWS Lambda Power Tuning.

    Measured under real cgroup caps (memory and CPU share) and modeled, against temporary resources of its own;
    no size is recommended that the most memory-hungry accepted input kills.
    """
    import json

    from dashboards.template import stack_template
    from loadtest.corpus import parse_mix, stratified_sample
    from loadtest.cost import load_prices
    from loadtest.runner import new_run_id
    from loadtest.targets import aws_load_target
    from sizing.memory import CDK_JSON, SizingOptions, apply_to_cdk_json, worker_spec
    from sizing.report import write_sizing

    sizes = _memory_sizes(memory)
    say = Console(stderr=True, highlight=False) if as_json else console
    with command_errors():
        prices = load_prices(region)
        weights = parse_mix(mix)
        corpus_cache = cache_dir or corpus_cache_dir()
        with say.status("Preparing the sample (generated once, then cached)…"):
            samples = stratified_sample(mix=weights, count=sample, seed=seed, cache_dir=corpus_cache)
        if len(samples) > sample:
            say.print(f"Sample raised to {len(samples)} images: at least 2 of each kind in the mix.")
        folder = out / f"sizing-{new_run_id()}"
        aws_target = None
        if target is TargetKind.aws:
            aws_target = aws_load_target(stack_name=stack_name, region=region, username=username, password=password)
        with _target(TargetKind.local, "", region, "", "", 1, None, say) as local:
            prefix = aws_target.stack.prefix if aws_target is not None else local.stack.prefix
            with say.status("Reading the worker's configuration from the synthesized template…"):
                spec = worker_spec(stack_template(prefix))
            options = SizingOptions(
                sizes=sizes,
                invocations=invocations,
                trim=trim,
                balanced_weight=balanced_weight,
                architectures=_architectures(arch, spec.architecture),
                basis=basis.value,
                measure_below_floor=measure_below_floor,
            )
            if aws_target is not None:
                result = _aws_sizing(aws_target, local.stack, spec, samples, options, prices, corpus_cache, folder, say)
            else:
                result = _local_sizing(local.stack, spec, samples, options, prices, corpus_cache, say)
        report = write_sizing(folder, result, strategy=strategy.value, target=(aws_target or local).name)
        chosen = result.recommendations[result.lead][strategy.value]
        applied: list[str] = []
        if apply:
            path = cdk_json or CDK_JSON
            apply_to_cdk_json(path, chosen)
            applied.append(f"{path}: imgops:worker-memory-mb = {chosen}")
            if aws_target is not None:
                applied.append(_apply_deployed(aws_target.stack, chosen, yes, say))
    if as_json:
        from sizing.memory import power_tuning_json

        payload = power_tuning_json(result, strategy.value)
        payload["imgops"]["report"] = str(report)
        payload["imgops"]["applied"] = applied
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_sizing(result, strategy.value, report)
    for line in applied:
        console.print(f"applied: {escape(line)}")
    if apply and aws_target is None:
        console.print("[dim]The running local stack keeps its size until `imgops local up` starts again.[/dim]")


def _apply_deployed(stack: Any, memory_mb: int, yes: bool, say: Console) -> str:
    import sys

    from sizing.memory import update_function_memory

    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("--apply --target aws asks before changing the function: add --yes")
        if not typer.confirm(f"Set {stack.worker_function} on {stack.name} to {memory_mb} MB?"):
            return f"{stack.worker_function}: left unchanged"
    with say.status(f"Updating {stack.worker_function}…"):
        previous = update_function_memory(stack, memory_mb)
    return f"{stack.worker_function} ({stack.name}): {previous} MB → {memory_mb} MB"


def _sizing_progress(say: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=say,
        transient=True,
    )


def _local_sizing(
    stack: Any, spec: Any, samples: list[Any], options: Any, prices: Any, corpus_cache: Path, say: Console
) -> Any:
    from sizing.memory import LocalSizing

    run = LocalSizing(stack, spec, samples, options, prices=prices, cache_dir=corpus_cache)
    with _sizing_progress(say) as progress:
        task = progress.add_task("Sizing…", total=run.steps)

        def step(description: str) -> None:
            progress.update(task, description=_short(description))
            progress.advance(task)

        return run.run(step)


def _aws_sizing(
    target: LoadTarget,
    local: Any,
    spec: Any,
    samples: list[Any],
    options: Any,
    prices: Any,
    corpus_cache: Path,
    folder: Path,
    say: Console,
) -> Any:
    """Measured on AWS (REPORT lines); the worst-case floor measured here, against the local stack's AWS."""
    from loadtest.harness import RunOptions
    from loadtest.runner import execute_run
    from sizing.memory import (
        ProbeItem,
        Prober,
        SizingResult,
        aws_sizing,
        mark_floor,
        recommend,
        require_memory_caps,
        sample_summary,
        scratch_resources,
        worst_case_floor,
    )

    require_memory_caps()  # before any batch runs on AWS: the floor is measured here, under caps, or not at all

    count = options.invocations or len(samples)
    plan = [samples[i % len(samples)].image for i in range(count)]

    def run_batch(memory: int) -> RunResult:
        options_ = RunOptions(timeout_seconds=300)
        return execute_run(
            target=target, plan=plan, options=options_, out_dir=folder / "batches", region=target.stack.region,
            run_id=f"{memory}mb",
        )  # fmt: skip

    total = 2 * len(options.sizes) * 2 + 4
    with _sizing_progress(say) as progress:
        task = progress.add_task("Sizing on AWS…", total=total)

        def step(description: str) -> None:
            progress.update(task, description=_short(description))
            progress.advance(task)

        table = aws_sizing(target, options.sizes, run_batch, prices=prices, options=options, on_step=step)
        warmup = ProbeItem(min((s.image for s in samples), key=lambda i: i.width * i.height), warmup=True)
        with scratch_resources(local, spec) as scratch:
            floor = worst_case_floor(Prober(scratch, spec), spec, options.sizes, warmup, corpus_cache, step)
    table = mark_floor(table, floor)
    recommendations = {
        arch: recommend(table, balanced_weight=options.balanced_weight, cost_column=f"cost_per_1000_images_usd_{arch}")
        for arch in options.architectures
    }
    notes = [
        f"Measured on {target.name}: the deployed worker set to each size, {count} uploads through the pipeline "
        "per size; durations per invocation (a batch of up to 10 images) from its REPORT lines, top and bottom "
        f"{options.trim:.0%} discarded; cost per image; cold starts (Init Duration) apart. What the batches "
        "wrote (items, thumbnails, originals) was removed afterwards; the original size was restored.",
        "Worst case: measured here under real cgroup memory caps against the local stack's AWS (temporary "
        "resources), for the worker code this checkout holds.",
    ]
    return SizingResult(
        spec=spec,
        options=options,
        table=table,
        recommendations=recommendations,
        sample=sample_summary(samples),
        calibration=[],
        floor=floor,
        baseline=[],
        invocations=[],
        notes=notes,
        basis="measured",
    )


def _short(text: str, width: int = 44) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ms(value: Any) -> str:
    return "–" if value is None or value != value else f"{value:,.0f}"


def _print_sizing(result: Any, lead: str, report: Path) -> None:
    from rich import box

    from sizing.report import calibration_line, floor_line, megapixels, sample_line

    table = result.table
    archs = list(result.options.architectures)
    chosen = result.recommendations[result.lead][lead]
    console.print(escape(sample_line(result)))
    view = Table(
        "MB",
        "measured\np50/p95 ms",
        "modeled\np50/p95 ms",
        "model\nerror",
        *(f"$ per 1k\n{arch}" for arch in archs),
        "worst case",
        title=f"Worker sizing ({', '.join(archs)})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for memory, row in table.iterrows():
        style = "bold green" if memory == chosen else ("dim" if row["oom"] == "yes" else "")
        error = row.get("model_error_pct")
        view.add_row(
            str(memory),
            f"{_ms(row['measured_p50_ms'])}/{_ms(row['measured_p95_ms'])}",
            f"{_ms(row.get('modeled_p50_ms'))}/{_ms(row.get('modeled_p95_ms'))}",
            "–" if error is None or error != error else f"{error:+.0f} %",
            *(f"{row[f'cost_per_1000_images_usd_{arch}']:.5f}" for arch in archs),
            str(row.get("worst_case", "–")),
            style=style,
        )
    console.print(view)
    cold = Table(
        "MB", "CPU\nquota", "init\nms", "1st call\nms", "sample\npeak MB", "pixel cap\nthat fits",
        title="Cold starts (kept out of the figures above), memory", box=box.SIMPLE_HEAD, pad_edge=False,
    )  # fmt: skip
    for memory, row in table.iterrows():
        quota = row.get("cpu_quota_pct")
        cold.add_row(
            str(memory),
            "–" if quota is None or quota != quota else f"{quota:.0f} %",
            _ms(row.get("init_ms")),
            _ms(row.get("first_invocation_ms")),
            _ms(row.get("sample_peak_mb")),
            megapixels(row.get("max_pixels_here")),
        )
    console.print(cold)
    trimmed = f"top/bottom {result.options.trim:.0%} of each kind trimmed"
    for line in (
        floor_line(result),
        calibration_line(result),
        "Measured: the real handler under a cgroup memory cap and a CFS quota of the size's CPU share "
        "(memory / 1,769 MB of a CPU; above it one thread is never throttled)"
        + ("" if result.options.measure_below_floor else "; sizes the worst case kills are modeled only")
        + ". Modeled: CPU ms x max(1, 1769 / MB) + I/O wait. Error: modeled vs measured mean.",
        f"Cost: one image per invocation, $0.20/M requests included; {trimmed}; {result.basis} durations "
        "drive the strategies. All notes: report.html.",
    ):
        console.print(f"[dim]{escape(line)}[/dim]")
    for arch, picks in result.recommendations.items():
        console.print(
            f"recommended ({lead}, {arch}): [bold]{picks[lead]} MB[/bold] · "
            + " · ".join(f"{name} {mb} MB" for name, mb in picks.items())
        )
    console.print(f"report: {escape(str(report))}")


@app.command()
def selfcheck(
    images: Annotated[int, typer.Option(min=1, max=100_000, help="Uploads to send to the sink.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="Uploads in flight at once.")] = 32,
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    corpus_size: CorpusSize = 24,
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.cache/imgops/corpus].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """How fast the harness alone can push uploads: against a do-nothing loopback sink instead of AWS."""
    from loadtest.corpus import build_corpus, parse_mix, upload_plan
    from loadtest.harness import LoadTest, RunOptions
    from loadtest.sink import UploadSink
    from loadtest.targets import sink_target

    with command_errors():
        weights = parse_mix(mix)
        files = build_corpus(mix=weights, count=corpus_size, seed=seed, cache_dir=cache_dir or corpus_cache_dir())
        plan = upload_plan(files, weights, images, seed)
        with UploadSink() as sink:
            options = RunOptions(concurrency=concurrency, wait_for_results=False)
            state = LoadTest(sink_target(sink.url), plan, options).run()
    counts = state.counts()
    elapsed = max(1e-9, (state.finished or time.time()) - state.started)
    sent = counts.get("SENT", 0)
    megabytes = sum(r.bytes_in for r in state.records if r.status == "SENT") / 1e6
    if as_json:
        import json

        result = {
            "uploads": images,
            "sent": sent,
            "errors": counts.get("UPLOAD_ERROR", 0),
            "concurrency": concurrency,
            "seconds": round(elapsed, 3),
            "uploads_per_s": round(sent / elapsed, 1),
            "mb_per_s": round(megabytes / elapsed, 1),
        }
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(
            f"harness self-check: {sent} of {images} uploads in {elapsed:.2f} s = "
            f"[bold]{sent / elapsed:.0f} uploads/s[/bold]"
            f", {megabytes / elapsed:.0f} MB/s ({concurrency} in flight; errors {counts.get('UPLOAD_ERROR', 0)})"
        )
    if counts.get("UPLOAD_ERROR"):
        raise typer.Exit(1)


@app.command()
def compare(
    base: Annotated[Path, typer.Argument(help="The base run: its folder (runs/<id>) or its summary.json.")],
    new: Annotated[Path, typer.Argument(help="The new run, likewise.")],
    max_regression: Annotated[
        str, typer.Option(help="How much worse any figure may get, relative to the base run.")
    ] = "10%",
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (a PR comment).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Compare two runs: throughput, p50/p99 per stage, error rate, billed ms, cost per 1,000 images.

    Exits 1 when a figure got worse than --max-regression allows (higher latency, errors or cost; lower
    throughput), 0 otherwise.
    """
    from loadtest import compare as comparing

    with command_errors():
        bound = comparing.parse_percent(max_regression)
        before, after = comparing.load_summary(base), comparing.load_summary(new)
    rows = comparing.compare_summaries(before, after, bound)
    regressions = comparing.regressions(rows)
    if as_json:
        import json

        document = {
            "base": before["run_id"],
            "new": after["run_id"],
            "max_regression": bound,
            "regressions": [row.label for row in regressions],
            "rows": [row.as_dict() for row in rows],
        }
        print(json.dumps(document, indent=2))
    elif markdown:
        print(comparing.markdown(rows, before, after, bound), end="")
    else:
        console.print(escape(comparing.title(before, after)))
        table = Table("figure", "base", "new", "change", "verdict")
        styles = {"regression": "bold red", "better": "green", "n/a": "dim"}
        for row in rows:
            *cells, verdict = row.cells()
            table.add_row(
                row.label, *cells, f"[{styles.get(verdict, '')}]{verdict}[/]" if verdict in styles else verdict
            )
        console.print(table)
        if regressions:
            names = ", ".join(row.label for row in regressions)
            console.print(f"[bold red]{len(regressions)} regression(s) beyond {bound:.0%}:[/bold red] {escape(names)}")
        else:
            console.print(f"no regression beyond {bound:.0%}")
    if regressions:
        raise typer.Exit(1)


@app.command("thresholds")
def thresholds_help() -> None:
    """List the metrics --threshold and --thresholds-file accept, with their units."""
    from loadtest.thresholds import metric_help

    table = Table("metric", "unit", "meaning")
    table.columns[0].overflow = "fold"
    for name, kind, meaning in metric_help():
        table.add_row(escape(name), kind, escape(meaning))
    console.print(table)
    console.print(
        "{…}: p50, p90, p95, p99, p999 (99.9th), max or mean. Units: durations us/ms/s/m/h (bare: ms); rates /s "
        "or /m (bare: /s); fractions % or 0-1; costs $ optional. Operators: < <= > >= == !=. A breach exits 99."
    )


@app.command("locust")
def locust_run(
    workers: Annotated[
        int | None, typer.Option(min=1, max=256, help="Locust worker processes to start here [default: 2].")
    ] = None,
    users: Annotated[int | None, typer.Option(min=1, max=100_000, help="Simulated users in all [default: 8].")] = None,
    spawn_rate: Annotated[
        float | None, typer.Option(min=0.01, help="Users started per second [default: all in 1 s].")
    ] = None,
    run_time: Annotated[
        str, typer.Option(help="Stop after this long (e.g. 60s, 5m); an upper bound with --max-images.")
    ] = "60s",
    max_images: Annotated[
        int | None, typer.Option(min=1, max=1_000_000, help="Uploads in all; the run ends once all are answered.")
    ] = None,
    pacing: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds between one user's upload starts [default: 0, back to back]."),
    ] = None,
    mix: Mix = DEFAULT_MIX,
    seed: Seed = 7,
    corpus_size: CorpusSize = 24,
    target: Annotated[
        TargetKind, typer.Option(help="local: the running (or an embedded) local stack; aws: a deployed stack.")
    ] = TargetKind.local,
    stack_name: Annotated[str, typer.Option(help="CloudFormation stack, with --target aws.")] = "imgops-pipeline",
    region: Annotated[str, typer.Option(envvar="AWS_REGION", help="AWS region, with --target aws.")] = "us-east-1",
    threshold: Annotated[
        list[str] | None, typer.Option(help="Pass/fail over the summary, as with `run` (a breach exits 99).")
    ] = None,
    thresholds_file: Annotated[Path | None, typer.Option(help="Thresholds in a TOML or JSON file.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write the thresholds as JUnit XML here.")] = None,
    master_host: Annotated[str, typer.Option(help="Address the master binds and workers connect to.")] = "127.0.0.1",
    master_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The master's port [default: a free one].")
    ] = None,
    drain_timeout: Annotated[
        float | None, typer.Option(min=0, help="Seconds to wait for outstanding results at the end [default: 120].")
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the master and worker commands instead of running them.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Runs are written to OUT/<run id>/.")] = Path("runs"),
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache [default: ~/.cache/imgops/corpus].")] = None,
) -> None:
    """Scale out on Locust: a master and WORKERS worker processes run the same user flow (presign, presigned POST,
    completion from the SNS topic); the run folder and report.html are written as by `run`.

    Needs the extra: pip install 'imgops[locust]'. Exits 99 on a threshold breach, else Locust's exit code (1 when
    a request or an image failed).
    """
    import importlib.util
    import json
    import shlex
    import socket
    import subprocess
    import sys

    from imgops.errors import fail
    from loadtest.runner import STACK_LOG, RunResult, new_run_id
    from loadtest.stages import parse_duration
    from loadtest.thresholds import THRESHOLDS_EXIT_CODE, evaluate, threshold_set

    if importlib.util.find_spec("locust") is None:
        raise fail("the Locust scale-out needs Locust: pip install 'imgops[locust]'")
    workers = workers or 2
    users = users or 8
    with command_errors():
        run_seconds = parse_duration(run_time)
        gates = threshold_set(threshold or [], file=thresholds_file)
    run_id = new_run_id()
    folder = out / run_id
    if master_port is None:
        with socket.socket() as probe:
            probe.bind((master_host if master_host != "0.0.0.0" else "127.0.0.1", 0))  # noqa: S104
            master_port = int(probe.getsockname()[1])
    import loadtest  # the package only: importing the locustfile here would let Locust patch this process

    locustfile = str(Path(loadtest.__file__).resolve().parent / "locustfile.py")
    base = [sys.executable, "-m", "locust", "-f", locustfile]
    imgops_args = [
        f"--imgops-target={target.value}",
        f"--imgops-stack-name={stack_name}",
        f"--imgops-region={region}",
        f"--imgops-mix={mix}",
        f"--imgops-seed={seed}",
        f"--imgops-corpus-size={corpus_size}",
        f"--imgops-max-images={max_images or 0}",
        f"--imgops-pacing={pacing or 0}",
        f"--imgops-drain-timeout={120 if drain_timeout is None else drain_timeout}",
        f"--imgops-out={out}",
        f"--imgops-run-id={run_id}",
    ]
    if cache_dir is not None:
        imgops_args.append(f"--imgops-cache-dir={cache_dir}")
    if gates:
        imgops_args.append(f"--imgops-thresholds-file={folder / 'thresholds.json'}")
    if junit is not None:
        imgops_args.append(f"--imgops-junit={junit}")
    master = [
        *base, "--master", "--headless", f"--expect-workers={workers}", f"--users={users}",
        f"--spawn-rate={spawn_rate or users}", f"--run-time={run_time}", f"--master-bind-host={master_host}",
        f"--master-bind-port={master_port}", f"--html={folder / 'locust.html'}", f"--csv={folder / 'locust'}",
        "--only-summary", *imgops_args,
    ]  # fmt: skip
    worker = [*base, "--worker", f"--master-host={master_host}", f"--master-port={master_port}"]
    if gates:  # read by the master, printed or run
        folder.mkdir(parents=True, exist_ok=True)
        expressions = [{"expr": t.expression, "abort_on_fail": t.abort_on_fail} for t in gates.thresholds]
        (folder / "thresholds.json").write_text(json.dumps({"thresholds": expressions}), encoding="utf-8")
    if print_only:
        console.print("# the master (binds --master-host; use 0.0.0.0 to take workers from other machines):")
        print(shlex.join(master))
        console.print(f"# then {workers} workers, on this machine or others (the same corpus cache and credentials):")
        print(shlex.join(worker))
        return
    folder.mkdir(parents=True, exist_ok=True)
    deadline_seconds = run_seconds + (120 if drain_timeout is None else drain_timeout) + 120
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with command_errors(), _target(target, stack_name, region, "", "", None, folder / STACK_LOG) as _resolved:
            with (folder / "locust-master.log").open("wb") as log:
                processes.append(subprocess.Popen(master, stdout=log, stderr=subprocess.STDOUT))  # noqa: S603
            for index in range(workers):
                with (folder / f"locust-worker-{index}.log").open("wb") as log:
                    processes.append(subprocess.Popen(worker, stdout=log, stderr=subprocess.STDOUT))  # noqa: S603
            console.print(
                f"Locust: master on {master_host}:{master_port} + {workers} workers, {users} users, "
                f"run time {run_time}" + (f", {max_images:,} uploads" if max_images else "")
            )
            with console.status("Running (logs: locust-master.log, locust-worker-*.log in the run folder)…"):
                try:
                    code = processes[0].wait(timeout=deadline_seconds)
                except subprocess.TimeoutExpired:
                    raise fail(f"the Locust master did not finish within {deadline_seconds:.0f} s") from None
                for process in processes[1:]:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=15)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    summary_file = folder / "summary.json"
    if not summary_file.exists():
        tail = (folder / "locust-master.log").read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        stderr.print("\n".join(escape(line) for line in tail))
        raise fail(f"the Locust master wrote no summary (exit {code}); see {folder / 'locust-master.log'}")
    import pandas as pd

    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    verdicts = evaluate(gates.thresholds, summary)
    frame = pd.read_parquet(folder / "images.parquet")
    _print_summary(RunResult(run_id, folder, summary, frame, [], verdicts))
    console.print(f"Locust's own report: {escape(str(folder / 'locust.html'))}")
    breached = [verdict for verdict in verdicts if not verdict.ok]
    for verdict in breached:
        stderr.print(f"[red]threshold breached:[/red] {escape(verdict.message)}")
    if breached:
        raise typer.Exit(THRESHOLDS_EXIT_CODE)
    if code:
        stderr.print(f"Locust exited {code} (a request or an image failed; see locust.html)")
        raise typer.Exit(code)
