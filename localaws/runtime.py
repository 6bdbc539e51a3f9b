"""A local Lambda runtime for the worker: what the SQS event source mapping and Lambda do on AWS.

Each poller process long-polls the queue with the mapping's batch size, reads the function's configuration
from the (local) Lambda API before each invocation, and runs the real handler in an execution environment
built from it (`localaws.environment`: memory cap, timeout, environment variables; a changed
configuration gets a fresh environment, as on AWS). It deletes only the messages that did not come back in
`batchItemFailures`, and writes the function's log lines — START, the handler's output, Lambda's own
timeout and out-of-memory lines, END and an AWS-format REPORT line — to the console (or the stack log) and
to the function's CloudWatch Logs group, so one parser serves local and deployed runs. It also publishes the
`AWS/Lambda` metrics Lambda would (see localaws/metrics.py), batched from a background thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import multiprocessing.resource_tracker
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from localaws.context import LocalLambdaContext, peak_rss_kb
from localaws.environment import (
    ExecutionEnvironment,
    FunctionConfig,
    Outcome,
    remove_cgroups,
    set_subreaper,
)
from localaws.metrics import (
    DEFAULT_FLUSH_SECONDS,
    LAMBDA_NAMESPACE,
    MetricBuffer,
    WorkerMeter,
    WorkerSignals,
    metrics_client_config,
)
from monitoring.target import local_session
from pipeline.resources import WORKER_BATCH_SIZE, WORKER_MEMORY_MB, WORKER_TIMEOUT_SECONDS


@dataclass(frozen=True)
class RuntimeConfig:
    queue_url: str
    queue_arn: str
    region: str
    function_name: str
    report_log: Path
    batch_size: int = WORKER_BATCH_SIZE
    timeout_seconds: int = WORKER_TIMEOUT_SECONDS
    memory_mb: int = WORKER_MEMORY_MB
    poll_wait_seconds: int = 1
    # Seconds between PutMetricData batches from each worker; 0 publishes no metrics.
    metrics_flush_seconds: float = DEFAULT_FLUSH_SECONDS
    # Where each worker process's stdout and stderr go (REPORT lines, the handler's logs, warnings), appended;
    # None: the parent's, e.g. `imgops local up`'s console. REPORT lines go to `report_log` either way.
    output_log: Path | None = None
    # Also give each execution environment its CPU share (memory / 1,769 MB of one vCPU) as a CFS quota.
    cpu_share: bool = False
    # Part of every execution environment's cgroup name (environment.cgroup_name): what WorkerPool.stop removes.
    cgroup_label: str = ""


# The least time a stop gives the execution environments' cgroups to go, even past its deadline (WorkerPool.stop).
CGROUP_GRACE_SECONDS = 0.5
# What a stop keeps, at the end of its time, to kill what is left, reap it and remove its cgroups (WorkerPool.stop).
KILL_SECONDS = 1.0
# Signals the parent handles for its children: they leave stopping to it (see run_worker).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class Flag:
    """A yes/no shared with spawned processes, without a lock: a process killed at any moment (SIGKILL, OOM) cannot
    leave it held, as it can a multiprocessing Event's condition, whose `set()` then blocks for good."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._value = context.RawValue(ctypes.c_bool, False)

    def set(self, value: bool = True) -> None:
        self._value.value = value

    def is_set(self) -> bool:
        return bool(self._value.value)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread meanwhile; a process spawned now starts with them blocked. In the
    main thread, their handlers also wait until the block ends: one that arrived meanwhile is raised again then.

    Ctrl-C reaches the whole process group: a child still importing (before it can ignore them) would die of it
    with a traceback, or not at all start what the parent then waits for. Blocking them in this thread alone does
    not keep the parent's handler out: the kernel hands the signal to another thread (the progress display's), and
    Python runs the handler in the main thread at once, and a KeyboardInterrupt between spawning a child and
    sending it what to run leaves the child an empty pipe (`EOFError: Ran out of input`, printed by the child).
    """
    # Started first: starting it (the first spawn does) unblocks both signals in the calling thread, which the
    # child spawned next would then inherit.
    multiprocessing.resource_tracker.ensure_running()
    arrived: list[int] = []
    handlers: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for stop_signal in sorted(STOP_SIGNALS):
            if signal.getsignal(stop_signal) is not None:  # None: set outside Python, and not ours to restore
                handlers[stop_signal] = signal.signal(stop_signal, lambda number, _frame: arrived.append(number))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for stop_signal, handler in handlers.items():
            signal.signal(stop_signal, handler)
        for number in dict.fromkeys(arrived):
            signal.raise_signal(number)  # to the handler the caller had, now that the child has what it runs


def leave_stopping_to_the_parent() -> None:
    """In a child spawned under `stop_signals_blocked`: ignore SIGINT and SIGTERM (so does whatever it starts), then
    unblock them (one that arrived meanwhile is dropped)."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def descendants(pids: Iterable[int]) -> set[int]:
    """The live processes below `pids` (children, grandchildren, …), from /proc."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:  # noqa: PTH123
                parents[int(entry.name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return parents


def kill_trees(pids: Iterable[int], reap_timeout: float = 1.0) -> set[int]:
    """SIGKILL `pids` and every process below them; returns the pids signalled.

    Each is stopped (SIGSTOP) before its children are listed, so none can start another in between and escape; a
    poller's execution environment must not outlive it (it would hold its cgroup and keep running the handler).
    Meanwhile this process adopts the orphans (a child subreaper), and reaps the grandchildren killed: reparented
    to init instead, they would hold their cgroups until init reaps them (every couple of seconds, here). Direct
    children are left to their owner to reap (multiprocessing's join).
    """
    me = os.getpid()
    stopped: set[int] = set()
    pending = set(pids)
    with _adopting_orphans() as adopting:
        while pending:
            for pid in pending:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= pending
            pending = descendants(pending) - stopped
        parents = _parents()
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if adopting:
            _reap({pid for pid in stopped if parents.get(pid) != me}, time.monotonic() + reap_timeout)
    return stopped


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[bool]:
    """This process as the child subreaper meanwhile (environment.set_subreaper); yields whether it is. A process
    that already was one (a stack: LocalStack.start) stays one."""
    was = set_subreaper(True)
    try:
        yield was is not None
    finally:
        if was is False:
            set_subreaper(False)


def _reap(pids: set[int], deadline: float) -> None:
    """Wait for these killed processes, once they are this process's children (their parent killed too)."""
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                reaped, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not (yet) adopted: its parent is still dying, or reaped it first
                reaped = pid if not os.path.exists(f"/proc/{pid}") else 0  # noqa: PTH110
            if reaped == pid:
                pids.discard(pid)
        if pids:
            time.sleep(0.01)


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr to the end of `path`: file descriptors 1 and 2, so what native code
    and child processes write goes there too, not only Python's prints and logs."""
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(descriptor, sys.stdout.fileno())
        os.dup2(descriptor, sys.stderr.fileno())
    finally:
        os.close(descriptor)


def report_line(
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None,
    *,
    status: str = "success",
    error_type: str = "",
) -> str:
    """AWS's REPORT line, field for field (tab-separated, Billed Duration rounded up to 1 ms); a failed
    invocation ends with `Status: timeout` or `Status: error` and its error type, as Lambda writes them."""
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_memory_mb} MB"
    )
    line += f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else ""
    if status == "timeout":
        line += "\tStatus: timeout"
    elif status in {"oom", "crash"}:
        line += f"\tStatus: error\tError Type: {error_type}"
    return line


