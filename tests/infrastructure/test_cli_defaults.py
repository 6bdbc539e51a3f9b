"""Every `imgops` command parses with no options at all: no option's default may fail its own validation.

`imgops local up`, run bare as the README shows it, once exited 2: `--workers` defaulted to 0 with `min=1`, and typer
checks defaults against their min/max when it parses. Parsing is click's `make_context` on each group down to the
command (conversions, checks, defaults, environment variables) without invoking anything, so this runs in
milliseconds with no stack. Required arguments get a dummy value; nothing else is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import pytest
import typer
from typer.core import TyperGroup

import imgops.cli

if TYPE_CHECKING:
    from typer._click import Command

ROOT = typer.main.get_command(imgops.cli.app)
DUMMY = "1"  # a valid string, path, integer and float alike; required arguments are ids, rules and the like


def command_paths(group: TyperGroup, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The name path of every command under `group`, through nested groups."""
    ctx = typer.Context(group, info_name=path[-1] if path else "imgops")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, TyperGroup):
            yield from command_paths(command, (*path, name))
        else:
            yield (*path, name)


def required_values(command: Command) -> list[str]:
    values: list[str] = []
    for param in command.params:
        if param.required:
            values += [param.opts[0], DUMMY] if param.param_type_name == "option" else [DUMMY]
    return values


def parse_bare(root: Command, path: tuple[str, ...]) -> None:
    """Parse `<root> <path…>` with only required values, as the CLI would before running the command."""
    ctx = root.make_context("imgops", [path[0]], resilient_parsing=False)
    for depth, name in enumerate(path):
        assert isinstance(ctx.command, TyperGroup)
        command = ctx.command.get_command(ctx, name)
        assert command is not None, path
        last = depth == len(path) - 1
        args = required_values(command) if last else [path[depth + 1]]
        ctx = command.make_context(name, args, parent=ctx, resilient_parsing=False)


def environment_variables(root: Command, path: tuple[str, ...]) -> set[str]:
    """Variables the command's options read (AWS_REGION, IMGOPS_USERNAME, ...): defaults only, so none is set."""
    command = root
    for name in path:
        assert isinstance(command, TyperGroup)
        found = command.get_command(typer.Context(command), name)
        assert found is not None, path
        command = found
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


COMMANDS = sorted(command_paths(ROOT)) if isinstance(ROOT, TyperGroup) else []


def test_every_command_is_walked() -> None:
    assert isinstance(ROOT, TyperGroup)
    assert ("local", "up") in COMMANDS
    assert len(COMMANDS) >= 20  # every sub-app, not just the first level


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_defaults_pass_their_own_validation(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment_variables(ROOT, path):
        monkeypatch.delenv(name, raising=False)
    try:
        parse_bare(ROOT, path)
    except typer.TyperException as exc:
        problem = exc.format_message()
    else:
        return
    pytest.fail(f"`imgops {' '.join(path)}` fails with no options: {problem}", pytrace=False)


def test_the_check_catches_a_default_outside_its_range() -> None:
    """The check has teeth: the old `--workers` definition (default 0, min 1) fails it. If typer ever stops
    validating defaults, this fails and the test above needs another way to see a bad default."""
    demo = typer.Typer()

    @demo.command()
    def up(workers: Annotated[int, typer.Option(min=1, max=64)] = 0) -> None:
        raise AssertionError("parsing must not run the command")

    @demo.command()
    def down() -> None:
        raise AssertionError("parsing must not run the command")

    with pytest.raises(typer.BadParameter, match="greater than or equal to 1"):
        parse_bare(typer.main.get_command(demo), ("up",))
    parse_bare(typer.main.get_command(demo), ("down",))
