"""Alarms proven against scenarios: synthetic metric series through the evaluator `alarms check` uses.

Each scenario is a story on-call knows (the worker failing every retry, a 5xx burst, a quiet night, a normal busy
hour, ...) told as the metrics AWS would publish during it: per-minute raw datapoints for the worker (AWS/Lambda),
the queues (AWS/SQS: the work queue, its DLQ and the capacity queue), the API (AWS/ApiGateway), the capacity
publisher's sizes and counts every minute and the reconciler's drift on its schedule (CustomS3; the CDK app's default
metrics_rate_minutes, hourly). Every minute, every alarm of the
synthesized template is evaluated over its own period and M-of-N window with `dashboards.alarms.decide` — the same
rule `imgops alarms check` applies to real metrics — and the scenario states which alarms must fire, within how
many minutes, and that every other alarm must never be in ALARM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.alarms import AlarmDefinition, alarms_from_template, composites_from_template, decide
from dashboards.config import AppConfig
from dashboards.template import PhysicalIds
from monitoring.capacity_handlers import COUNTER_MAX_RECEIVE_COUNT, COUNTER_TIMEOUT_SECONDS
from pipeline.resources import QUEUE_MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_TIMEOUT_SECONDS, ResourceNames

# What a resource's metrics are keyed by: (namespace, metric name, resource role).
MetricKey = tuple[str, str, str]
# Raw datapoints published during one minute (an empty list: nothing published).
Series = Callable[[int], list[float]]

VISIBILITY_MINUTES = QUEUE_VISIBILITY_TIMEOUT_SECONDS // 60
# The capacity queue's visibility timeout (6 x the counter's timeout, dashboards.constructs.capacity): 6 minutes.
CAPACITY_RETRY_MINUTES = 6 * COUNTER_TIMEOUT_SECONDS // 60
# The reconciler's schedule as the CDK app deploys it by default (metrics_rate_minutes): the stories' drift comes
# at this rate, so a template synthesized with another rate tells them on the wrong clock.
RECONCILE_MINUTES = AppConfig().metrics_rate_minutes


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    minutes: int
    series: Mapping[MetricKey, Series]
    must_fire: Mapping[str, int] = field(default_factory=dict)  # alarm slug → fires within N minutes

    def datapoints(self, key: MetricKey, start: float, end: float) -> list[float]:
        series = self.series.get(key)
        if series is None:
            return []
        return [value for minute in range(math.floor(start), math.ceil(end)) for value in series(minute)]


@dataclass
class Outcome:
    scenario: Scenario
    first_alarm: dict[str, int | None]  # alarm slug → first minute in ALARM (None: never)

    def problems(self) -> list[str]:
        found = []
        for slug, minute in self.first_alarm.items():
            limit = self.scenario.must_fire.get(slug)
            if limit is not None and (minute is None or minute > limit):
                seen = "never fired" if minute is None else f"fired after {minute} min"
                found.append(f"{self.scenario.name}: {slug} must fire within {limit} min, {seen}")
            if limit is None and minute is not None:
                found.append(f"{self.scenario.name}: {slug} must stay quiet, fired after {minute} min")
        missing = set(self.scenario.must_fire) - set(self.first_alarm)
        found += [f"{self.scenario.name}: the template has no alarm {slug}" for slug in sorted(missing)]
        return found


def _role(alarm: AlarmDefinition, names: ResourceNames) -> str:
    """Which resource an alarm watches, from its dimension values."""
    values = dict(alarm.dimensions)
    roles = {
        names.worker_function: "worker",
        names.work_queue: "work-queue",
        names.dead_letter_queue: "dlq",
        names.capacity_queue: "capacity-queue",
        names.capacity_dead_letter_queue: "capacity-dlq",
        names.upload_bucket: "uploads",
        names.processed_bucket: "processed",
    }
    for value in values.values():
        if value in roles:
            return roles[value]
    return "api" if "ApiId" in values else "other"


def _aggregate(stat: str, points: Sequence[float]) -> float | None:
    if not points:
        return None
    if stat == "Sum":
        return float(sum(points))
    if stat == "SampleCount":
        return float(len(points))
    if stat == "Average":
        return sum(points) / len(points)
    if stat == "Minimum":
        return min(points)
    if stat.startswith("p"):  # nearest-rank percentile, as CloudWatch approximates it
        ordered = sorted(points)
        rank = max(1, math.ceil(float(stat[1:]) / 100 * len(ordered)))
        return ordered[rank - 1]
    return max(points)


def values_at(
    alarm: AlarmDefinition, scenario: Scenario, key: MetricKey, clock: int, offset: int
) -> list[float | None]:
    """The alarm's last N complete periods at clock minute `clock`, oldest first. Periods are aligned to the
    clock, as CloudWatch aligns them; the story started at clock minute `offset`."""
    period = alarm.period // 60
    end = (clock // period) * period
    start = end - period * alarm.evaluation_periods
    return [
        _aggregate(
            alarm.stat,
            scenario.datapoints(key, start + i * period - offset, start + (i + 1) * period - offset),
        )
        for i in range(alarm.evaluation_periods)
    ]


def run(scenario: Scenario, template: Mapping[str, Any], prefix: str = "imgops") -> Outcome:
    """Every alarm's first minute in ALARM, in the worst alignment of the story to the clock's periods: a story
    that starts a minute before a period boundary can split across periods differently than one that starts on it."""
    names = ResourceNames(prefix)
    alarms = alarms_from_template(template, PhysicalIds(region="us-east-1"))
    first: dict[str, int | None] = {}
    for alarm in alarms:
        slug = alarm.name.removeprefix(f"{prefix}-")
        key = (alarm.namespace, alarm.metric_name, _role(alarm, names))
        worst: int | None = None
        fired_at_all = False
        for offset in range(alarm.period // 60):
            minute = next(
                (
                    clock - offset
                    for clock in range(offset + 1, offset + scenario.minutes + 1)
                    if decide(alarm, values_at(alarm, scenario, key, clock, offset)).state == "ALARM"
                ),
                None,
            )
            if minute is None:
                worst = None if not fired_at_all else worst
                if slug in scenario.must_fire:
                    worst, fired_at_all = None, True  # fails to fire in this alignment: the worst case
                    break
                continue
            fired_at_all = True
            worst = minute if worst is None else max(worst, minute)
        first[slug] = worst
    for composite in composites_from_template(template, PhysicalIds(region="us-east-1")):
        fired = [first[c.removeprefix(f"{prefix}-")] for c in composite.children]
        minutes = [minute for minute in fired if minute is not None]
        first[composite.name.removeprefix(f"{prefix}-")] = min(minutes) if minutes else None
    return Outcome(scenario, first)


# --- The stories ----------------------------------------------------------------------------------------------


def _every(minutes: int, value: float, *, start: int | None = None) -> Series:
    """`value` every `minutes` from minute `start` on (None: since long before the story began)."""
    first = start if start is not None else 0
    return lambda m: [value] if (start is None or m >= start) and (m - first) % minutes == 0 else []


def _per_minute(values: Callable[[int], list[float]]) -> Series:
    return values


def _capacity_reporting() -> dict[MetricKey, Series]:
    """Healthy capacity metrics: the publisher's counts and sizes every minute for both buckets, the reconciler's
    drift (none) every 5 minutes, the counter draining the capacity queue within a second or two."""
    return {
        ("CustomS3", "NumberOfObjects", "uploads"): _every(1, 1200),
        ("CustomS3", "NumberOfObjects", "processed"): _every(1, 3600),
        ("CustomS3", "BucketSizeBytes", "uploads"): _every(1, 3.2e9),
        ("CustomS3", "DriftObjects", "uploads"): _every(RECONCILE_MINUTES, 0),
        ("CustomS3", "DriftObjects", "processed"): _every(RECONCILE_MINUTES, 0),
        ("CustomS3", "DriftOwners", "uploads"): _every(RECONCILE_MINUTES, 0),
        ("CustomS3", "DriftOwners", "processed"): _every(RECONCILE_MINUTES, 0),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "capacity-queue"): _every(1, 1),
    }


def _stops(series: Series) -> Series:
    return lambda m: series(m) if m < 0 else []


def _publisher_stops() -> dict[MetricKey, Series]:
    """The publisher's datapoints end at minute 0 (the reconciler's go on)."""
    healthy = _capacity_reporting()
    published = [key for key in healthy if key[1] in ("NumberOfObjects", "BucketSizeBytes")]
    return {**healthy, **{key: _stops(healthy[key]) for key in published}}


def _reconciled(drift: Callable[[int], float], bucket: str, owners: int = 1) -> dict[MetricKey, Series]:
    """The reconciler's DriftObjects for `bucket`: `drift(run)` at each run, run 0 at minute 0, one every
    RECONCILE_MINUTES (negative runs: before the story); DriftOwners: `owners` while there is drift, else 0."""

    def at_runs(value: Callable[[int], float]) -> Series:
        return lambda m: [value(m // RECONCILE_MINUTES)] if m % RECONCILE_MINUTES == 0 else []

    return {
        ("CustomS3", "DriftObjects", bucket): at_runs(drift),
        ("CustomS3", "DriftOwners", bucket): at_runs(lambda run: float(owners) if drift(run) else 0.0),
    }


def _idle_queues() -> dict[MetricKey, Series]:
    """AWS publishes the queues' metrics every minute, traffic or not."""
    return {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "dlq"): _every(1, 0),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "work-queue"): _every(1, 0),
    }


