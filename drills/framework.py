"""What every drill shares: one time-compressed local stack, the alarms evaluated as CloudWatch would, the ops
topic's inbox, uploads, and the checks a drill ends with (the alarm OK again, nothing lost).

A drill is a function of a `Session`; it says what it expects before each step (`session.step`) and raises
`DrillFailed` on the first expectation that does not hold. `run_drills` starts the stack once and runs the
drills in a row: each starts from a stack with every alarm OK and leaves it so.

Time is compressed, the same way for every drill: alarm periods (1 minute to 1 hour) last
`ALARM_PERIOD_SECONDS`, the queue's 6-minute visibility timeout `VISIBILITY_SECONDS`, the worker's 60 s timeout
`WORKER_TIMEOUT_SECONDS`, the capacity publisher runs every `CAPACITY_PUBLISH_EVERY_SECONDS` (every minute on AWS)
and the reconciler every `BUCKET_METRICS_EVERY_SECONDS`. Thresholds that are times follow the same compression
(`compressed_thresholds`); the capacity thresholds are set by their drills just above what the local buckets hold,
since nobody uploads 500 GiB to a drill.

The capacity counter, publisher and reconciler run in the stack's process, where the `imgops faults` hook the
drills use for the API's handlers reaches them too. Their DynamoDB and S3 clients are made before the hook: a
drill's DynamoDB faults stand for IAM changes on the pipeline's roles, not on the counter's. Their CloudWatch clients
are made after it, so `cloudwatch:PutMetricData` faults reach the publisher and the reconciler
(`_faults_reach_the_api`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards import alarms
from dashboards.template import template_for
from loadtest.corpus import CorpusImage, build_corpus, parse_mix, upload_plan
from loadtest.corpus import default_cache_dir as corpus_cache_dir
from loadtest.harness import LoadTest, RunOptions
from loadtest.targets import LoadTarget
from localaws.faults import parse_rules, write_rules
from localaws.stack import LocalStack, LocalStackOptions
from monitoring import dlq
from monitoring.target import STATE_DIR_ENV, StackInfo, Target, faults_file, for_local, state_dir
from pipeline import store
from pipeline.errors import ImgopsError
from pipeline.resources import QUEUE_VISIBILITY_TIMEOUT_SECONDS, WORKER_TIMEOUT_SECONDS, ResourceNames

ALARM_PERIOD_SECONDS = 6  # a 5-minute period, compressed 50x
VISIBILITY_SECONDS = 2  # the work queue's 6-minute visibility timeout
DRILL_WORKER_TIMEOUT_SECONDS = 8  # the worker's 60 s timeout
BUCKET_METRICS_EVERY_SECONDS = 2  # the reconciler (hourly by default): at least two runs in every compressed period
CAPACITY_PUBLISH_EVERY_SECONDS = 1.2  # the capacity publisher's rate(1 minute), compressed 50x like 5 min -> 6 s
METRICS_FLUSH_SECONDS = 1.0
# How long a drill waits for an alarm to change state (a few compressed periods, on a loaded machine).
ALARM_WAIT_SECONDS = 60.0
PREFIX = "drill"
WIDTH = 80  # what a drill prints fits a terminal of 80 columns


class DrillFailed(ImgopsError, RuntimeError):
    """An expectation of a drill did not hold: the message says which."""


@dataclass(frozen=True)
class DrillOptions:
    timeout_seconds: float = 90.0  # each wait for images or queues
    corpus_cache: Path | None = None
    template: Path | None = None  # a synthesized template; default: the CDK app's (cached)
    healthy: int = 8  # the DLQ drill's uploads before the fault
    poison: int = 4  # and those that meet it


@dataclass(frozen=True)
class Drill:
    alarm: str  # the alarm's slug: `<prefix>-<alarm>`
    cause: str  # what the drill breaks, in a few words (help text, README)
    run: Callable[[Session], str]  # returns the PASSED line's details


@dataclass(frozen=True)
class DrillResult:
    alarm: str
    seconds: float
    details: str


# Thresholds that are times, scaled like the times they stand for: the queue age is a number of visibility
# timeouts (3 x 6 min), the worker's duration a share of its timeout (80 % of 60 s), the capacity queue's age a
# span of wall-clock time (15 min), compressed like a 5-minute period to ALARM_PERIOD_SECONDS.
TIME_THRESHOLDS = {
    "queue-oldest-message-age": VISIBILITY_SECONDS / QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    "worker-duration-near-timeout": DRILL_WORKER_TIMEOUT_SECONDS / WORKER_TIMEOUT_SECONDS,
    "capacity-event-lag": ALARM_PERIOD_SECONDS / 300,
}


def thresholds(template: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Every metric alarm's threshold, by slug."""
    return {
        str(r["Properties"]["AlarmName"]).removeprefix(f"{prefix}-"): float(r["Properties"]["Threshold"])
        for r in template.get("Resources", {}).values()
        if r.get("Type") == "AWS::CloudWatch::Alarm"
    }


