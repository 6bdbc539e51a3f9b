"""CloudWatch metrics the local stack publishes the way AWS publishes them, so the deployed dashboards show data.

On AWS, Lambda, SQS and API Gateway publish `AWS/*` metrics themselves. Locally nobody does, so the local runtime
writes the same metric names, units and dimensions into the embedded CloudWatch (moto), which accepts `AWS/*`
namespaces (real CloudWatch rejects them: this module is for local endpoints only).

- `AWS/Lambda` (FunctionName), one datum each per invocation, like AWS: Invocations 1, Errors 0/1 (an unhandled
  exception, or running past the timeout Lambda would have enforced; returned `batchItemFailures` are not errors),
  Duration ms, Throttles 0 (1 for an invocation refused by the function's reserved concurrency, see
  localaws/runtime.py; a busy pool otherwise just polls later), ConcurrentExecutions =
  invocations of the function running at that moment, this one included. Per-invocation 0/1 values matter: the
  dashboards graph `Average` of Errors and Throttles as rates.
- `AWS/SQS` (QueueName), sampled every minute like AWS, for the work queue and the DLQ:
  ApproximateNumberOfMessagesVisible/NotVisible from GetQueueAttributes. NumberOfMessagesDeleted counts the
  workers' successful deletes (the DLQ: its net decrease, as nothing local deletes there). NumberOfMessagesSent is
  derived, since moto keeps no counter: net growth + deleted + moved to the DLQ. ApproximateAgeOfOldestMessage: the
  sampler never receives to peek (a receive counts towards maxReceiveCount and would push messages into the DLQ),
  so it is the longest wait (receive time - SentTimestamp) of any message a worker received during the interval,
  even if the queue is empty again at sample time; while messages wait and nobody receives any, the time since the
  sampler first saw them waiting (a lower bound, short by up to one interval); 0 for a queue that was empty and
  served nothing. It excludes processing time of in-flight messages, which AWS's metric includes.
  SentMessageSize: the work queue's messages arrive from S3 inside the embedded AWS, where nothing local sees
  them sent, so the workers report each message's size on its first receipt and the sampler publishes the
  interval's statistics (count, sum, min, max) with its sample.
- `AWS/ApiGateway` (ApiId, Stage) per request: Count, 4xx/5xx (0/1), Latency and IntegrationLatency ms.
- `AWS/DynamoDB` and `AWS/SNS`, observed by the embedded AWS itself (localaws/moto_process.py) in the
  requests it serves, aggregated per second (`StatisticsPublisher`). DynamoDB, data-plane operations: per
  (TableName, Operation) SuccessfulRequestLatency, SystemErrors, ThrottledRequests; per TableName
  ConsumedRead/WriteCapacityUnits (approximated from the item sizes in the request and response bodies by
  DynamoDB's rounding rules: 4 KB read units, halved for eventually consistent reads, 1 KB write units, double for
  transactions), Read/WriteThrottleEvents, ConditionalCheckFailedRequests; ReturnedItemCount for Query/Scan;
  UserErrors (no dimensions) for every request. SNS per TopicName and published message:
  NumberOfMessagesPublished, PublishSize, NumberOfNotificationsDelivered/FilteredOut (the topic's subscriptions,
  matched against their filter policies), NumberOfNotificationsFailed. Errors and throttles are 0/1 per request,
  as above (moto never throttles).

Nothing here may disturb what it measures: datums go into a bounded buffer that a daemon thread flushes with
batched PutMetricData; a failed call drops its batch and is reported at most once a minute.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.config import Config

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.sharedctypes import Synchronized, SynchronizedArray

    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef
    from mypy_boto3_sqs import SQSClient

LAMBDA_NAMESPACE = "AWS/Lambda"
SQS_NAMESPACE = "AWS/SQS"
API_NAMESPACE = "AWS/ApiGateway"
# PutMetricData takes at most 1,000 datums per call.
MAX_DATUMS_PER_CALL = 1000
# A worker handles ~10 invocations per flush; this is minutes of backlog if the endpoint is down, then the oldest go.
MAX_PENDING_DATUMS = 20_000
DEFAULT_FLUSH_SECONDS = 5.0
# How often AWS publishes the SQS metrics.
DEFAULT_SAMPLE_SECONDS = 60.0
ERROR_REPORT_INTERVAL_SECONDS = 60.0


def metrics_client_config() -> Config:
    """Short timeouts and one retry: a stuck metrics call must not hold a worker's shutdown."""
    return Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class MetricBuffer:
    """Datums from any thread, sent in batches by a daemon thread: `add` never blocks on CloudWatch or raises."""

    def __init__(
        self,
        cloudwatch: CloudWatchClient,
        *,
        flush_every: float = DEFAULT_FLUSH_SECONDS,
        max_pending: int = MAX_PENDING_DATUMS,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._cloudwatch = cloudwatch
        self._flush_every = flush_every
        self._pending: collections.deque[tuple[str, MetricDatumTypeDef]] = collections.deque(maxlen=max_pending)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_error = on_error
        self._last_error_report = float("-inf")
        self.sent = 0
        self.dropped = 0

    def add(self, namespace: str, datums: Iterable[MetricDatumTypeDef]) -> None:
        with self._lock:
            for datum in datums:
                if len(self._pending) == self._pending.maxlen:
                    self.dropped += 1  # the deque drops the oldest
                self._pending.append((namespace, datum))

    def flush(self) -> int:
        """Send everything pending; returns how many datums CloudWatch accepted."""
        with self._flush_lock:
            with self._lock:
                pending = list(self._pending)
                self._pending.clear()
            by_namespace: dict[str, list[MetricDatumTypeDef]] = {}
            for namespace, datum in pending:
                by_namespace.setdefault(namespace, []).append(datum)
            accepted = 0
            for namespace, datums in by_namespace.items():
                for start in range(0, len(datums), MAX_DATUMS_PER_CALL):
                    batch = datums[start : start + MAX_DATUMS_PER_CALL]
                    try:
                        self._cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
                    except Exception as exc:  # noqa: BLE001 - metrics are best effort by design
                        self.dropped += len(batch)
                        self._report(f"PutMetricData {namespace} failed, {len(batch)} datums dropped: {exc}")
                    else:
                        accepted += len(batch)
            self.sent += accepted
            return accepted

    def _report(self, message: str) -> None:
        now = time.monotonic()
        if self._on_error is not None and now - self._last_error_report >= ERROR_REPORT_INTERVAL_SECONDS:
            self._last_error_report = now
            with contextlib.suppress(Exception):
                self._on_error(message)

    def start(self) -> MetricBuffer:
        self._thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._flush_every):
            self.flush()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and send what is left, within about `timeout` seconds: a last flush still waiting on
        CloudWatch then is left to a daemon thread, so a stop with a deadline (LocalStack.stop) keeps it."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        last = threading.Thread(target=self.flush, name="metrics-last-flush", daemon=True)
        last.start()
        last.join(max(0.0, deadline - time.monotonic()))  # no more: the caller's deadline is this one's


