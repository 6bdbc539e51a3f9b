"""`imgops local …`: the embedded local AWS with the pipeline running on it."""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imgops.errors import command_errors
from imgops.options import StateFile
from monitoring.target import LOCAL_CREDENTIALS, StackInfo, clear_state, fetch_access_token, running_stack
from monitoring.target import state_file as default_state_file
from pipeline.resources import QUEUE_VISIBILITY_TIMEOUT_SECONDS, WORKER_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from localaws.stack import LocalStack, LocalStackOptions

app = typer.Typer(help="The embedded local AWS (moto) with the pipeline running on it.", no_args_is_help=True)
console = Console(highlight=False)


# `imgops local up` is gone this long after Ctrl-C or SIGTERM at the latest: its watchdog then kills what is left
# and exits FORCED_STOP_EXIT, within FORCED_REAP_SECONDS more. The time budget, from the signal:
#   LocalStack.stop's own deadline (localaws.stack.STOP_SECONDS)   5 s   exit 0, everything stopped or killed
#   this watchdog                                                         8 s   exit 1; gone by ~9 s
#   the tests' (tests/e2e/test_ctrl_c_stress.py, test_local_stack.py)    10 s
# The 3 s between the first two are for the signal to reach the main thread and for the interpreter to exit; the
# watchdog catches what even the stop's deadline cannot: the main thread blocked on a console nobody reads, say.
FORCED_STOP_SECONDS = 8.0
# What the forced stop gives the processes it kills to be reaped, and their cgroups to go.
FORCED_REAP_SECONDS = 0.5
# Exit status when the stop had to be forced (everything killed); a stop in time exits 0.
FORCED_STOP_EXIT = 1


class _Stopping:
    """Ctrl-C (SIGINT) and SIGTERM: the first raises KeyboardInterrupt in the main thread, which stops the stack;
    later ones, and any once a stop is under way (`requested`), are ignored, so that they cannot interrupt the stop
    itself. A watchdog ends the process if it has not exited FORCED_STOP_SECONDS after the first signal, unless
    disarmed (the stop has returned with every process gone: what is left, the interpreter's exit, cannot hang)."""

    def __init__(self) -> None:
        self.requested = False
        self._requested_at: float | None = None  # the watchdog's clock: when the first signal came
        self._disarmed = False

    def install(self) -> None:
        """Handle the signals and start the watchdog; a KeyboardInterrupt may come from here on, this included."""
        # SIGINT explicitly too: a shell starts a background job (`… &` in a script, a CI step) with SIGINT ignored,
        # and Python then leaves it ignored, so Ctrl-C, or a test's SIGINT, would never reach the stack.
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)
        # Imported now, not when it fires: the main thread may hold an import lock the watchdog would wait on.
        force_stop = _forced_stop()
        # Started now, not by the handler: starting a thread takes locks the interrupted main thread may hold.
        threading.Thread(target=self._watchdog, args=(force_stop,), name="stop-watchdog", daemon=True).start()

    def start_clock(self) -> None:
        """Arm the watchdog from now if no signal has yet (a plain assignment: nothing the watchdog could be
        holding)."""
        if self._requested_at is None:
            self._requested_at = time.monotonic()

    def disarm(self) -> None:
        self._disarmed = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.start_clock()  # also when a stop is already under way (after an error, say): it can still be forced
        if self.requested:
            return
        self.requested = True
        raise KeyboardInterrupt

    def _watchdog(self, force_stop: Callable[[], None]) -> None:
        while not self._disarmed and (
            self._requested_at is None or time.monotonic() - self._requested_at < FORCED_STOP_SECONDS
        ):
            time.sleep(0.1)
        if not self._disarmed:
            force_stop()


def _forced_stop() -> Callable[[], None]:
    """What the watchdog runs: kill every process below this one, remove the environments' cgroups and the state
    file, and exit now. Its modules are imported here, up front (see _Stopping.install)."""
    from localaws.environment import remove_cgroups
    from localaws.runtime import descendants, kill_trees
    from localaws.stack import cgroup_label

    label = cgroup_label()

    def force_stop() -> None:
        clear_state()
        # Not multiprocessing's resource tracker: it unlinks the stack's semaphores once this process is gone.
        pids = [pid for pid in descendants([os.getpid()]) if not _is_resource_tracker(pid)]
        kill_trees(pids, reap_timeout=FORCED_REAP_SECONDS)
        remove_cgroups(label, timeout=FORCED_REAP_SECONDS)
        message = f"\nThe local stack had not stopped {FORCED_STOP_SECONDS:g} s after the signal: killed it.\n"
        if _writable(sys.stderr.fileno()):
            os.write(sys.stderr.fileno(), message.encode())
        os._exit(FORCED_STOP_EXIT)

    return force_stop


