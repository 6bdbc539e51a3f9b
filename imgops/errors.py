"""The CLI's one error boundary: a domain error (`ImgopsError`) or an AWS SDK error ends a command with one
line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape

from pipeline.errors import ImgopsError

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print `error: message` as one line; raise the returned Exit."""
    stderr.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(1)


@contextmanager
def command_errors() -> Iterator[None]:
    try:
        yield
    except ImgopsError as exc:
        raise fail(str(exc)) from None
    except (ClientError, BotoCoreError) as exc:  # the service's own words: throttled, denied, unreachable
        raise fail(f"AWS: {exc}") from None
    except OSError as exc:  # a file the user named (or the state folder) cannot be read or written
        raise fail(str(exc)) from None
