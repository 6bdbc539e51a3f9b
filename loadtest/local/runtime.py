"""A local Lambda runtime for the worker: what the SQS event source mapping and Lambda do on AWS.

Each worker process long-polls the queue with the mapping's batch size, calls the real handler with an SQS
event and a Lambda-like context, deletes only the messages that did not come back in `batchItemFailures`,
and prints a REPORT line in AWS's format so one parser serves local and deployed runs. It also publishes the
`AWS/Lambda` metrics Lambda would (see loadtest/local/metrics.py), batched from a background thread.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.synchronize
import os
import resource
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aws_lambda_powertools.utilities.typing import LambdaContext

from loadtest.local.faults import install_from_environment
from loadtest.local.metrics import (
    DEFAULT_FLUSH_SECONDS,
    MetricBuffer,
    WorkerMeter,
    WorkerSignals,
    metrics_client_config,
)
from monitoring.target import local_session
from pipeline.resources import WORKER_BATCH_SIZE, WORKER_MEMORY_MB, WORKER_TIMEOUT_SECONDS


class LocalLambdaContext(LambdaContext):
    """Powertools' LambdaContext, filled in the way the Lambda runtime fills it."""

    def __init__(self, function_name: str, *, timeout_seconds: float, memory_mb: int = WORKER_MEMORY_MB) -> None:
        self._function_name = function_name
        self._function_version = "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._memory_limit_in_mb = memory_mb
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{function_name}"
        self._log_stream_name = f"local/{os.getpid()}"
        self._deadline = time.monotonic() + timeout_seconds

    @classmethod
    def create(
        cls, function_name: str, *, timeout_seconds: float, memory_mb: int = WORKER_MEMORY_MB
    ) -> LocalLambdaContext:
        return cls(function_name, timeout_seconds=timeout_seconds, memory_mb=memory_mb)

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override] # a static stub upstream
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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


def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: the latter survives exec, so a spawned worker would
    report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


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


def report_line(request_id: str, duration_ms: float, memory_mb: int, max_memory_mb: int, init_ms: float | None) -> str:
    """AWS's REPORT line, field for field (tab-separated, Billed Duration rounded up to 1 ms)."""
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_memory_mb} MB"
    )
    return line + (f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else "")


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
    stop: multiprocessing.synchronize.Event,
    index: int,
    signals: WorkerSignals | None = None,
) -> None:
    """Entry point of one worker process: runs until `stop` is set; never dies of a handler error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into `stop`
    if config.output_log is not None:
        redirect_output(config.output_log)
    # Faults hook the default session, which the handler's clients come from; the poller and the metrics
    # below use sessions of their own, as Lambda's poller is not the function.
    install_from_environment()
    init_started = time.perf_counter()
    from pipeline.worker import handler

    init_ms: float | None = (time.perf_counter() - init_started) * 1000
    sqs = local_session(config.region).client("sqs")  # endpoint: AWS_ENDPOINT_URL
    meter = _worker_meter(config, signals, index)
    try:
        _poll(handler, sqs, config, stop, index, init_ms, meter)
    finally:
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
    handler: Callable[[dict[str, Any], Any], Any],
    sqs: Any,
    config: RuntimeConfig,
    stop: multiprocessing.synchronize.Event,
    index: int,
    init_ms: float | None,
    meter: WorkerMeter | None,
) -> None:
    with config.report_log.open("a", encoding="utf-8") as report_file:
        while not stop.is_set():
            try:
                response = sqs.receive_message(
                    QueueUrl=config.queue_url,
                    MaxNumberOfMessages=config.batch_size,
                    WaitTimeSeconds=config.poll_wait_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:  # noqa: BLE001 - the endpoint going away must not kill the poller
                print(f"worker {index}: receive failed: {exc}", file=sys.stderr, flush=True)
                stop.wait(1.0)
                continue
            messages: list[dict[str, Any]] = [dict(message) for message in response.get("Messages", [])]
            if messages:
                invoke(handler, messages, sqs, config, report_file, init_ms, meter)
                init_ms = None


def invoke(
    handler: Callable[[dict[str, Any], Any], Any],
    messages: list[dict[str, Any]],
    sqs: Any,
    config: RuntimeConfig,
    report_file: TextIO,
    init_ms: float | None,
    meter: WorkerMeter | None = None,
) -> set[str]:
    """One invocation; returns the ids of the messages left on the queue for redelivery."""
    context = LocalLambdaContext.create(
        config.function_name, timeout_seconds=config.timeout_seconds, memory_mb=config.memory_mb
    )
    event = sqs_event(messages, queue_arn=config.queue_arn, region=config.region)
    if meter is not None:
        meter.received(messages)
    concurrent = meter.started() if meter is not None else 1
    started = time.perf_counter()
    failed = {message["MessageId"] for message in messages}
    crashed = True
    try:
        result = handler(event, context)
        failed = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])}
        crashed = False
    except Exception as exc:  # noqa: BLE001 - like Lambda: a failed invocation leaves the whole batch for redelivery
        # One line, as Lambda's console shows an invocation error; the per-record errors are in the handler's log.
        first_line = (str(exc).splitlines() or [""])[0]
        print(
            f"{context.aws_request_id} invocation failed: {type(exc).__name__}: {first_line}",
            file=sys.stderr,
            flush=True,
        )
    duration_ms = (time.perf_counter() - started) * 1000
    done = [m for m in messages if m["MessageId"] not in failed]
    deleted = 0
    for start in range(0, len(done), 10):
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])]
        with contextlib.suppress(Exception):  # an undeleted message is redelivered and skipped as a duplicate
            response = sqs.delete_message_batch(QueueUrl=config.queue_url, Entries=entries)
            deleted += len(response.get("Successful", []))
    if meter is not None:
        meter.finished(duration_ms=duration_ms, error=crashed, concurrent=concurrent, deleted=deleted)
    max_memory_mb = math.ceil(peak_rss_kb() / 1024)
    line = report_line(context.aws_request_id, duration_ms, config.memory_mb, max_memory_mb, init_ms)
    print(line, flush=True)
    report_file.write(line + "\n")
    report_file.flush()
    return failed


class WorkerPool:
    """N worker processes, like N concurrent executions of the function."""

    def __init__(self, config: RuntimeConfig, workers: int, environment: dict[str, str]) -> None:
        self._config = config
        self._count = workers
        self._environment = environment
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._processes: list[multiprocessing.process.BaseProcess] = []
        # Shared with every worker process (and survive a replaced one) for the stack's SQS sampler.
        self.signals = WorkerSignals.create(self._context, workers)

    def start(self) -> WorkerPool:
        self._processes = [self._spawn(index) for index in range(self._count)]
        return self

    def _spawn(self, index: int) -> multiprocessing.process.BaseProcess:
        saved = dict(os.environ)
        os.environ.update(self._environment)  # spawn copies the parent's environment at start
        try:
            process = self._context.Process(
                target=run_worker,
                args=(self._config, self._stop, index, self.signals),
                name=f"worker-{index}",
                daemon=True,
            )
            process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return process

    def replace_dead(self) -> int:
        """Like Lambda starting a fresh execution environment after one crashed; returns how many."""
        if self._stop.is_set():
            return 0
        dead = [index for index, process in enumerate(self._processes) if not process.is_alive()]
        for index in dead:
            with contextlib.suppress(Exception):
                self.signals.set_busy(index, False)  # it died mid-invocation: that execution is over
            self._processes[index] = self._spawn(index)
        return len(dead)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(2)