def _writable(descriptor: int) -> bool:
    """Whether a short line can be written without blocking: a pipe nobody reads (a test's, a crashed pager) is full
    at 64 KiB, and a stop must not wait on it."""
    try:
        return bool(select.select([], [descriptor], [], 0)[1])
    except (OSError, ValueError):
        return False


def _say_stopping(message: str) -> None:
    """A line on the console while stopping, unless the console would block (see _writable)."""
    try:
        descriptor = console.file.fileno()
    except (AttributeError, OSError, ValueError):
        descriptor = -1
    if descriptor < 0 or _writable(descriptor):
        console.print(message)


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@app.command()
def up(
    port: Annotated[int, typer.Option(min=0, max=65535, help="AWS endpoint port (0 = a free port).")] = 0,
    api_port: Annotated[int, typer.Option(min=0, max=65535, help="Local HTTP API port (0 = a free port).")] = 0,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (concurrent executions) [default: CPU cores]."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of every resource name.")] = "imgops",
    worker_timeout: Annotated[
        int, typer.Option(min=1, max=900, help="Worker timeout, seconds.")
    ] = WORKER_TIMEOUT_SECONDS,
    visibility_timeout: Annotated[
        int,
        typer.Option(min=1, max=43200, help="Work queue visibility timeout, seconds (AWS advises >= 6x timeout)."),
    ] = QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    log_level: Annotated[str, typer.Option(help="Handlers' Powertools log level.")] = "WARNING",
    cpu_share: Annotated[
        bool,
        typer.Option(
            "--cpu-share",
            help="Cap each execution environment's CPU at Lambda's share of its memory (memory/1,769 MB of a vCPU), "
            "besides the memory cap.",
        ),
    ] = False,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics/--no-metrics",
            help="Publish AWS/Lambda, AWS/SQS, AWS/ApiGateway and CustomS3 metrics to the local CloudWatch.",
        ),
    ] = True,
    metrics_every: Annotated[
        int | None,
        typer.Option(
            min=10,
            max=86400,
            help="Run the capacity reconciler (the bucket-metrics Lambda: drift of the counters) every N seconds, "
            "and once at start [default: its schedule rule in the template, 5 min].",
        ),
    ] = None,
    publish_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=3600,
            help="Publish the capacity counters (CustomS3) every N seconds [default: its schedule rule, 1 min].",
        ),
    ] = None,
    object_events: Annotated[
        str,
        typer.Option(
            help="How S3's object events reach the capacity counter: e.g. duplicate=0.2,reorder=0.3 (each a "
            "probability per event: sent twice, held back up to 5 s; drop= loses them) [default: each once].",
        ),
    ] = "",
    sample_every: Annotated[
        float | None,
        typer.Option(
            min=1, max=3600, help="Publish the queues' AWS/SQS metrics every N seconds [default: 60, as AWS]."
        ),
    ] = None,
) -> None:
    """Start the local stack in the foreground; Ctrl-C (or SIGTERM) stops it cleanly within seconds."""
    stopping = _Stopping()
    with contextlib.suppress(KeyboardInterrupt):  # one before the stack existed (importing it): nothing to stop
        stopping.install()
        from localaws.metrics import DEFAULT_SAMPLE_SECONDS  # the local AWS: only for `up`
        from localaws.object_events import Mischief

        with command_errors():  # a bad --object-events: one line, exit 1
            mischief = Mischief.parse(object_events)
        from localaws.stack import LocalStackOptions

        options = LocalStackOptions(
            port=port,
            api_port=api_port,
            workers=workers or (os.cpu_count() or 2),
            prefix=prefix,
            worker_timeout_seconds=worker_timeout,
            visibility_timeout_seconds=visibility_timeout,
            log_level=log_level.upper(),
            cpu_share=cpu_share,
            metrics=metrics,
            bucket_metrics_every_seconds=metrics_every,
            capacity_publish_every_seconds=publish_every,
            object_events=mischief,
            sample_every_seconds=sample_every or DEFAULT_SAMPLE_SECONDS,
        )
        _run_stack(options, stopping)
    _say_stopping("Local stack stopped.")