def compressed_thresholds(template: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The time thresholds of `template`, compressed as the drill stack's times are."""
    deployed = thresholds(template, prefix)
    return {alarm: deployed[alarm] * factor for alarm, factor in TIME_THRESHOLDS.items() if alarm in deployed}


def with_thresholds(template: Mapping[str, Any], thresholds: Mapping[str, float], prefix: str) -> dict[str, Any]:
    """`template` with the named alarms' thresholds replaced (names without the prefix)."""
    changed = copy.deepcopy(dict(template))
    for resource in changed.get("Resources", {}).values():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        name = str(resource["Properties"].get("AlarmName", "")).removeprefix(f"{prefix}-")
        if name in thresholds:
            resource["Properties"]["Threshold"] = thresholds[name]
    return changed


def alarm_slugs(template: Mapping[str, Any], prefix: str) -> list[str]:
    """Every alarm and composite alarm of the template, by slug."""
    return sorted(
        str(resource["Properties"]["AlarmName"]).removeprefix(f"{prefix}-")
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DrillFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DrillFailed(message)


class Session:
    """The running drill stack and the tools a drill uses on it (those on-call's commands use)."""

    def __init__(
        self,
        stack: LocalStack,
        info: StackInfo,
        template: Mapping[str, Any],
        options: DrillOptions,
        say: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.info = info
        self.options = options
        self.say = say
        self.target: Target = for_local(info)
        self.user = LoadTarget(self.target, info.demo_username, info.demo_password)
        self.sqs = self.target.client("sqs")
        self.sns = self.target.client("sns")
        self.s3 = self.target.client("s3")
        self.lambda_ = self.target.client("lambda")
        self.events = self.target.client("events")
        self.cloudwatch = self.target.client("cloudwatch")
        self.table = self.target.table()
        names = ResourceNames(info.prefix)
        self.capacity_queue_url = str(self.sqs.get_queue_url(QueueName=names.capacity_queue)["QueueUrl"])
        self.capacity_dlq_url = str(self.sqs.get_queue_url(QueueName=names.capacity_dead_letter_queue)["QueueUrl"])
        self._base_template = dict(template)
        self._deployed = thresholds(template, info.prefix)
        self._thresholds: dict[str, float] = compressed_thresholds(template, info.prefix)
        self.template = with_thresholds(template, self._thresholds, info.prefix)
        self.inbox = _subscribe_inbox(self.sqs, self.sns, f"{info.prefix}-ops-alarms")
        self.notices: list[dict[str, Any]] = []  # every ops-topic message so far, oldest first
        self.last: dict[str, alarms.Evaluation] = {}
        self._step = 0
        self._mark = 0
        self.uploaded: list[str] = []  # this drill's image ids: each must end DONE
        mix = parse_mix("jpeg1080=1")
        cache = options.corpus_cache or corpus_cache_dir()
        self._mix = mix
        self._files = build_corpus(mix=mix, count=4, seed=11, cache_dir=cache)
        self._seed = 0

    @property
    def largest_upload_bytes(self) -> int:
        return max(image.size_bytes for image in self._files)

    # --- steps and alarms ---------------------------------------------------------------------------------

    def begin(self, alarm: str) -> None:
        self._step = 0
        self.uploaded = []
        self.drain()
        self._mark = len(self.notices)

    def step(self, text: str) -> None:
        self._step += 1
        for line in textwrap.wrap(f"{self._step}. {text}", WIDTH, subsequent_indent="   "):
            self.say(line)

    def note(self, text: str) -> None:
        for line in textwrap.wrap(text, WIDTH, initial_indent="   ", subsequent_indent="     "):
            self.say(line)

    def threshold(self, alarm: str) -> float:
        """The threshold the drill evaluates `alarm` with (compressed, or the template's)."""
        return self._thresholds.get(alarm, self._deployed[alarm])

    def deployed_threshold(self, alarm: str) -> float:
        return self._deployed[alarm]

    def set_threshold(self, alarm: str, value: float | None) -> None:
        """A drill's own compression of a threshold (None: back to the template's)."""
        if value is None:
            self._thresholds.pop(alarm, None)
        else:
            self._thresholds[alarm] = value
        self.template = with_thresholds(self._base_template, self._thresholds, self.info.prefix)

    def states(self) -> dict[str, str]:
        """`imgops alarms check` with compressed periods: every alarm's state (and the notices it sends)."""
        evaluations = alarms.check(self.template, self.target, period=ALARM_PERIOD_SECONDS)
        self.last = {e.alarm.name.removeprefix(f"{self.info.prefix}-"): e for e in evaluations}
        return {name: e.state for name, e in self.last.items()}

    def wait_state(self, alarm: str, state: str, timeout: float = ALARM_WAIT_SECONDS) -> None:
        try:
            wait_for(f"{alarm} to be {state}", lambda: self.states().get(alarm) == state, timeout, interval=1.0)
        except DrillFailed:
            evaluation = self.last.get(alarm)
            reason = f" (last: {evaluation.state}, {evaluation.reason})" if evaluation else ""
            raise DrillFailed(f"{alarm} did not become {state} within {timeout:.0f} s{reason}") from None

    def drain(self) -> list[dict[str, Any]]:
        """Move what the ops topic delivered into `notices`."""
        fresh = _drain(self.sqs, self.inbox)
        self.notices += fresh
        return fresh

    def notified(self, alarm: str, state: str) -> list[dict[str, Any]]:
        """This drill's notices of `alarm` entering `state`."""
        self.drain()
        name = f"{self.info.prefix}-{alarm}"
        return [m for m in self.notices[self._mark :] if m["AlarmName"] == name and m["NewStateValue"] == state]

    def expect_alarm(self, alarm: str, timeout: float = ALARM_WAIT_SECONDS) -> dict[str, Any]:
        """The alarm in ALARM, and its ALARM message on the ops topic; returns the message."""
        self.wait_state(alarm, "ALARM", timeout)
        messages = self.notified(alarm, "ALARM")
        expect(bool(messages), f"no ALARM notification for {alarm} on the ops topic")
        self.note(f"ALARM: {self.last[alarm].reason}"[:200])
        return messages[-1]

    def expect_ok(self, alarm: str, timeout: float = ALARM_WAIT_SECONDS) -> None:
        self.wait_state(alarm, "OK", timeout)
        expect(bool(self.notified(alarm, "OK")), f"no OK notification for {alarm} on the ops topic")

    def settle(self, timeout: float = ALARM_WAIT_SECONDS) -> None:
        """Every alarm OK: the stack as the next drill expects it."""

        def all_ok() -> bool:
            return all(state == "OK" for state in self.states().values())

        try:
            wait_for("every alarm to be OK", all_ok, timeout, interval=1.0)
        except DrillFailed:
            firing = {name: e.state for name, e in self.last.items() if e.state != "OK"}
            raise DrillFailed(f"alarms not OK after {timeout:.0f} s: {firing}") from None

    # --- the stack ----------------------------------------------------------------------------------------

    def faults(self, text: str) -> None:
        """`imgops faults set TEXT` (`""`: `imgops faults clear`)."""
        write_rules(faults_file(), parse_rules(text))

    @contextmanager
    def fault(self, text: str) -> Iterator[None]:
        self.faults(text)
        try:
            yield
        finally:
            self.faults("")

    def upload(self, count: int, user: LoadTarget | None = None) -> list[str]:
        """`count` uploads through the API (presign, then the presigned POST), not waiting for results."""
        self._seed += 1
        plan: list[CorpusImage] = upload_plan(self._files, self._mix, count, self._seed)
        run = LoadTest(user or self.user, plan, RunOptions(wait_for_results=False, concurrency=4)).run()
        sent = [r.image_id for r in run.records if r.status == "SENT"]
        expect(len(sent) == count, f"only {len(sent)} of {count} uploads went out: {run.counts()}")
        self.uploaded += sent
        return sent

    def status(self, image_id: str) -> str:
        return str((store.get(self.table, image_id) or {}).get("status", "MISSING"))

    def wait_done(self, image_ids: Sequence[str], timeout: float | None = None) -> None:
        """DONE and notified: the worker's last write to the item. A fault a drill injects right after DONE alone
        could still fail that write (the DynamoDB denial sent a finished image to the DLQ on a busy machine)."""

        def finished(image_id: str) -> bool:
            item = store.get(self.table, image_id) or {}
            return item.get("status") == "DONE" and bool(item.get("notified_at"))

        wait_for(
            f"{len(image_ids)} image(s) to be DONE and notified",
            lambda: all(finished(i) for i in image_ids),
            timeout or self.options.timeout_seconds,
        )

    def visible(self, queue_url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def redrive(self) -> int:
        """`imgops dlq redrive`: every DLQ message back to the work queue; returns how many moved."""
        moved = dlq.redrive(self.sqs, dlq_url=self.info.dlq_url, queue_url=self.info.queue_url, prefer_move_task=False)
        expect(moved.error == "", f"redrive failed: {moved.error}")
        return len(moved.moved)

    def worker_configuration(self) -> dict[str, Any]:
        return dict(self.lambda_.get_function_configuration(FunctionName=self.target.worker_function))

    def nothing_lost(self) -> int:
        """Every image this drill uploaded DONE, both queues and both capacity queues empty; returns how many
        images."""
        self.wait_done(self.uploaded)
        wait_for(
            "the work queue to drain", lambda: self.visible(self.info.queue_url) == 0, self.options.timeout_seconds
        )
        expect(self.visible(self.info.dlq_url) == 0, "the DLQ is not empty")
        wait_for(
            "the capacity queue to drain",
            lambda: self.visible(self.capacity_queue_url) == 0,
            self.options.timeout_seconds,
        )
        expect(self.visible(self.capacity_dlq_url) == 0, "the capacity DLQ is not empty")
        return len(self.uploaded)

    def capacity_top(self, bucket: str = "uploads", limit: int = 10) -> Any:
        """`imgops capacity top [--bucket B] [--limit N]`: the bucket's owners by bytes, from the counters."""
        from monitoring import capacity_top

        return capacity_top.read_top(
            self.target, which=capacity_top.Which(bucket), by=capacity_top.By.BYTES, limit=limit
        )

    def listed(self, bucket: str, prefix: str = "") -> list[tuple[str, int]]:
        """Every (key, size) in `bucket` under `prefix`: the truth the reconciler lists."""
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [(str(obj["Key"]), int(obj.get("Size", 0))) for obj in page.get("Contents", [])]
        return found


def run_drills(
    drills: Sequence[Drill],
    options: DrillOptions,
    say: Callable[[str], None],
    on_ready: Callable[[Session], None] | None = None,
) -> list[DrillResult]:
    """Start one time-compressed stack, then run `drills` in a row; raises DrillFailed on the first failure."""
    previous_state_dir = os.environ.get(STATE_DIR_ENV)
    name = drills[0].alarm if len(drills) == 1 else "all"
    log_file = state_dir() / "drills" / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgops-drill-") as home, _api_log(log_file), _handler_logs(log_file):
        os.environ[STATE_DIR_ENV] = home  # the drill's stack, state and faults stay its own
        try:
            stack_options = LocalStackOptions(
                workers=2,
                prefix=PREFIX,
                visibility_timeout_seconds=VISIBILITY_SECONDS,
                worker_timeout_seconds=DRILL_WORKER_TIMEOUT_SECONDS,
                sample_every_seconds=1.0,
                metrics_flush_seconds=METRICS_FLUSH_SECONDS,
                bucket_metrics_every_seconds=BUCKET_METRICS_EVERY_SECONDS,
                capacity_publish_every_seconds=CAPACITY_PUBLISH_EVERY_SECONDS,
                log_file=log_file,
            )
            with LocalStack(stack_options) as stack:
                started = time.monotonic()
                say(f"Starting a local stack, time compressed: alarm periods 5 min -> {ALARM_PERIOD_SECONDS} s,")
                say(
                    f"   visibility 6 min -> {VISIBILITY_SECONDS} s, worker timeout 60 -> "
                    f"{DRILL_WORKER_TIMEOUT_SECONDS} s, capacity metrics every"
                )
                say(
                    f"   {CAPACITY_PUBLISH_EVERY_SECONDS:g} s (1 min), reconciled every "
                    f"{BUCKET_METRICS_EVERY_SECONDS} s (1 h)"
                )
                say(f"   its log: {log_file}")
                info = stack.start()
                _faults_reach_the_api()
                say("Reading the CDK app's alarms (synthesized once, then cached)")
                template = template_for(options.template, info.prefix)
                session = Session(stack, info, template, options, say)
                if on_ready is not None:
                    on_ready(session)
                session.settle()
                say(f"   ready in {time.monotonic() - started:.0f} s")
                results = []
                for drill in drills:
                    say("")
                    say(f"== Drill {drill.alarm}: {drill.cause}")
                    started = time.monotonic()
                    session.begin(drill.alarm)
                    session.step(f"imgops alarms check: expect {drill.alarm} OK")
                    session.wait_state(drill.alarm, "OK")
                    details = drill.run(session)
                    session.settle()
                    results.append(DrillResult(drill.alarm, time.monotonic() - started, details))
                    say(f"   passed in {results[-1].seconds:.0f} s: {details}")
                return results
        finally:
            if previous_state_dir is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = previous_state_dir


def _faults_reach_the_api() -> None:
    """The local API's handlers run in this process: hook `imgops faults` into the clients they create, as the
    workers' execution environments do, so a drill can break the API's dependencies too.

    The capacity functions run here as well. Their DynamoDB and S3 clients are made first, from the session the
    hook does not touch: the drills' DynamoDB faults stand for IAM changes on the pipeline's roles (the worker's,
    the read API's), which leave the counter's alone. Their CloudWatch clients are made afresh after the hook, so a
    `cloudwatch:PutMetricData` fault reaches the publisher and the reconciler as it would their roles."""
    from localaws.faults import install_from_environment
    from monitoring import capacity_handlers, reconcile
    from pipeline import aws

    capacity_handlers._dynamodb()
    reconcile._s3()
    aws.forget_clients()
    install_from_environment()
    capacity_handlers.cloudwatch_client.cache_clear()
    reconcile._cloudwatch.cache_clear()


@contextmanager
def _api_log(path: Path) -> Iterator[None]:
    """The local API's own log (a failing handler's traceback) goes to the drill's log, not the console."""
    logger = logging.getLogger("localaws.api")
    handler = logging.FileHandler(path, encoding="utf-8")
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = previous


@contextmanager
def _handler_logs(path: Path) -> Iterator[None]:
    """The functions that run in the stack's process (the API's, the capacity counter, publisher and reconciler) log
    JSON lines to stdout as on Lambda: to the drill's log here, where the workers' lines go, not the console."""
    from monitoring import capacity_counter, capacity_publisher, reconcile
    from pipeline import presign, read_api

    handlers = [
        handler
        for module in (presign, read_api, capacity_counter, capacity_publisher, reconcile)
        for handler in module.logger.handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    with path.open("a", encoding="utf-8") as log:
        previous = [handler.stream for handler in handlers]
        for handler in handlers:
            handler.setStream(log)
        try:
            yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream)


def _subscribe_inbox(sqs: Any, sns: Any, topic_name: str) -> str:
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{topic_name}-oncall")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return str(inbox)


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    received = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in batch:
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return received
