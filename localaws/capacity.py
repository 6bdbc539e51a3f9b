"""The capacity counters on the local stack: what AWS runs around the counter and publisher
(monitoring.capacity_counter, monitoring.capacity_publisher).

- S3 → EventBridge → the capacity queue: the embedded AWS's object-event tap (localaws.object_events) sends each
  bucket's object changes, shaped as AWS shapes them, to the queue the template's rule targets
  (`event_routes` reads both from the template's rule: the buckets it matches and its SQS target);
- the counter's SQS event source mapping: a poller thread that gathers up to the mapping's batch size within its
  batching window and invokes the handler (in this process), deleting what it did not report as failed;
- the publisher's `rate(1 minute)` schedule is the stack's (localaws.stack).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localaws.metrics import MetricBuffer, WorkerMeter, WorkerSignals
from localaws.object_events import Mischief, Route
from localaws.runtime import RuntimeConfig, in_process, invoke
from monitoring.capacity_handlers import (
    COUNTER_BATCH_SIZE,
    COUNTER_BATCHING_WINDOW_SECONDS,
    COUNTER_MEMORY_MB,
    COUNTER_TIMEOUT_SECONDS,
)
from monitoring.target import StackInfo, for_local

S3_SOURCE = "aws.s3"


@dataclass(frozen=True)
class EventRoute:
    """Which buckets' object events go to which queue (from the template's EventBridge rule)."""

    buckets: tuple[str, ...]
    queue_name: str


def event_routes(info: StackInfo) -> list[EventRoute]:
    """The stack's rules on S3's events with an SQS target, as the template made them (described, not assumed)."""
    target = for_local(info)
    events = target.client("events")
    routes = []
    for rule in events.list_rules().get("Rules", []):
        pattern = json.loads(rule.get("EventPattern") or "{}")
        if S3_SOURCE not in pattern.get("source", []):
            continue
        buckets = tuple(pattern.get("detail", {}).get("bucket", {}).get("name", []))
        for rule_target in events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", []):
            arn = str(rule_target["Arn"])
            if arn.startswith("arn:aws:sqs:"):
                routes.append(EventRoute(buckets, arn.rsplit(":", 1)[-1]))
    return routes


def routes_for(info: StackInfo, mischief: Mischief) -> list[tuple[tuple[str, ...], Route]]:
    return [(route.buckets, Route(route.queue_name, info.region, mischief)) for route in event_routes(info)]


class _Dropped:
    """The counter's START/END/REPORT lines go nowhere: the stack's log holds the worker's, which the load test
    reads as the worker's invocations (its AWS/Lambda metrics are published all the same)."""

    def line(self, log_group: str, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class CounterPoller:
    """Lambda's SQS event source mapping for the counter function: one poller (its reserved share locally)."""

    def __init__(
        self,
        info: StackInfo,
        *,
        queue_name: str,
        function_name: str,
        handler: Callable[[dict[str, Any], Any], Any],
        buffer: MetricBuffer | None,
        unless_stopping: Callable[[], bool],
        batch_size: int = COUNTER_BATCH_SIZE,
        window_seconds: float = COUNTER_BATCHING_WINDOW_SECONDS,
    ) -> None:
        self._sqs = for_local(info).client("sqs")
        queue_url = self._sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        queue_arn = f"arn:aws:sqs:{info.region}:123456789012:{queue_name}"
        self.config = RuntimeConfig(
            queue_url=queue_url,
            queue_arn=queue_arn,
            region=info.region,
            function_name=function_name,
            report_log=Path(os.devnull),
            batch_size=batch_size,
            timeout_seconds=COUNTER_TIMEOUT_SECONDS,
            memory_mb=COUNTER_MEMORY_MB,
        )
        self.signals = WorkerSignals.create(multiprocessing.get_context(), 1)
        self._meter = (
            WorkerMeter(function_name, buffer, self.signals, index=0, timeout_seconds=COUNTER_TIMEOUT_SECONDS)
            if buffer is not None
            else None
        )
        self._run = in_process(handler, self.config)
        self._window = window_seconds
        self._running = unless_stopping
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="capacity-counter", daemon=True)
        self.invocations = 0

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        """As disabling the event source mapping does: nothing is received until `resume`."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))

    def poll_once(self) -> int:
        """One batch: up to the batch size, gathered within the batching window; returns how many were received."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self._window
        while len(messages) < self.config.batch_size and not self._stop.is_set():
            received = self._sqs.receive_message(
                QueueUrl=self.config.queue_url,
                MaxNumberOfMessages=min(10, self.config.batch_size - len(messages)),
                WaitTimeSeconds=0 if messages else 1,
                AttributeNames=["All"],
            ).get("Messages", [])
            messages += received
            if (not received and messages) or time.monotonic() >= deadline:
                break  # the queue is drained for now, or the window is over
        if messages and not self._stop.is_set():
            with Path(os.devnull).open("w", encoding="utf-8") as report:
                logs: Any = _Dropped()  # invoke() calls line() and flush(), as on FunctionLogs
                invoke(self._run, messages, self._sqs, self.config, report, self._meter, logs=logs)
            self.invocations += 1
        return len(messages)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set() or not self._running():
                self._stop.wait(0.5)
                continue
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - Lambda's poller keeps polling whatever one batch did
                self._stop.wait(1.0)