def _healthy_worker() -> dict[MetricKey, Series]:
    return {
        ("AWS/Lambda", "Errors", "worker"): _every(1, 0),
        ("AWS/Lambda", "Duration", "worker"): _per_minute(lambda m: [2300.0, 2900.0, 3400.0]),
        ("AWS/Lambda", "Throttles", "worker"): _every(1, 0),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "work-queue"): _every(1, 20),
    }


def _api(requests_per_minute: int, failing: Callable[[int], float]) -> dict[MetricKey, Series]:
    """One datapoint per request: 1 for a 5xx, 0 otherwise (what the HTTP API's 5xx metric averages)."""

    def series(minute: int) -> list[float]:
        failed = round(requests_per_minute * failing(minute))
        return [1.0] * failed + [0.0] * (requests_per_minute - failed)

    return {("AWS/ApiGateway", "5xx", "api"): series}


def _worker_failing_every_retry() -> dict[MetricKey, Series]:
    """Five uploads at minute 0; every attempt fails (all records → the invocation fails: Errors=1); SQS
    redelivers after the visibility timeout, up to maxReceiveCount, then the messages sit in the DLQ."""
    attempts = [i * VISIBILITY_MINUTES for i in range(QUEUE_MAX_RECEIVE_COUNT)]
    in_dlq_from = QUEUE_MAX_RECEIVE_COUNT * VISIBILITY_MINUTES
    return {
        ("AWS/Lambda", "Errors", "worker"): _per_minute(lambda m: [1.0] if m in attempts else []),
        ("AWS/Lambda", "Duration", "worker"): _per_minute(lambda m: [180.0] if m in attempts else []),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "dlq"): _per_minute(
            lambda m: [5.0] if m >= in_dlq_from else [0.0]
        ),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "work-queue"): _per_minute(
            lambda m: [60.0 * m] if 0 <= m < in_dlq_from else [0.0]
        ),
    }