class Periodic:
    """`task` every `every` seconds on a daemon thread (first at once when `run_first`); failures are reported only."""

    def __init__(
        self,
        name: str,
        every: float,
        task: Callable[[], object],
        *,
        run_first: bool = False,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._name = name
        self._every = every
        self._task = task
        self._run_first = run_first
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def _loop(self) -> None:
        if self._run_first:
            self.run_now()
        while not self._stop.wait(self._every):
            self.run_now()

    def run_now(self) -> None:
        try:
            self._task()
        except Exception as exc:  # noqa: BLE001 - one failed sample must not end the schedule
            if self._on_error is not None:
                with contextlib.suppress(Exception):
                    self._on_error(f"{self._name}: {exc}")

    def stop(self, timeout: float = 10.0) -> None:
        """No more runs; wait up to `timeout` for one in progress (0: tell it and return, to stop several at once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


# --- AWS/Lambda ---------------------------------------------------------------------------------------------


def invocation_datums(
    function_name: str, *, duration_ms: float, error: bool, concurrent: int, timestamp: datetime
) -> list[MetricDatumTypeDef]:
    """What Lambda publishes for one invocation of `function_name`."""
    dimensions: list[DimensionTypeDef] = [{"Name": "FunctionName", "Value": function_name}]

    def datum(name: str, value: float, unit: Any) -> MetricDatumTypeDef:
        return {"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp, "Value": value, "Unit": unit}

    return [
        datum("Invocations", 1.0, "Count"),
        datum("Errors", 1.0 if error else 0.0, "Count"),
        datum("Duration", round(duration_ms, 2), "Milliseconds"),
        datum("Throttles", 0.0, "Count"),
        datum("ConcurrentExecutions", float(max(concurrent, 1)), "Count"),
    ]


class InFlight:
    """Concurrent invocations of one function inside one process (the local API's handlers share a process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def enter(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def leave(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)


def metered(
    function_name: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    buffer: MetricBuffer,
    *,
    timeout_seconds: float,
    on_duration: Callable[[float], None] | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """`handler`, publishing AWS/Lambda datums for each call; exceptions still propagate to the caller."""
    in_flight = InFlight()

    def call(event: dict[str, Any], context: Any) -> dict[str, Any]:
        concurrent = in_flight.enter()
        started = time.perf_counter()
        error = True
        try:
            result = handler(event, context)
            error = False
            return result
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            in_flight.leave()
            with contextlib.suppress(Exception):
                if on_duration is not None:
                    on_duration(duration_ms)
                buffer.add(
                    LAMBDA_NAMESPACE,
                    invocation_datums(
                        function_name,
                        duration_ms=duration_ms,
                        error=error or duration_ms > timeout_seconds * 1000,
                        concurrent=concurrent,
                        timestamp=datetime.now(UTC),
                    ),
                )

    return call


# --- Worker processes → the sampler -----------------------------------------------------------------------

NO_WAIT = -1.0


@dataclass(frozen=True)
class WorkerSignals:
    """Counters the worker processes share with the stack's sampler (created before the workers are spawned)."""

    # 1 while worker i runs an invocation: a flag per worker, so a replaced (crashed) worker cannot leave a
    # count behind.
    busy: SynchronizedArray[int]
    deleted: Synchronized[int]
    # Longest wait (s) of a message received since the sampler last looked; NO_WAIT when nothing was received.
    longest_wait: Synchronized[float]
    # Sizes of the messages received for the first time since the sampler last looked: count, sum, min, max.
    sent_sizes: SynchronizedArray[float]

    @classmethod
    def create(cls, context: BaseContext, workers: int) -> WorkerSignals:
        return cls(
            busy=context.Array(ctypes.c_byte, workers),
            deleted=context.Value(ctypes.c_long, 0),
            longest_wait=context.Value(ctypes.c_double, NO_WAIT),
            sent_sizes=context.Array(ctypes.c_double, _EMPTY_SIZES),
        )

    def set_busy(self, index: int, busy: bool) -> int:
        """Mark worker `index`; returns how many workers are busy now."""
        with self.busy.get_lock():
            self.busy[index] = 1 if busy else 0
            return sum(self.busy[:])

    def take_deleted(self) -> int:
        with self.deleted.get_lock():
            value = int(self.deleted.value)
            self.deleted.value = 0
        return value

    def take_longest_wait(self) -> float | None:
        with self.longest_wait.get_lock():
            value = float(self.longest_wait.value)
            self.longest_wait.value = NO_WAIT
        return None if value == NO_WAIT else value

    def add_sent_sizes(self, sizes: Sequence[int]) -> None:
        if not sizes:
            return
        with self.sent_sizes.get_lock():
            count, total, smallest, largest = self.sent_sizes[:]
            self.sent_sizes[:] = [count + len(sizes), total + sum(sizes), min(smallest, *sizes), max(largest, *sizes)]

    def take_sent_sizes(self) -> tuple[int, float, float, float] | None:
        """(count, sum, minimum, maximum) of the sizes added since the last call; None if there were none."""
        with self.sent_sizes.get_lock():
            count, total, smallest, largest = self.sent_sizes[:]
            self.sent_sizes[:] = list(_EMPTY_SIZES)
        return (int(count), total, smallest, largest) if count else None


_EMPTY_SIZES: Final = (0.0, 0.0, float("inf"), float("-inf"))


def sqs_message_size(message: Mapping[str, Any]) -> int:
    """SentMessageSize as SQS counts it: the body plus each message attribute's name, data type and value."""
    size = len(str(message.get("Body", "")).encode())
    for name, attribute in message.get("MessageAttributes", {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        size += len(value) if isinstance(value, bytes) else len(str(value).encode())
    return size


def first_receipts(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages received for the first time (a redelivery was sent once, and counted then)."""
    return [m for m in messages if str(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) == "1"]


def longest_wait_seconds(messages: Sequence[Mapping[str, Any]], now: float) -> float | None:
    """now - SentTimestamp of the oldest message in a received batch."""
    sent = [int(m["Attributes"]["SentTimestamp"]) for m in messages if "SentTimestamp" in m.get("Attributes", {})]
    return max(0.0, now - min(sent) / 1000) if sent else None


class WorkerMeter:
    """What one worker process records per invocation; every method swallows its own failures."""

    def __init__(
        self,
        function_name: str,
        buffer: MetricBuffer,
        signals: WorkerSignals | None,
        *,
        index: int,
        timeout_seconds: float,
    ) -> None:
        self.function_name = function_name
        self.buffer = buffer
        self._signals = signals
        self._index = index
        self._timeout_ms = timeout_seconds * 1000

    def received(self, messages: Sequence[Mapping[str, Any]]) -> None:
        with contextlib.suppress(Exception):
            wait = longest_wait_seconds(messages, time.time())
            if wait is not None and self._signals is not None:
                with self._signals.longest_wait.get_lock():
                    self._signals.longest_wait.value = max(self._signals.longest_wait.value, wait)
        with contextlib.suppress(Exception):
            if self._signals is not None:
                self._signals.add_sent_sizes([sqs_message_size(m) for m in first_receipts(messages)])

    def started(self) -> int:
        """Returns the function's concurrent executions, this one included."""
        if self._signals is None:
            return 1
        try:
            return self._signals.set_busy(self._index, True)
        except Exception:  # noqa: BLE001 - a wrong gauge beats a dead worker
            return 1

    def finished(self, *, duration_ms: float, error: bool, concurrent: int, deleted: int) -> None:
        with contextlib.suppress(Exception):
            if self._signals is not None:
                self._signals.set_busy(self._index, False)
                with self._signals.deleted.get_lock():
                    self._signals.deleted.value += deleted
            self.buffer.add(
                LAMBDA_NAMESPACE,
                invocation_datums(
                    self.function_name,
                    duration_ms=duration_ms,
                    error=error or duration_ms > self._timeout_ms,
                    concurrent=concurrent,
                    timestamp=datetime.now(UTC),
                ),
            )


# --- AWS/SQS ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRef:
    name: str
    url: str


@dataclass(frozen=True)
class QueueSnapshot:
    visible: int
    not_visible: int
    delayed: int = 0

    @property
    def total(self) -> int:
        return self.visible + self.not_visible + self.delayed


def read_snapshot(sqs: SQSClient, queue_url: str) -> QueueSnapshot:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return QueueSnapshot(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        not_visible=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


@dataclass
class BacklogAge:
    """ApproximateAgeOfOldestMessage without receiving (see the module docstring for what it means locally)."""

    waiting_since: float | None = None

    def update(self, now: float, snapshot: QueueSnapshot, longest_wait: float | None) -> float:
        if longest_wait is not None:  # workers took messages: the oldest of them is the best evidence there is,
            self.waiting_since = None  # even if the queue is empty again by now (a burst drains within a minute)
            return longest_wait
        if snapshot.total == 0:
            self.waiting_since = None
            return 0.0
        if self.waiting_since is None:
            self.waiting_since = now
        return now - self.waiting_since


def queue_datums(
    queue_name: str,
    *,
    snapshot: QueueSnapshot,
    age_seconds: float,
    sent: int | None,
    deleted: int | None,
    timestamp: datetime,
) -> list[MetricDatumTypeDef]:
    """One sample of a queue; `sent`/`deleted` are None on the first sample (no interval to count over yet)."""
    dimensions: list[DimensionTypeDef] = [{"Name": "QueueName", "Value": queue_name}]
    values: list[tuple[str, float | None, Any]] = [
        ("ApproximateNumberOfMessagesVisible", snapshot.visible, "Count"),
        ("ApproximateNumberOfMessagesNotVisible", snapshot.not_visible, "Count"),
        ("ApproximateAgeOfOldestMessage", round(age_seconds, 1), "Seconds"),
        ("NumberOfMessagesSent", sent, "Count"),
        ("NumberOfMessagesDeleted", deleted, "Count"),
    ]
    return [
        {"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp, "Value": float(value), "Unit": unit}
        for name, value, unit in values
        if value is not None
    ]


class QueueSampler:
    """One `sample()` per minute publishes AWS/SQS for the work queue and its DLQ."""

    def __init__(
        self,
        sqs: SQSClient,
        buffer: MetricBuffer,
        *,
        work: QueueRef,
        dead_letters: QueueRef,
        signals: WorkerSignals | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sqs = sqs
        self._buffer = buffer
        self._work = work
        self._dead_letters = dead_letters
        self._signals = signals
        self._clock = clock
        self._previous: tuple[QueueSnapshot, QueueSnapshot] | None = None
        self._work_age = BacklogAge()
        self._dlq_age = BacklogAge()

    def sample(self) -> list[MetricDatumTypeDef]:
        now = self._clock()
        work = read_snapshot(self._sqs, self._work.url)
        dlq = read_snapshot(self._sqs, self._dead_letters.url)
        deleted = self._signals.take_deleted() if self._signals is not None else 0
        longest_wait = self._signals.take_longest_wait() if self._signals is not None else None
        timestamp = _utc(now)
        work_sent = work_deleted = dlq_sent = dlq_deleted = None
        if self._previous is not None:
            previous_work, previous_dlq = self._previous
            dlq_change = dlq.total - previous_dlq.total
            dlq_sent, dlq_deleted = max(0, dlq_change), max(0, -dlq_change)
            work_deleted = deleted
            work_sent = max(0, work.total - previous_work.total + deleted + dlq_sent)
        self._previous = (work, dlq)
        datums = queue_datums(
            self._work.name,
            snapshot=work,
            age_seconds=self._work_age.update(now, work, longest_wait),
            sent=work_sent,
            deleted=work_deleted,
            timestamp=timestamp,
        ) + queue_datums(
            self._dead_letters.name,
            snapshot=dlq,
            age_seconds=self._dlq_age.update(now, dlq, None),
            sent=dlq_sent,
            deleted=dlq_deleted,
            timestamp=timestamp,
        )
        sizes = self._signals.take_sent_sizes() if self._signals is not None else None
        if sizes is not None:
            datums.append(sent_size_datum(self._work.name, sizes, timestamp))
        self._buffer.add(SQS_NAMESPACE, datums)
        return datums


def sent_size_datum(queue_name: str, sizes: tuple[int, float, float, float], timestamp: datetime) -> MetricDatumTypeDef:
    """SentMessageSize of the messages the workers received for the first time during the interval.

    Messages reach the work queue inside the embedded AWS (S3 event notifications), where nothing local sees them
    sent; a worker sees each once, when it first receives it. So the statistics are the sent messages' sizes,
    published at the sample after they were received rather than when they were sent.
    """
    count, total, smallest, largest = sizes
    return {
        "MetricName": "SentMessageSize",
        "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
        "Timestamp": timestamp,
        "StatisticValues": {"SampleCount": float(count), "Sum": total, "Minimum": smallest, "Maximum": largest},
        "Unit": "Bytes",
    }


# --- AWS/ApiGateway ---------------------------------------------------------------------------------------


def api_request_datums(
    api_id: str,
    stage: str,
    *,
    status: int,
    latency_ms: float,
    integration_latency_ms: float | None,
    timestamp: datetime,
) -> list[MetricDatumTypeDef]:
    """What an HTTP API publishes per request (per-request 0/1 for 4xx and 5xx: the dashboards average them)."""
    dimensions: list[DimensionTypeDef] = [{"Name": "ApiId", "Value": api_id}, {"Name": "Stage", "Value": stage}]
    values: list[tuple[str, float | None, Any]] = [
        ("Count", 1.0, "Count"),
        ("4xx", 1.0 if 400 <= status < 500 else 0.0, "Count"),
        ("5xx", 1.0 if status >= 500 else 0.0, "Count"),
        ("Latency", round(latency_ms, 2), "Milliseconds"),
        (
            "IntegrationLatency",
            None if integration_latency_ms is None else round(integration_latency_ms, 2),
            "Milliseconds",
        ),
    ]
    return [
        {"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp, "Value": value, "Unit": unit}
        for name, value, unit in values
        if value is not None
    ]


# --- Observations aggregated per second (the embedded AWS's own AWS/DynamoDB and AWS/SNS) --------------------


@dataclass(frozen=True)
class Observation:
    """One value of one metric, before aggregation (dimensions as name/value pairs, in AWS's order)."""

    name: str
    dimensions: tuple[tuple[str, str], ...]
    value: float
    unit: str


@dataclass
class _Statistics:
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


# region, namespace, metric name, dimensions, unit, whole second
_StatisticsKey = tuple[str, str, str, tuple[tuple[str, str], ...], str, int]


class StatisticsPublisher:
    """Observations from a request path, published as one StatisticValues datum per metric and second.

    `observe` only updates a dict under a lock (no I/O, never raises); a daemon thread turns the statistics into
    datums and sends them through one MetricBuffer per region, whose client `connect(region)` makes on first use,
    on that thread: nothing is connected while the caller starts. Per-second statistics keep every statistic
    CloudWatch computes (Sum, Average, Minimum, Maximum, SampleCount) exact at any period of 1 s or more, with a
    datum count that does not grow with the request rate.
    """

    def __init__(
        self,
        connect: Callable[[str], CloudWatchClient],
        *,
        flush_every: float = DEFAULT_FLUSH_SECONDS,
        max_keys: int = MAX_PENDING_DATUMS,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._connect = connect
        self._flush_every = flush_every
        self._max_keys = max_keys
        self._on_error = on_error
        self._statistics: dict[_StatisticsKey, _Statistics] = {}
        self._buffers: dict[str, MetricBuffer] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def observe(
        self, region: str, namespace: str, observations: Iterable[Observation], timestamp: float | None = None
    ) -> None:
        second = int(time.time() if timestamp is None else timestamp)
        with contextlib.suppress(Exception), self._lock:
            for item in observations:
                key = (region, namespace, item.name, item.dimensions, item.unit, second)
                statistics = self._statistics.get(key)
                if statistics is None:
                    if len(self._statistics) >= self._max_keys:  # the endpoint is down and the map is full
                        self.dropped += 1
                        continue
                    statistics = self._statistics[key] = _Statistics()
                statistics.add(float(item.value))

    def flush(self) -> int:
        """Send what was observed; returns how many datums CloudWatch accepted."""
        with self._flush_lock:
            with self._lock:
                taken, self._statistics = self._statistics, {}
            by_region: dict[str, dict[str, list[MetricDatumTypeDef]]] = {}
            for (region, namespace, name, dimensions, unit, second), statistics in taken.items():
                datum: MetricDatumTypeDef = {
                    "MetricName": name,
                    "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions],
                    "Timestamp": _utc(second),
                    "StatisticValues": {
                        "SampleCount": float(statistics.count),
                        "Sum": statistics.total,
                        "Minimum": statistics.minimum,
                        "Maximum": statistics.maximum,
                    },
                    "Unit": unit,  # type: ignore[typeddict-item] # one of CloudWatch's unit names
                }
                by_region.setdefault(region, {}).setdefault(namespace, []).append(datum)
            accepted = 0
            for region, namespaces in by_region.items():
                buffer = self._buffer(region)
                if buffer is None:
                    self.dropped += sum(len(datums) for datums in namespaces.values())
                    continue
                for namespace, datums in namespaces.items():
                    buffer.add(namespace, datums)
                accepted += buffer.flush()
            return accepted

    def _buffer(self, region: str) -> MetricBuffer | None:
        if region not in self._buffers:
            try:
                client = self._connect(region)
            except Exception as exc:  # noqa: BLE001 - metrics are best effort
                if self._on_error is not None:
                    with contextlib.suppress(Exception):
                        self._on_error(f"no CloudWatch client for {region}: {exc}")
                return None
            self._buffers[region] = MetricBuffer(client, flush_every=self._flush_every, on_error=self._on_error)
        return self._buffers[region]

    def start(self) -> StatisticsPublisher:
        self._thread = threading.Thread(target=self._run, name="service-metrics-flush", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._flush_every):
            with contextlib.suppress(Exception):
                self.flush()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(Exception):
            self.flush()


# --- AWS/DynamoDB -------------------------------------------------------------------------------------------

DYNAMODB_NAMESPACE = "AWS/DynamoDB"
SNS_NAMESPACE = "AWS/SNS"
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
THROTTLING_ERRORS = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})
CONDITION_FAILED = "ConditionalCheckFailedException"
# A read unit covers 4 KB (a strongly consistent read; an eventually consistent one costs half), a write unit 1 KB.
READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented rules, numbers approximated)."""
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        digits = str(content).lstrip("-").replace(".", "").lstrip("0") or "0"
        return len(digits) // 2 + 2
    if kind == "B":
        return len(str(content)) * 3 // 4  # base64 on the wire
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: member}) for member in content)
    if kind == "L":
        return 3 + sum(1 + attribute_size(member) for member in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_size(member) for name, member in content.items())
    return len(str(content).encode())


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of an item in DynamoDB's JSON: attribute names plus values."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


def _units(size: int, unit_bytes: int) -> float:
    return float(max(1, -(-size // unit_bytes)))


@dataclass(frozen=True)
class TableUse:
    """What one request did to one table: capacity consumed and items returned."""

    table: str
    read_units: float = 0.0
    write_units: float = 0.0
    returned_items: int | None = None


def table_uses(operation: str, request: Mapping[str, Any], response: Mapping[str, Any] | None) -> list[TableUse]:
    """Capacity per table, approximated from the request and response bodies as DynamoDB's rules count it.

    Reads: each item rounded up to 4 KB (Query and Scan: their total), half for eventually consistent reads.
    Writes: the written item rounded up to 1 KB; UpdateItem and DeleteItem from what the request (or a returned
    image) shows of the item, at least one unit. Transactions cost double. `response` is None when the request
    failed (a failed conditional write still consumes its write units).
    """
    answer = response or {}
    half = 0.5 if not request.get("ConsistentRead") else 1.0
    table = str(request.get("TableName", ""))
    if operation == "GetItem":
        return [TableUse(table, read_units=_units(item_size(answer.get("Item")), READ_UNIT_BYTES) * half)]
    if operation in ("Query", "Scan"):
        items = answer.get("Items", [])
        size = sum(item_size(item) for item in items)
        returned = int(answer.get("Count", len(items))) if response is not None else None
        return [TableUse(table, read_units=_units(size, READ_UNIT_BYTES) * half, returned_items=returned)]
    if operation == "PutItem":
        return [TableUse(table, write_units=_units(item_size(request.get("Item")), WRITE_UNIT_BYTES))]
    if operation in ("UpdateItem", "DeleteItem"):
        shown = item_size(request.get("Key")) + sum(
            attribute_size(value) for value in request.get("ExpressionAttributeValues", {}).values()
        )
        size = max(shown, item_size(answer.get("Attributes")))
        return [TableUse(table, write_units=_units(size, WRITE_UNIT_BYTES))]
    if operation == "BatchGetItem":
        uses = []
        for name, items in answer.get("Responses", {}).items():
            factor = 1.0 if request.get("RequestItems", {}).get(name, {}).get("ConsistentRead") else 0.5
            units = sum(_units(item_size(item), READ_UNIT_BYTES) for item in items) * factor
            uses.append(TableUse(name, read_units=units))
        return uses
    if operation == "BatchWriteItem":
        uses = []
        for name, requests in request.get("RequestItems", {}).items():
            units = sum(
                _units(item_size(entry.get("PutRequest", {}).get("Item")), WRITE_UNIT_BYTES) for entry in requests
            )
            uses.append(TableUse(name, write_units=units))
        return uses
    if operation in ("TransactWriteItems", "TransactGetItems"):
        totals: dict[str, float] = {}
        responses = answer.get("Responses", [])
        for index, entry in enumerate(request.get("TransactItems", [])):
            for action, body in entry.items():
                name = str(body.get("TableName", ""))
                if action == "Get":
                    got = responses[index].get("Item") if index < len(responses) else None
                    totals[name] = totals.get(name, 0.0) + 2 * _units(item_size(got), READ_UNIT_BYTES)
                else:
                    size = item_size(body.get("Item")) or item_size(body.get("Key"))
                    totals[name] = totals.get(name, 0.0) + 2 * _units(size, WRITE_UNIT_BYTES)
        read = operation == "TransactGetItems"
        return [
            TableUse(name, read_units=units if read else 0.0, write_units=0.0 if read else units)
            for name, units in totals.items()
        ]
    return [TableUse(table)] if table else []


def dynamodb_observations(
    operation: str,
    request: Mapping[str, Any],
    *,
    status: int,
    error_code: str,
    response: Mapping[str, Any] | None,
    latency_ms: float,
) -> list[Observation]:
    """What DynamoDB publishes for one request (per-request 0/1 for errors and throttles, as the local stack's
    other publishers do, so a quiet error graph shows 0 instead of nothing; moto never throttles)."""
    ok = 200 <= status < 300
    condition_failed = error_code == CONDITION_FAILED
    throttled = error_code in THROTTLING_ERRORS
    system_error = status >= 500
    user_error = 400 <= status < 500 and not condition_failed and not throttled
    observed = [Observation("UserErrors", (), 1.0 if user_error else 0.0, "Count")]
    if operation not in READ_OPERATIONS | WRITE_OPERATIONS or user_error:
        return observed  # the table-level metrics are the data plane's; a refused request names no real table
    uses = table_uses(operation, request, response if ok else None) if ok or condition_failed else []
    if not uses:
        uses = [TableUse(name) for name in _tables(operation, request)]
    for use in uses:
        table = (("TableName", use.table),)
        by_operation = (("TableName", use.table), ("Operation", operation))
        observed += [
            Observation("SystemErrors", by_operation, 1.0 if system_error else 0.0, "Count"),
            Observation("ThrottledRequests", by_operation, 1.0 if throttled else 0.0, "Count"),
        ]
        if operation in READ_OPERATIONS:
            observed.append(Observation("ReadThrottleEvents", table, 1.0 if throttled else 0.0, "Count"))
        if operation in WRITE_OPERATIONS:
            observed.append(Observation("WriteThrottleEvents", table, 1.0 if throttled else 0.0, "Count"))
        if ok:
            observed.append(Observation("SuccessfulRequestLatency", by_operation, round(latency_ms, 3), "Milliseconds"))
        if operation in WRITE_OPERATIONS and operation not in ("BatchWriteItem", "TransactWriteItems"):
            observed.append(Observation("ConditionalCheckFailedRequests", table, float(condition_failed), "Count"))
        if use.read_units:
            observed.append(Observation("ConsumedReadCapacityUnits", table, use.read_units, "Count"))
        if use.write_units:
            observed.append(Observation("ConsumedWriteCapacityUnits", table, use.write_units, "Count"))
        if use.returned_items is not None:
            observed.append(Observation("ReturnedItemCount", by_operation, float(use.returned_items), "Count"))
    return observed


def _tables(operation: str, request: Mapping[str, Any]) -> list[str]:
    if "TableName" in request:
        return [str(request["TableName"])]
    if operation.startswith("Batch"):
        return [str(name) for name in request.get("RequestItems", {})]
    if operation.startswith("Transact"):
        return sorted(
            {str(body.get("TableName", "")) for entry in request.get("TransactItems", []) for body in entry.values()}
        )
    return []


# --- AWS/SNS ------------------------------------------------------------------------------------------------


def sns_message_size(message: str, attributes: Mapping[str, Mapping[str, str]]) -> int:
    """What SNS counts as a message's size: the body plus each attribute's name, data type and value."""
    return len(message.encode()) + sum(
        len(name.encode()) + len(str(value.get("Type", "")).encode()) + len(str(value.get("Value", "")).encode())
        for name, value in attributes.items()
    )


def sns_publish_observations(
    topic_name: str, *, size: int, delivered: int | None, filtered: int | None, failed: int
) -> list[Observation]:
    """What SNS publishes for one published message: `delivered`/`filtered` None when they cannot be known."""
    topic = (("TopicName", topic_name),)
    values: list[tuple[str, float | None, str]] = [
        ("NumberOfMessagesPublished", 1.0, "Count"),
        ("PublishSize", float(size), "Bytes"),
        ("NumberOfNotificationsDelivered", None if delivered is None else float(delivered), "Count"),
        ("NumberOfNotificationsFilteredOut", None if filtered is None else float(filtered), "Count"),
        ("NumberOfNotificationsFailed", float(failed), "Count"),
    ]
    return [Observation(name, topic, value, unit) for name, value, unit in values if value is not None]


def sns_failed_delivery_observations(topic_name: str) -> list[Observation]:
    """A publish the embedded AWS refused while delivering (moto fails the whole Publish; SNS would count a failed
    notification and accept the message)."""
    return [Observation("NumberOfNotificationsFailed", (("TopicName", topic_name),), 1.0, "Count")]
