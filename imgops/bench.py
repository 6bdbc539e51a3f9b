"""`imgops bench …`: how fast the worker's image function is, beside the usual alternatives."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors, stderr

if TYPE_CHECKING:
    from loadtest.bench import ApproachResult

app = typer.Typer(help="Benchmarks of the pipeline's parts, on this machine.", no_args_is_help=True)
console = Console(highlight=False)

# The targets on the 12 MP JPEGs: within 10% of libvips, and 3x the tutorial-style handler.
PYVIPS_TARGET = 1.1
TUTORIAL_TARGET = 3.0


@app.callback()
def _group() -> None:
    """Subcommands: thumbnails, batch, capacity, churn."""


# Kept in step with loadtest.bench.INPUT_KINDS and pipeline.resources.OUTPUT_FORMATS (checked by a test), so that
# `--help` needs neither Pillow nor numpy.
KIND_HELP = "jpeg12mp, jpeg1080, png (2000x2000 RGBA), webp, heic12mp, avif12mp, heic1080, avif1080, heic48mp"
FORMAT_HELP = "auto (JPEG; WebP for transparent pictures), source, jpeg, webp, avif"


@app.command()
def thumbnails(
    images: Annotated[int, typer.Option(min=1, max=100, help="Distinct images of the kind, from the corpus.")] = 6,
    repeat: Annotated[int, typer.Option(min=1, max=100, help="Times each image is processed per approach.")] = 5,
    seed: Annotated[int, typer.Option(help="Corpus seed: the same seed gives the same bytes.")] = 7,
    vips_threads: Annotated[
        int, typer.Option(min=1, max=64, help="libvips worker threads (1 = one core, like Pillow's path).")
    ] = 1,
    markdown: Annotated[bool, typer.Option("--markdown", help="Also print the table as Markdown.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every timing to this JSON file.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache (default: ~/.cache/imgops/corpus).")] = None,
    kind: Annotated[str, typer.Option(help=f"Input kind: {KIND_HELP}.")] = "jpeg12mp",
    output_format: Annotated[str, typer.Option(help=f"Thumbnails' format policy: {FORMAT_HELP}.")] = "auto",
) -> None:
    """Time make_thumbnails against a tutorial-style handler and pyvips (if installed): medians, ratios, CPU time,
    bytes, RSS, PSNR."""
    from loadtest.bench import (  # Pillow, numpy: only here
        APPROACHES,
        INPUT_KINDS,
        OUTPUT_FORMATS,
        BenchOptions,
        bench_inputs,
        bench_table,
        run_bench,
    )
    from loadtest.corpus import default_cache_dir as corpus_cache_dir

    if kind not in INPUT_KINDS:
        raise typer.BadParameter(f"expected one of {', '.join(INPUT_KINDS)}", param_hint="--kind")
    if output_format not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(OUTPUT_FORMATS)}", param_hint="--output-format")
    with command_errors():
        with console.status(f"Preparing {images} {kind} input(s) (generated once, then cached)…"):
            files = bench_inputs(kind, count=images, seed=seed, cache_dir=cache_dir or corpus_cache_dir())
        options = BenchOptions(repeat=repeat, vips_threads=vips_threads, output_format=output_format)
        with console.status(f"Timing {', '.join(APPROACHES)}: {images} images x {repeat}, one process each…"):
            try:
                results = run_bench(files, options)
            except RuntimeError as exc:
                stderr.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(1) from None
    rows = bench_table(results)
    _print(rows, f"3 thumbnails (1024/512/256 px) of {kind} inputs, output {output_format}, {images}x{repeat}")
    if markdown:
        typer.echo(_markdown(rows))  # plain: no wrapping, ready to paste
    if json_out is not None:
        json_out.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    _print_verdict(results)


COLUMNS = [
    "approach",
    "median ms/image",
    "vs imgops",
    "median CPU ms",
    "CPU vs imgops",
    "KB/image",
    "format",
    "peak RSS MB",
    "extra RSS MB",
    "min PSNR-Y dB",
]


def _print(rows: list[dict[str, str]], title: str) -> None:
    columns = [*COLUMNS, "note"]
    table = Table(*columns, title=title)
    table.columns[-1].overflow = "fold"  # a note whole, folded at the edge rather than cut
    for row in rows:
        table.add_row(*(escape(row.get(column, "")) for column in columns))
    console.print(table)


def _markdown(rows: list[dict[str, str]]) -> str:
    columns = [*COLUMNS, "note"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row.get(column, "") for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _print_verdict(results: list[ApproachResult]) -> None:
    by_name = {r.name: r for r in results if r.available}
    ours = by_name.get("imgops")
    if ours is None:
        return
    if "tutorial" in by_name:
        speedup = by_name["tutorial"].median_ms / ours.median_ms
        mark = "[green]met[/green]" if speedup >= TUTORIAL_TARGET else "[red]missed[/red]"
        console.print(f"imgops is {speedup:.2f}x faster than the tutorial style (target >= {TUTORIAL_TARGET}x: {mark})")
    if "pyvips" in by_name:
        ratio = ours.median_ms / by_name["pyvips"].median_ms
        cpu_ratio = ours.median_cpu_ms / by_name["pyvips"].median_cpu_ms
        mark = "[green]met[/green]" if ratio <= PYVIPS_TARGET else "[red]missed[/red]"
        console.print(
            f"imgops takes {ratio:.2f}x pyvips' time, {cpu_ratio:.2f}x its CPU time "
            f"(target <= {PYVIPS_TARGET}x: {mark})"
        )
    elif all(r.name != "pyvips" or r.note.startswith("not installed") for r in results):
        console.print(escape("pyvips is not installed: pip install 'imgops[vips]' to compare with libvips."))


# Per image; latency: ms added before each request of a service ("none": moto as it answers).
BATCH_COLUMNS = ["latency", "worker", "billed ms", "CPU ms", "billed/CPU", "wait ms", "vs seq.", "max MB"]


@app.command()
def batch(
    runs: Annotated[int, typer.Option(min=1, max=50, help="Batches per mode (the table shows medians).")] = 5,
    images: Annotated[int, typer.Option(min=2, max=10, help="12 MP JPEGs per batch (SQS allows 10).")] = 10,
    memory_mb: Annotated[
        int, typer.Option(min=128, max=10240, help="The function's memory: cap and CPU share (1769 = 1 vCPU).")
    ] = 1769,
    latency: Annotated[
        list[str] | None,
        typer.Option(
            help="Delay before each AWS request: MS for all, or per service (s3=30,dynamodb=8,sns=20); repeat for "
            "several. Default: 0 and s3=30,dynamodb=8,sns=20."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Corpus seed: the same seed gives the same bytes.")] = 7,
    markdown: Annotated[bool, typer.Option("--markdown", help="Also print the table as Markdown.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every invocation to this JSON file.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache (default: ~/.cache/imgops/corpus).")] = None,
) -> None:
    """Billed ms per image for one SQS batch of 12 MP JPEGs, the worker one record at a time vs overlapped
    (IMGOPS_WORKER_OVERLAP), in a local execution environment on an embedded AWS."""
    from loadtest.batch_bench import (  # Pillow, moto: only here
        DEFAULT_LATENCIES,
        BatchBenchError,
        BatchBenchOptions,
        as_json,
        bench_table,
        run_batch_bench,
    )
    from loadtest.bench import bench_inputs
    from loadtest.corpus import default_cache_dir as corpus_cache_dir
    from localaws.faults import FaultSpecError

    try:
        options = BatchBenchOptions(
            images=images,
            runs=runs,
            memory_mb=memory_mb,
            latencies=tuple(dict.fromkeys(latency)) if latency else DEFAULT_LATENCIES,
        )
    except FaultSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--latency") from None
    with command_errors():
        with console.status(f"Preparing {images} jpeg12mp input(s) (generated once, then cached)…"):
            files = bench_inputs("jpeg12mp", count=images, seed=seed, cache_dir=cache_dir or corpus_cache_dir())
        with console.status("Starting the embedded AWS…") as status:
            try:
                result = run_batch_bench(files, options, on_step=status.update)
            except BatchBenchError as exc:
                stderr.print(f"[red]error:[/red] {escape(str(exc))}")
                raise typer.Exit(1) from None
    rows = bench_table(result)
    console.print(f"Per image: one batch of {images} 12 MP JPEGs at {memory_mb} MB, medians of {runs}")
    for setting in dict.fromkeys(row["latency"] for row in rows):  # a table per setting: fits 80 columns
        table = Table(title=f"added latency (ms): {setting}", box=None, title_justify="left")
        for column in BATCH_COLUMNS[1:]:
            table.add_column(column, justify="left" if column == "worker" else "right", no_wrap=True)
        for row in rows:
            if row["latency"] == setting:
                table.add_row(*(escape(row[column]) for column in BATCH_COLUMNS[1:]))
        console.print(table)
    if not result.capped:
        console.print("[yellow]cgroups are not writable here: no memory cap and no CPU share were applied.[/yellow]")
    if markdown:
        lines = ["| " + " | ".join(BATCH_COLUMNS) + " |", "|" + "|".join("---" for _ in BATCH_COLUMNS) + "|"]
        lines += ["| " + " | ".join(row[column] for column in BATCH_COLUMNS) + " |" for row in rows]
        typer.echo("\n".join(lines))
    if json_out is not None:
        json_out.write_text(json.dumps(as_json(result), indent=1), encoding="utf-8")


@app.command()
def capacity(
    events: Annotated[int, typer.Option(min=1, max=1_000_000, help="Object events to apply.")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Events per counter invocation.")] = 10,
    shards: Annotated[int, typer.Option(min=1, max=1000, help="Counter shards per bucket.")] = 8,
    owners: Annotated[int, typer.Option(min=1, max=100_000, help="Uploaders the events are spread over.")] = 50,
    offered_rate: Annotated[
        float | None,
        typer.Option(
            min=1, help="Events arriving a second; then how far behind the counter falls [default: all at once]."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Object events per second the capacity counter applies, against the embedded AWS's DynamoDB."""
    from loadtest.capacity_bench import run

    with command_errors(), console.status(f"applying {events:,} events in batches of {batch_size}…"):
        result = run(events=events, batch_size=batch_size, shards=shards, owners=owners, offered=offered_rate)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    table = Table("events", "batch", "shards", "owners", "seconds", "events/s", "transactions", "retries")
    table.add_row(
        f"{result.events:,}", str(result.batch_size), str(result.shards), str(result.owners),
        f"{result.seconds:.1f}", f"{result.events_per_second:,.0f}", f"{result.transactions:,}", str(result.retries),
    )  # fmt: skip
    console.print(table)
    if result.behind_seconds_at_end is not None:
        console.print(
            f"Offered {result.offered_events_per_second:,.0f} events/s for {result.offered_seconds:.1f} s: "
            f"{result.behind_seconds_at_last_arrival:.1f} s behind when the last arrived, "
            f"{result.behind_seconds_at_end:.1f} s at the last batch."
        )


