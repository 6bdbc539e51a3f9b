"""Domain errors end a command with one line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from dashboards.errors import ConfigError, SynthError
from loadtest.local.moto_process import MotoStartError
from loadtest.local.state import NoLocalStack
from pipeline.settings import SettingsError

stderr = Console(stderr=True, highlight=False)

DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    MotoStartError,
    NoLocalStack,
    SettingsError,
    ConfigError,
    SynthError,
    ClientError,
    BotoCoreError,
    OSError,
)


@contextmanager
def command_errors() -> Iterator[None]:
    try:
        yield
    except DOMAIN_ERRORS as exc:
        stderr.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
