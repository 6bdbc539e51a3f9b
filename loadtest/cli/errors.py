"""Domain errors end a command with one line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from dashboards.errors import ConfigError, SynthError
from loadtest.corpus import CorpusError
from loadtest.cost import CostError
from loadtest.images import ImageNotFound
from loadtest.local.faults import FaultSpecError
from loadtest.local.moto_process import MotoStartError
from loadtest.local.state import NoLocalStack
from loadtest.sizing import SizingError
from loadtest.targets import TargetError
from pipeline.settings import SettingsError

stderr = Console(stderr=True, highlight=False)

DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    MotoStartError,
    NoLocalStack,
    SettingsError,
    ConfigError,
    SynthError,
    CorpusError,
    CostError,
    FaultSpecError,
    ImageNotFound,
    SizingError,
    TargetError,
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