@app.command()
def churn(
    objects: Annotated[int, typer.Option(min=10, max=1_000_000, help="Objects created (then churned).")] = 50_000,
    owners: Annotated[int, typer.Option(min=2, max=10_000, help="Uploaders, one of them a runaway.")] = 100,
    rate: Annotated[
        float | None, typer.Option(min=1, help="Writes a second, at most [default: as fast as 8 threads go].")
    ] = None,
    object_events: Annotated[
        str, typer.Option(help="How S3's events are delivered (imgops local up --object-events).")
    ] = "duplicate=0.2,reorder=0.3",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Churn the buckets of a local stack of its own, then: how long until CustomS3 equals the listings (per bucket
    and owner), the reconciler's drift, and whether `imgops capacity top` names the runaway uploader."""
    from loadtest.capacity_churn import ChurnPlan, run

    with command_errors(), console.status("starting a local stack…") as status:
        result = run(
            ChurnPlan(objects=objects, owners=owners),
            rate=rate,
            object_events=object_events,
            on_progress=lambda message: status.update(f"{message}…"),
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    table = Table("objects", "churn s", "CustomS3 equal after", "drift (objects)", "top owner is the runaway")
    table.add_row(
        f"{result.objects:,}", f"{result.churn_seconds:.0f}", f"{result.converged_seconds:.0f} s",
        ", ".join(str(values[0]) for values in result.drift.values()), str(result.top_owner == result.runaway_owner),
    )  # fmt: skip
    console.print(table)
