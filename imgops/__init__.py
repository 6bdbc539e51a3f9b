"""The `imgops` command: one sub-app per noun."""

from __future__ import annotations

import typer

from imgops import alarms, bench, cost, dashboards, dlq, drill, faults, images, load, local, monitoring

app = typer.Typer(
    name="imgops",
    help="Run, watch, load-test, size, cost and fix the imgops image pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(local.app, name="local")
app.add_typer(load.app, name="loadtest")
app.add_typer(cost.app, name="cost")
app.add_typer(dashboards.app, name="dashboards")
app.add_typer(dlq.app, name="dlq")
app.add_typer(images.app, name="images")
app.add_typer(faults.app, name="faults")
app.add_typer(alarms.app, name="alarms")
app.add_typer(drill.app, name="drill")
app.add_typer(bench.app, name="bench")
app.add_typer(monitoring.app, name="monitoring")


def main() -> None:
    app()
