"""The `imgops` command's app: one sub-app per noun (imgops.main runs it)."""

from __future__ import annotations

import typer

from imgops import alarms, bench, capacity, cost, dashboards, dlq, drill, faults, images, load, local, monitoring
from imgops.help_format import HelpGroup

app = typer.Typer(
    name="imgops",
    help="Run, watch, load-test, size, cost and fix the imgops image pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=HelpGroup,
    rich_markup_mode=None,  # click's help layout for every command: nothing cut at 80 columns (imgops/help_format.py)
)
for _name, _sub_app in {
    "local": local.app,
    "loadtest": load.app,
    "cost": cost.app,
    "dashboards": dashboards.app,
    "dlq": dlq.app,
    "images": images.app,
    "faults": faults.app,
    "alarms": alarms.app,
    "drill": drill.app,
    "bench": bench.app,
    "monitoring": monitoring.app,
    "capacity": capacity.app,
}.items():
    app.add_typer(_sub_app, name=_name, cls=HelpGroup)