def sqs_event(messages: list[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The event the SQS event source mapping hands the function."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def run_worker(
    config: RuntimeConfig,
    stop: Flag,
    index: int,
    signals: WorkerSignals | None = None,
    paused: Flag | None = None,
) -> None:
    """Entry point of one poller (one concurrent execution): runs until `stop` is set; never dies of an
    invocation's failure. The function itself runs in an execution environment of its own (a child process)."""
    # The parent turns Ctrl-C (and a SIGTERM to the process group) into `stop`, and kills a poller that has not
    # stopped in time (WorkerPool.stop).
    leave_stopping_to_the_parent()
    if config.output_log is not None:
        redirect_output(config.output_log)
    session = local_session(config.region)  # endpoint: AWS_ENDPOINT_URL
    sqs, lambda_ = session.client("sqs"), session.client("lambda")
    logs = FunctionLogs(session.client("logs", config=metrics_client_config()), index)
    meter = _worker_meter(config, signals, index)
    environments = Environments(
        base_environment=dict(os.environ), logs=logs, cpu_share=config.cpu_share, cgroup_label=config.cgroup_label
    )
    try:
        _poll(sqs, lambda_, config, stop, index, environments, meter, signals=signals, paused=paused)
    finally:
        environments.stop()
        logs.flush()
        if meter is not None:
            meter.buffer.close()


def _worker_meter(config: RuntimeConfig, signals: WorkerSignals | None, index: int) -> WorkerMeter | None:
    if config.metrics_flush_seconds <= 0:
        return None

    def warn(message: str) -> None:
        print(f"worker {index}: metrics: {message}", file=sys.stderr, flush=True)

    cloudwatch = local_session(config.region).client("cloudwatch", config=metrics_client_config())
    buffer = MetricBuffer(cloudwatch, flush_every=config.metrics_flush_seconds, on_error=warn).start()
    return WorkerMeter(config.function_name, buffer, signals, index=index, timeout_seconds=config.timeout_seconds)


def _poll(
    sqs: Any,
    lambda_: Any,
    config: RuntimeConfig,
    stop: Flag,
    index: int,
    environments: Environments,
    meter: WorkerMeter | None,
    *,
    signals: WorkerSignals | None = None,
    paused: Flag | None = None,
) -> None:
    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None else os.getppid()
    with config.report_log.open("a", encoding="utf-8") as report_file:
        # A parent gone (SIGKILLed, OOM-killed) cannot say stop any more: this poller would run on for good.
        while not stop.is_set() and os.getppid() == parent:
            if paused is not None and paused.is_set():  # the trigger is disabled: nobody polls
                time.sleep(0.2)
                continue
            try:
                response = sqs.receive_message(
                    QueueUrl=config.queue_url,
                    MaxNumberOfMessages=config.batch_size,
                    WaitTimeSeconds=config.poll_wait_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                messages: list[dict[str, Any]] = [dict(message) for message in response.get("Messages", [])]
                # Like Lambda, the next invocation runs with the function's configuration as it is now.
                function = (
                    FunctionConfig.from_lambda(lambda_.get_function_configuration(FunctionName=config.function_name))
                    if messages
                    else None
                )
            except Exception as exc:  # noqa: BLE001 - the endpoint going away must not kill the poller
                print(f"worker {index}: receive failed: {exc}", file=sys.stderr, flush=True)
                time.sleep(1.0)
                continue
            if function is not None and _throttled(lambda_, config, signals, meter, index):
                time.sleep(1.0)  # Lambda's poller backs off while throttled
                continue
            if function is not None:
                runner = environments.runner(function)
                invoke(runner, messages, sqs, config, report_file, meter, function=function, logs=environments.logs)


def _throttled(
    lambda_: Any, config: RuntimeConfig, signals: WorkerSignals | None, meter: WorkerMeter | None, index: int
) -> bool:
    """Reserved concurrency as Lambda enforces it on an event source mapping, which polls regardless: an
    invocation beyond it is refused and counted in `Throttles`; its messages return to the queue after the
    visibility timeout, and that receive counts towards maxReceiveCount (so a long throttle fills the DLQ)."""
    try:
        answer = lambda_.get_function_concurrency(FunctionName=config.function_name)
    except Exception:  # noqa: BLE001 - no answer: no limit known, invoke as before
        return False
    reserved = answer.get("ReservedConcurrentExecutions")
    running = sum(signals.busy[:]) if signals is not None else 0
    if reserved is None or running < int(reserved):
        return False
    print(f"worker {index}: throttled (reserved concurrency {reserved})", file=sys.stderr, flush=True)
    if meter is not None:
        datum: Any = {
            "MetricName": "Throttles",
            "Dimensions": [{"Name": "FunctionName", "Value": config.function_name}],
            "Timestamp": datetime.now(UTC),
            "Value": 1.0,
            "Unit": "Count",
        }
        meter.buffer.add(LAMBDA_NAMESPACE, [datum])
    return True


Runner = Callable[[dict[str, Any], str], tuple[Outcome, float | None]]


class Environments:
    """The poller's execution environment: reused while the configuration stays, replaced when it changes
    (as `update-function-configuration` makes Lambda start fresh environments)."""

    def __init__(
        self, *, base_environment: Mapping[str, str], logs: FunctionLogs, cpu_share: bool, cgroup_label: str = ""
    ) -> None:
        self._base = dict(base_environment)
        self.logs = logs
        self._cpu_share = cpu_share
        self._cgroup_label = cgroup_label
        self._current: ExecutionEnvironment | None = None

    def runner(self, function: FunctionConfig) -> Runner:
        if self._current is not None and self._current.function != function:
            self._current.stop()
            self._current = None
        if self._current is None:
            self._current = ExecutionEnvironment(
                function,
                base_environment=self._base,
                on_output=lambda line: self.logs.line(function.log_group, line),
                cpu_share=self._cpu_share,
                cgroup_label=self._cgroup_label,
            )
        environment = self._current

        def run(event: dict[str, Any], request_id: str) -> tuple[Outcome, float | None]:
            cold = not environment.alive
            outcome = environment.invoke(event, request_id)
            return outcome, (environment.init_ms if cold else None)

        return run

    def stop(self) -> None:
        if self._current is not None:
            self._current.stop()
            self._current = None


def in_process(handler: Callable[[dict[str, Any], Any], Any], config: RuntimeConfig) -> Runner:
    """A runner that calls `handler` in this process (tests; no memory cap, no timeout enforcement)."""

    def run(event: dict[str, Any], request_id: str) -> tuple[Outcome, float | None]:
        context = LocalLambdaContext.create(
            config.function_name, timeout_seconds=config.timeout_seconds, memory_mb=config.memory_mb
        )
        started = time.perf_counter()
        try:
            result = handler(event, context)
        except Exception as exc:  # noqa: BLE001 - an invocation error, as Lambda reports it
            duration_ms = (time.perf_counter() - started) * 1000
            return Outcome("error", duration_ms, 0, None, type(exc).__name__, str(exc)), None
        duration_ms = (time.perf_counter() - started) * 1000
        return Outcome("success", duration_ms, math.ceil(peak_rss_kb() / 1024), result), None

    return run


def invoke(
    run: Runner,
    messages: list[dict[str, Any]],
    sqs: Any,
    config: RuntimeConfig,
    report_file: TextIO,
    meter: WorkerMeter | None = None,
    *,
    function: FunctionConfig | None = None,
    logs: FunctionLogs | None = None,
) -> set[str]:
    """One invocation; returns the ids of the messages left on the queue for redelivery."""
    function = function or FunctionConfig(config.function_name, "in-process", config.memory_mb, config.timeout_seconds)
    request_id = str(uuid.uuid4())
    event = sqs_event(messages, queue_arn=config.queue_arn, region=config.region)
    if meter is not None:
        meter.received(messages)
    concurrent = meter.started() if meter is not None else 1
    emit = logs.line if logs is not None else _print_line
    emit(function.log_group, f"START RequestId: {request_id} Version: $LATEST")
    outcome, init_ms = run(event, request_id)
    failed = {message["MessageId"] for message in messages}
    if outcome.status == "success":
        failed = {item["itemIdentifier"] for item in (outcome.result or {}).get("batchItemFailures", [])}
    for line in failure_lines(outcome, request_id, function.timeout_seconds):
        emit(function.log_group, line)
    done = [m for m in messages if m["MessageId"] not in failed]
    deleted = 0
    for start in range(0, len(done), 10):
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])]
        with contextlib.suppress(Exception):  # an undeleted message is redelivered and skipped as a duplicate
            response = sqs.delete_message_batch(QueueUrl=config.queue_url, Entries=entries)
            deleted += len(response.get("Successful", []))
    if meter is not None:
        meter.finished(
            duration_ms=outcome.duration_ms, error=outcome.status != "success", concurrent=concurrent, deleted=deleted
        )
    line = report_line(
        request_id,
        outcome.duration_ms,
        function.memory_mb,
        outcome.max_memory_mb or 1,
        init_ms,
        status=outcome.status,
        error_type=outcome.error_type,
    )
    emit(function.log_group, f"END RequestId: {request_id}")
    emit(function.log_group, line)
    report_file.write(line + "\n")
    report_file.flush()
    if logs is not None:
        logs.flush()
    return failed


