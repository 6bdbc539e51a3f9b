"""How `--help` is laid out: click's plain help, which fits any terminal width.

Typer's rich help puts option names, types and help in table columns; at 80 columns rich shrinks every column,
option names included, and cuts them (`--visibility-time…`) along with long defaults. Click's layout wraps the
help text under a long option name instead, so names and defaults are always printed in full
(`rich_markup_mode=None` on the root app selects it for every command: typer hands it down).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click import Context, HelpFormatter


class HelpGroup(TyperGroup):
    """A command group whose listing gives each command's first sentence in full, wrapped, where click would cut
    it to one line with `...`."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
