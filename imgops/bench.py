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
    """Subcommands: thumbnails."""


@app.command()
def thumbnails(
    images: Annotated[int, typer.Option(min=1, max=100, help="Distinct 12 MP phone JPEGs from the corpus.")] = 6,
    repeat: Annotated[int, typer.Option(min=1, max=100, help="Times each image is processed per approach.")] = 5,
    seed: Annotated[int, typer.Option(help="Corpus seed: the same seed gives the same bytes.")] = 7,
    vips_threads: Annotated[
        int, typer.Option(min=1, max=64, help="libvips worker threads (1 = one core, like Pillow's path).")
    ] = 1,
    markdown: Annotated[bool, typer.Option("--markdown", help="Also print the table as Markdown.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every timing to this JSON file.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Corpus cache (default: ~/.imgops/corpus).")] = None,
) -> None:
    """Time make_thumbnails against a tutorial-style handler and pyvips (if installed): medians, ratios, RSS."""
    from loadtest.bench import APPROACHES, BenchOptions, bench_table, run_bench  # Pillow, numpy: only here
    from loadtest.corpus import build_corpus
    from monitoring.target import state_dir

    with command_errors():
        with console.status("Preparing the 12 MP JPEG corpus (generated once, then cached)…"):
            corpus = build_corpus(
                mix={"jpeg12mp": 1.0},
                count=images,
                seed=seed,
                cache_dir=cache_dir or state_dir() / "corpus",
            )
        options = BenchOptions(repeat=repeat, vips_threads=vips_threads)
        with console.status(f"Timing {', '.join(APPROACHES)}: {images} images x {repeat}, one process each…"):
            try:
                results = run_bench([image.path for image in corpus], options)
            except RuntimeError as exc:
                stderr.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(1) from None
    rows = bench_table(results)
    _print(rows, images, repeat)
    if markdown:
        typer.echo(_markdown(rows))  # plain: no wrapping, ready to paste
    if json_out is not None:
        json_out.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    _print_verdict(results)


def _print(rows: list[dict[str, str]], images: int, repeat: int) -> None:
    columns = ["approach", "median ms/image", "vs imgops", "peak RSS MB", "extra RSS MB", "min PSNR-Y dB", "note"]
    table = Table(*columns, title=f"3 JPEG thumbnails (1024/512/256 px, q85) from 12 MP JPEGs, {images}x{repeat}")
    table.columns[-1].overflow = "fold"  # a note whole, folded at the edge rather than cut
    for row in rows:
        table.add_row(*(escape(row.get(column, "")) for column in columns))
    console.print(table)


def _markdown(rows: list[dict[str, str]]) -> str:
    columns = ["approach", "median ms/image", "vs imgops", "peak RSS MB", "extra RSS MB", "min PSNR-Y dB"]
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
        mark = "[green]met[/green]" if ratio <= PYVIPS_TARGET else "[red]missed[/red]"
        console.print(f"imgops takes {ratio:.2f}x pyvips' time (target <= {PYVIPS_TARGET}x: {mark})")
    else:
        console.print(escape("pyvips is not installed: pip install 'imgops[vips]' to compare with libvips."))