def _run_stack(options: LocalStackOptions, stopping: _Stopping) -> None:
    """Start the stack, print how to use it and wait for Ctrl-C; stop it however this ends."""
    from localaws.stack import LocalStack

    with command_errors():
        stack = LocalStack(options, announce=_announce)
        try:  # Ctrl-C or SIGTERM at any moment, starting included: stop() stops what has started
            with console.status("Starting the embedded AWS and provisioning the pipeline…"):
                info = stack.start()
                token = fetch_access_token(info)
            _print_stack(info, token, stack)
            stack.supervise()
        except KeyboardInterrupt:
            _say_stopping("\nStopping the local stack…")
        finally:
            stopping.requested = True  # a signal from now on must not interrupt the stop (bounded by itself)
            if stack.stop():
                # Nothing left to wait for: no child process (multiprocessing's exit handler would join one without
                # a timeout), only daemon threads. A slow exit (flushing output) must not turn exit 0 into exit 1.
                stopping.disarm()
            else:  # a process killed had not exited yet: the interpreter's exit waits for it, for so long at most
                stopping.start_clock()


@app.command()
def token(state_file: StateFile = None) -> None:
    """Print a fresh access token for the demo user of the running local stack."""
    with command_errors():
        typer.echo(fetch_access_token(running_stack(state_file)))


@app.command()
def env(state_file: StateFile = None) -> None:
    """Print shell exports for the running stack: eval "$(imgops local env)"."""
    with command_errors():
        info = running_stack(state_file)
        exports = {
            "AWS_ENDPOINT_URL": info.endpoint_url,
            "AWS_DEFAULT_REGION": info.region,
            **LOCAL_CREDENTIALS,
            "IMGOPS_API_URL": info.api_url,
            "IMGOPS_TOKEN": fetch_access_token(info),
            # The demo user, so `--target aws --stack-name <prefix>-pipeline` signs in as `local` does.
            "IMGOPS_USERNAME": info.demo_username,
            "IMGOPS_PASSWORD": info.demo_password,
        }
        for name, value in exports.items():
            typer.echo(f"export {name}={shlex.quote(value)}")


@app.command()
def status(state_file: StateFile = None) -> None:
    """Show the running stack's endpoints and resource names; exit 1 if it is not running."""
    with command_errors():
        info = running_stack(state_file)
    _print_info(info, state_file or default_state_file())


@app.command()
def inventory(state_file: StateFile = None) -> None:
    """Write an S3 Inventory report of both buckets now, as S3 delivers its daily one (S3's layout, Parquet), into
    the stack's inventory bucket: what the reconciler reads for a bucket too large to list."""
    from localaws.inventory import write_inventory_report
    from monitoring.target import for_local
    from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, ResourceNames

    with command_errors():
        info = running_stack(state_file)
        s3 = for_local(info).client("s3")
        destination = ResourceNames(info.prefix).inventory_bucket
        for bucket in (info.upload_bucket, info.processed_bucket):
            key = write_inventory_report(s3, bucket, destination, prefix=INVENTORY_PREFIX, config_id=INVENTORY_ID)
            console.print(f"{bucket}: s3://{destination}/{key}", soft_wrap=True)


def _print_info(info: StackInfo, state: Path) -> None:
    from localaws.web import page_url

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # URLs, ARNs and names whole, folded at the edge rather than cut
    rows = {
        "AWS endpoint": info.endpoint_url,
        "HTTP API": info.api_url,
        "upload page": page_url(info.api_url),
        "upload bucket": info.upload_bucket,
        "processed bucket": info.processed_bucket,
        "work queue": info.queue_url,
        "dead-letter queue": info.dlq_url,
        "images table": info.images_table,
        "notifications topic": info.topic_arn,
        "user pool / client": f"{info.user_pool_id} / {info.user_pool_client_id}",
        "demo user": f"{info.demo_username} (sub {info.demo_sub})",
        "state file": str(state),
    }
    for name, value in rows.items():
        table.add_row(f"[bold]{name}[/bold]", escape(value))
    console.print(table)


def _announce(message: str) -> None:
    console.print(message, style="dim", soft_wrap=True)


def _print_stack(info: StackInfo, token: str, stack: LocalStack) -> None:
    options = stack.options
    console.print(f"[green]imgops local stack is up[/green] ({options.workers} worker processes)")
    _print_info(info, default_state_file())
    if options.metrics:
        console.print(
            f"\n[bold]CloudWatch[/bold] (local): worker/API metrics per invocation, queues every "
            f"{options.sample_every_seconds:g} s, capacity counters every "
            f"{options.capacity_publish_every_seconds or 60:g} s, "
            f"reconciled every {stack.bucket_metrics_every_seconds} s; "
            "`imgops dashboards render` draws them."
        )
    console.print("\n[bold]Bearer token[/bold] for the demo user (1 h; `imgops local token` prints a fresh one):")
    console.print(token, soft_wrap=True)
    console.print(
        '\nIn another shell: [bold]eval "$(imgops local env)"[/bold], then follow README.md ›'
        " Run the stack yourself and upload with curl."
        "\nREPORT lines below are the worker's invocations. Ctrl-C stops everything.\n"
    )
