"""Every command's --help reads on an 80-column terminal: each option name in full where the option is listed,
no line wider than the terminal, no description cut short."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from imgops.cli import app


def commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """The app's command tree, groups included (typer's own click: a group is a command with `commands`)."""
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from commands(sub, [*path, name])


COMMANDS = list(commands(typer.main.get_command(app), []))


def test_the_tree_is_all_there() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"local up", "loadtest run", "dlq redrive", "images status", "alarms check", "dashboards render"} <= paths
    assert len(paths) > 30


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) or "imgops" for path, _ in COMMANDS])
def test_help_fits_80_columns(path: list[str], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    names = [name for param in command.params for name in (*param.opts, *param.secondary_opts) if name[0] == "-"]
    for name in [*names, "--help"]:
        # Listed whole at the head of its row: `--name <type>  help`, `--flag / --no-flag  help`.
        assert any(name in line.split()[:3] for line in lines), f"{name} is cut or missing:\n{result.output}"
    assert "..." not in result.output.replace("[ARGS]...", ""), result.output  # no description cut short
    assert "…" not in result.output.replace("[,…]", ""), result.output  # `faults set` shows `RULE[,…]` itself