def _poison_event_age(minute: int) -> list[float]:
    """The capacity queue's oldest age with one event, sent at minute 0, that fails every receive. It is received
    every visibility timeout (0, 6, 12, ... min); the worst case of what SQS is observed to do is taken: the metric
    resets its age after every 3 receives (the documentation says it stops counting it), so it ages from minute 12
    again until the sixth receive (minute 30) sends it to the DLQ. Every other event is a second old."""
    reset = 2 * CAPACITY_RETRY_MINUTES  # the third receive
    dead_letter = COUNTER_MAX_RECEIVE_COUNT * CAPACITY_RETRY_MINUTES  # the receive after the last allowed one
    if minute < 0 or minute >= dead_letter:
        return [1.0]
    return [60.0 * (minute if minute < reset else minute - reset)]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "worker-failing",
        "Every attempt fails (a DynamoDB throttle on every PutItem); retries every visibility timeout.",
        minutes=40,
        series={**_capacity_reporting(), **_worker_failing_every_retry()},
        must_fire={
            "worker-fault-rate": 15,
            "dlq-not-empty": QUEUE_MAX_RECEIVE_COUNT * VISIBILITY_MINUTES + 5,
            "pipeline-unhealthy": 15,
        },
    ),
    Scenario(
        "api-5xx-burst",
        "Half of the API's requests answer 5xx for 20 minutes (a broken presign deploy).",
        minutes=30,
        series={**_capacity_reporting(), **_idle_queues(), **_api(40, lambda m: 0.5 if 2 <= m < 22 else 0.0)},
        must_fire={"api-5xx-rate": 20, "pipeline-unhealthy": 20},
    ),
    Scenario(
        "stuck-consumer",
        "Uploads keep arriving, the worker stops polling (disabled mapping): the oldest message only ages.",
        minutes=45,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", "work-queue"): _per_minute(lambda m: [60.0 * max(0, m)]),
        },
        must_fire={"queue-oldest-message-age": 35, "pipeline-unhealthy": 35},
    ),
    Scenario(
        "slow-worker",
        "A dependency slows down: invocations take 50-58 s of the 60 s timeout.",
        minutes=30,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            ("AWS/Lambda", "Duration", "worker"): _per_minute(
                lambda m: [50_000.0, 54_000.0, 58_000.0] if m >= 0 else [2300.0, 2900.0]
            ),
        },
        must_fire={"worker-duration-near-timeout": 20},
    ),
    Scenario(
        "throttling",
        "The account's concurrency is exhausted: the worker is throttled every minute.",
        minutes=30,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            ("AWS/Lambda", "Throttles", "worker"): _per_minute(lambda m: [3.0] if m >= 0 else [0.0]),
        },
        must_fire={"worker-throttles": 20},
    ),
    Scenario(
        "publisher-stopped",
        "The capacity publisher stops publishing (its schedule disabled, or it fails every run).",
        minutes=30,
        series={**_idle_queues(), **_healthy_worker(), **_publisher_stops()},
        must_fire={"s3-metrics-not-reporting-uploads": 5, "s3-metrics-not-reporting-processed": 5},
    ),
    Scenario(
        "capacity-counter-stopped",
        "The counter's SQS trigger is disabled; uploads go on: the capacity queue's oldest event only ages, and "
        "each reconciliation finds the counters further below the buckets.",
        minutes=4 * RECONCILE_MINUTES,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", "capacity-queue"): _per_minute(
                lambda m: [60.0 * m] if m >= 0 else [1.0]
            ),
            **_reconciled(lambda run: -40.0 * run if run > 0 else 0.0, "uploads"),
            **_reconciled(lambda run: -120.0 * run if run > 0 else 0.0, "processed"),
        },
        must_fire={
            "capacity-event-lag": 25,
            "capacity-drift-uploads": 3 * RECONCILE_MINUTES,
            "capacity-drift-processed": 3 * RECONCILE_MINUTES,
        },
    ),
    Scenario(
        "capacity-deletes-lost",
        "25 deletions' events never reach the counters (a purged capacity queue): the counters stay 25 objects "
        "above the upload bucket, in 3 uploaders' folders, until the reconciler corrects them.",
        minutes=4 * RECONCILE_MINUTES,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            **_reconciled(lambda run: 25.0 if run > 0 else 0.0, "uploads", owners=3),
        },
        must_fire={"capacity-drift-uploads": 3 * RECONCILE_MINUTES},
    ),
    Scenario(
        "capacity-events-lost",
        "40 uploads' object events end in the capacity DLQ (a counter bug); other events flow: the counters stay "
        "40 objects (and their 120 thumbnails) below the buckets until someone redrives.",
        minutes=4 * RECONCILE_MINUTES,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            **_reconciled(lambda run: -40.0 if run > 0 else 0.0, "uploads"),
            **_reconciled(lambda run: -120.0 if run > 0 else 0.0, "processed"),
        },
        must_fire={"capacity-drift-uploads": 3 * RECONCILE_MINUTES, "capacity-drift-processed": 3 * RECONCILE_MINUTES},
    ),
    Scenario(
        "poison-capacity-event",
        "One upload's event fails every counter batch: retried every 6 minutes, in the DLQ after 5 receives; the "
        "rest flow. The lag alarm stays quiet (one event, not a stuck counter); the drift of that upload fires.",
        minutes=max(45, 4 * RECONCILE_MINUTES),
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", "capacity-queue"): _per_minute(_poison_event_age),
            **_reconciled(lambda run: -1.0 if run > 0 else 0.0, "uploads"),
        },
        must_fire={"capacity-drift-uploads": 3 * RECONCILE_MINUTES},
    ),
    Scenario(
        "in-flight-drift",
        "A busy day: now and then a reconciliation counts objects whose events are still in the queue (-3, once "
        "+1 for a delete); the next one finds none. For the processed bucket, every other reconciliation.",
        minutes=24 * RECONCILE_MINUTES,
        series={
            **_capacity_reporting(),
            **_idle_queues(),
            **_healthy_worker(),
            **_reconciled(lambda run: (1.0 if run % 12 == 7 else -3.0) if run % 3 == 1 else 0.0, "uploads"),
            **_reconciled(lambda run: -3.0 if run % 2 == 1 else 0.0, "processed"),
        },
    ),
    Scenario(
        "quiet-night",
        "Eight hours without an upload: only the capacity metrics and the queues' idle metrics are published.",
        minutes=8 * 60,
        series={**_capacity_reporting(), **_idle_queues()},
    ),
    Scenario(
        "busy-hour",
        "A normal busy hour: invocations every minute, a few slow ones, no errors, 40 API requests a minute.",
        minutes=60,
        series={**_capacity_reporting(), **_idle_queues(), **_healthy_worker(), **_api(40, lambda m: 0.0)},
    ),
)


def run_all(template: Mapping[str, Any], prefix: str = "imgops") -> list[Outcome]:
    return [run(scenario, template, prefix) for scenario in SCENARIOS]