def failure_lines(outcome: Outcome, request_id: str, timeout_seconds: int) -> list[str]:
    """What Lambda logs when an invocation fails, in its words."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if outcome.status == "timeout":
        return [f"{now} {request_id} Task timed out after {timeout_seconds:.2f} seconds"]
    if outcome.status in {"oom", "crash"}:
        return [f"RequestId: {request_id} Error: Runtime exited with error: signal: killed", outcome.error_type]
    if outcome.status == "error":
        # One line, as Lambda's console shows an invocation error; the traceback is in the function's log.
        return [f"{now} {request_id} [ERROR] {outcome.error_type}: {outcome.error_message}"]
    return []


def _print_line(log_group: str, line: str) -> None:
    print(line, flush=True)


class FunctionLogs:
    """Each function's log lines: printed (the console, or the stack log) and shipped to its CloudWatch Logs
    group, one stream per poller, as Lambda writes one stream per execution environment."""

    def __init__(self, logs: Any, index: int) -> None:
        self._logs = logs
        self._stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]local-{os.getpid()}-{index}"
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._streams: set[str] = set()
        self._lock = threading.Lock()

    def line(self, log_group: str, line: str) -> None:
        print(line, flush=True)
        if not line.strip():
            return  # CloudWatch Logs refuses an empty event (and with it the whole batch)
        with self._lock:
            self._pending.setdefault(log_group, []).append({"timestamp": int(time.time() * 1000), "message": line})

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for group, events in pending.items():
            try:
                if group not in self._streams:
                    with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                        self._logs.create_log_stream(logGroupName=group, logStreamName=self._stream)
                    self._streams.add(group)
                self._logs.put_log_events(logGroupName=group, logStreamName=self._stream, logEvents=events)
            except Exception as exc:  # noqa: BLE001 - logs are best effort: never fail an invocation for them
                print(f"CloudWatch Logs: {exc}", file=sys.stderr, flush=True)


class WorkerPool:
    """N worker processes, like N concurrent executions of the function."""

    def __init__(self, config: RuntimeConfig, workers: int, environment: dict[str, str]) -> None:
        self._config = config
        self._count = workers
        self._environment = environment
        self._context = multiprocessing.get_context("spawn")
        self._stop = Flag(self._context)
        self._paused = Flag(self._context)
        # Held while spawning and while stop() sets `_stop`: no poller is started once stopping has begun.
        self._spawning = threading.Lock()
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}  # by worker index
        # Shared with every worker process (and survive a replaced one) for the stack's SQS sampler.
        self.signals = WorkerSignals.create(self._context, workers)

    def start(self) -> WorkerPool:
        for index in range(self._count):
            self._spawn(index)
        return self

    def _spawn(self, index: int) -> bool:
        """Start poller `index` (in its slot of `_processes` as soon as it exists, so stop() finds it); False once
        stopping has begun."""
        with self._spawning:
            if self._stop.is_set():
                return False
            process = self._context.Process(
                target=run_worker,
                args=(self._config, self._stop, index, self.signals, self._paused),
                name=f"worker-{index}",
                daemon=True,
            )
            saved = dict(os.environ)
            os.environ.update(self._environment)  # spawn copies the parent's environment at start
            try:
                with stop_signals_blocked():
                    process.start()
            finally:
                os.environ.clear()
                os.environ.update(saved)
                if process.pid is not None:  # started, even if an interrupt ended start() right after
                    self._processes[index] = process
            return True

    def pause(self) -> None:
        """Stop polling, as a disabled event source mapping does (invocations in flight finish)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.set(False)

    def replace_dead(self) -> int:
        """Like Lambda starting a fresh execution environment after one crashed; returns how many."""
        if self._stop.is_set():
            return 0
        dead = [index for index, process in list(self._processes.items()) if not process.is_alive()]
        replaced = 0
        for index in dead:
            with contextlib.suppress(Exception):
                self.signals.set_busy(index, False)  # it died mid-invocation: that execution is over
            if not self._spawn(index):
                break
            replaced += 1
        return replaced

    def request_stop(self, timeout: float = 1.0) -> None:
        """Tell every poller to stop after its invocation in flight, and start no more; returns within `timeout`
        (a spawn in progress, which holds the lock, takes milliseconds; stop() lists the pollers again after it)."""
        acquired = self._spawning.acquire(timeout=max(0.0, timeout))
        try:
            self._stop.set()
        finally:
            if acquired:
                self._spawning.release()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the pollers within `timeout` seconds: those still running KILL_SECONDS before its end (an invocation
        in flight, output nobody reads) are killed with their execution environments, then everything is reaped and
        the environments' cgroups removed, all against the same deadline. Returns whether every poller is gone."""
        started = time.monotonic()
        deadline = started + max(0.0, timeout)
        kill_at = max(started, deadline - KILL_SECONDS)
        self.request_stop(min(1.0, kill_at - started))
        join_all(self._pollers(), kill_at)
        alive = [process for process in self._pollers() if process.is_alive()]  # listed again: a spawn that was
        if alive:  # under way when stopping began has registered its poller by now
            kill_trees((process.pid for process in alive if process.pid is not None), left(deadline))
            join_all(alive, deadline)
        if self._config.cgroup_label:  # those of environments whose poller died earlier too (a crash, an OOM kill)
            # At least CGROUP_GRACE_SECONDS: a process killed just now needs a moment to die and be reaped, and a
            # cgroup left behind outlives the stack (it comes out of the 3 s between the stop's deadline and the
            # watchdog, imgops.local).
            remove_cgroups(self._config.cgroup_label, timeout=max(left(deadline), CGROUP_GRACE_SECONDS))
        return not any(process.is_alive() for process in self._pollers())

    def _pollers(self) -> list[multiprocessing.process.BaseProcess]:
        return list(self._processes.values())


def left(deadline: float) -> float:
    """Seconds from now to `deadline` (a time.monotonic()), 0 once it has passed."""
    return max(0.0, deadline - time.monotonic())


def join_all(processes: Iterable[multiprocessing.process.BaseProcess], deadline: float) -> None:
    """Wait for all these processes until `deadline` (a time.monotonic()) at the latest: the same deadline for all,
    however many there are (and a dead one is reaped even once it has passed)."""
    for process in processes:
        process.join(left(deadline))
