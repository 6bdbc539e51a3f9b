"""`imgops cost …`: what the pipeline costs per 1,000 images and per month, by service."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from imgops.errors import command_errors, stderr

if TYPE_CHECKING:
    from loadtest.cost import Workload

app = typer.Typer(help="Cost reports from a load-test run or assumed volumes (pandas; CSV, Markdown, HTML).")
console = Console(highlight=False)


@app.command()
def report(
    run: Annotated[
        Path | None,
        typer.Option(help="A load-test run folder (its summary.json) to take per-image figures from."),
    ] = None,
    images_per_month: Annotated[int, typer.Option(min=1, help="Monthly volume for the per-month column.")] = 1_000_000,
    memory: Annotated[
        int | None, typer.Option(min=128, max=10240, help="Worker memory, MB (default: the run's).")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="x86_64 or arm64 [default: the worker's, from the synthesized template]."),
    ] = None,
    compare_memory: Annotated[
        str,
        typer.Option(
            "--compare",
            help="Also price these worker sizes side by side (MB, or 'recommended'); durations come from --sizing.",
        ),
    ] = "",
    sizing: Annotated[
        Path | None,
        typer.Option(help="A `imgops loadtest sizing` folder: worker duration at each memory size."),
    ] = None,
    region: Annotated[str, typer.Option(help="Price table region.")] = "us-east-1",
    prices_file: Annotated[Path | None, typer.Option("--prices", help="A price table JSON of the same shape.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write cost.csv, cost.md and cost.html into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Cost per 1,000 images and per month, broken down by service."""
    from loadtest.cost import CostError, compare, cost_breakdown, load_prices

    with command_errors():
        try:
            prices = load_prices(region, prices_file)
            worker_memory, worker_arch, source = _template_worker()
            architecture = arch or worker_arch
            fallback_memory = None if run is not None else worker_memory
            base = _workload(
                run, images_per_month=images_per_month, memory_mb=memory or fallback_memory, architecture=architecture
            )
            breakdown = cost_breakdown(base, prices)
            variants = _variants(base, compare_memory, sizing)
            side_by_side = compare([base, *variants], prices) if variants else None
        except (CostError, ValueError) as exc:
            stderr.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    title = f"Cost by service: Lambda {base.architecture}, worker {base.memory_mb} MB"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        breakdown.to_csv(out / "cost.csv")
        (out / "cost.md").write_text(f"{title}\n\n" + breakdown.to_markdown(floatfmt=".6f"), encoding="utf-8")
        table_html = breakdown.to_html(float_format=lambda v: f"{v:.6f}")
        (out / "cost.html").write_text(f"<h2>{html.escape(title)}</h2>\n{table_html}", encoding="utf-8")
    if as_json:
        payload = {
            "prices_valid_as_of": prices.get("valid_as_of"),
            "region": prices.get("region"),
            "architecture": base.architecture,
            "worker_memory_mb": base.memory_mb,
            "worker_defaults_from": source,
            "workload": base.__dict__,
            "breakdown": json.loads(breakdown.to_json(orient="index")),
            "compare": json.loads(side_by_side.to_json(orient="index")) if side_by_side is not None else None,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(
        "service",
        "$ / 1,000 images",
        f"$ / month at {images_per_month:,}",
        title=title,
    )
    for service, row in breakdown.iterrows():
        style = "bold" if service == "Total" else ""
        table.add_row(str(service), f"{row['per_1000_images']:.5f}", f"{row['per_month']:,.2f}", style=style)
    console.print(table)
    console.print(
        f"[dim]prices: {prices.get('region')} valid as of {prices.get('valid_as_of')}; workload: {base.label}; "
        f"architecture and worker size: {'given' if arch else source}[/dim]"
    )
    if side_by_side is not None:
        view = Table("service", *side_by_side.columns, title=f"Worker sizes compared ({base.architecture})")
        for service, row in side_by_side.iterrows():
            view.add_row(str(service), *(f"{value:.5f}" for value in row))
        console.print(view)


@app.command()
def capacity(
    region: Annotated[str, typer.Option(help="Price table region.")] = "us-east-1",
    prices_file: Annotated[Path | None, typer.Option("--prices", help="A price table JSON of the same shape.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """What the capacity metrics cost per month by bucket size and write rate: counted from S3's events
    (with a daily reconciliation from S3 Inventory) against listing the buckets every 5 minutes."""
    from loadtest.capacity_cost import listing_cell, scale_table
    from loadtest.cost import CostError, load_prices

    with command_errors():
        try:
            prices = load_prices(region, prices_file)
            frame = scale_table(prices)
        except (CostError, KeyError) as exc:
            stderr.print(f"[red]error:[/red] the price table has no {exc} (see loadtest/prices)")
            raise typer.Exit(1) from None
    if as_json:
        rows = json.loads(frame.to_json(orient="records"))
        typer.echo(json.dumps({"prices_valid_as_of": prices.get("valid_as_of"), "rows": rows}, indent=2))
        return
    table = Table("objects", "events/s", "$/month, events", "$/month, listing", title="Capacity metrics")
    for row in frame.itertuples():
        listing = listing_cell(row.listing_usd_month, completes=bool(row.listing_completes))
        table.add_row(f"{row.objects:,}", f"{row.events_per_second:,g}", f"{row.events_usd_month:,.2f}", listing)
    console.print(table)
    console.print(f"[dim]prices: {prices.get('region')} valid as of {prices.get('valid_as_of')}[/dim]")


def _variants(base: Workload, requested: str, sizing: Path | None) -> list[Workload]:
    """`base` re-priced at other worker sizes, with the duration the sizing run found for each."""
    from loadtest.cost import CostError
    from sizing.memory import Measurement, modeled_duration_ms

    names = [part.strip() for part in requested.split(",") if part.strip()]
    if not names:
        return []
    if sizing is None:
        raise CostError("--compare needs --sizing: a worker's duration changes with its memory size")
    try:
        result = json.loads((sizing / "sizing.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CostError(f"{sizing} is not a sizing folder (no sizing.json)") from None
    billed = {
        int(row["memory_mb"]): float(row["billed_ms_mean"])
        for row in result["table"]
        if row.get("billed_ms_mean") is not None
    }
    fields = ("image", "wall_ms", "cpu_ms", "peak_rss_mb")
    measurements = [Measurement(**{k: row[k] for k in fields}) for row in result.get("measurements", [])]
    floor = (result.get("floor") or {}).get("floor_mb")  # the sizing run's worst-case floor, if it had one
    variants = []
    for name in names:
        memory = int(result["recommendations_mb"]["balanced"]) if name == "recommended" else _megabytes(name)
        if memory not in billed and measurements:  # a local sizing run: model this size too
            billed[memory] = sum(math.ceil(modeled_duration_ms(m, memory)) for m in measurements) / len(measurements)
        if memory not in billed:
            raise CostError(f"--compare {memory}: the sizing run has no figures for it (it has {sorted(billed)})")
        label = f"{memory} MB (recommended)" if name == "recommended" else f"{memory} MB"
        if floor is not None and memory < floor:
            label += " (dies on the worst case)"
        variants.append(base.with_memory(memory, billed[memory], label))
    return variants


def _template_worker() -> tuple[int, str, str]:
    """The worker's memory size and architecture in the synthesized template (cached after the first synth);
    the CDK app's defaults where it cannot be synthesized here (no Node.js)."""
    from dashboards.template import TemplateError, stack_template
    from sizing.memory import SizingError, worker_spec

    try:
        with console.status("Reading the worker's configuration from the synthesized template…"):
            spec = worker_spec(stack_template())
    except (TemplateError, SizingError) as exc:
        from dashboards.config import AppConfig

        defaults = AppConfig()
        return defaults.worker_memory_mb, defaults.architecture, f"the CDK app's defaults ({exc})"
    return spec.memory_mb, spec.architecture, "the synthesized template"


def _megabytes(text: str) -> int:
    from loadtest.cost import CostError

    try:
        return int(text)
    except ValueError:
        raise CostError(f"--compare {text!r}: expected megabytes or 'recommended'") from None


def _workload(run: Path | None, **overrides: object) -> Workload:
    from loadtest.cost import CostError, Workload, workload_from_run

    if run is None:
        fields = {k: v for k, v in overrides.items() if v is not None}
        return Workload(label="assumed", **fields)  # type: ignore[arg-type]
    summary_file = run / "summary.json"
    if not summary_file.exists():
        raise CostError(f"{run} is not a load-test run folder (no summary.json)")
    return workload_from_run(json.loads(summary_file.read_text(encoding="utf-8")), **overrides)
