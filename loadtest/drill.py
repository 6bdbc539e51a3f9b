"""`imgops drill dlq`: rehearse runbooks/dlq-not-empty.md end to end on a time-compressed local stack.

Healthy uploads, then uploads that meet an injected DynamoDB throttle (the worker sees exactly what AWS sends), so
they fail three times and land in the DLQ; the DLQ alarm fires and notifies; on-call's commands (inspect, clear
the cause, redrive) bring every image to DONE and the alarm back to OK. Each step states what it expects and
the drill fails on the first expectation that does not hold.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards import alarms
from dashboards.template import stack_template
from loadtest.corpus import build_corpus, parse_mix, upload_plan
from loadtest.harness import LoadTest, RunOptions
from loadtest.local.faults import parse_rules, write_rules
from loadtest.local.stack import LocalStack, LocalStackOptions
from loadtest.targets import LoadTarget
from monitoring import dlq
from monitoring.target import STATE_DIR_ENV, faults_file, for_local, state_dir
from pipeline import store
from pipeline.errors import ImgopsError

FAULT = "dynamodb:PutItem=1:ProvisionedThroughputExceededException"
ALARM_PERIOD_SECONDS = 6  # the DLQ alarm's 5-minute period, compressed
DLQ_ALARM = "dlq-not-empty"


class DrillFailed(ImgopsError, RuntimeError):
    pass


@dataclass(frozen=True)
class DrillOptions:
    healthy: int = 8
    poison: int = 4
    timeout_seconds: float = 90.0
    corpus_cache: Path | None = None


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DrillFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DrillFailed(message)


def run_drill(options: DrillOptions, say: Callable[[str], None]) -> dict[str, Any]:
    """Runs every step; raises DrillFailed naming the first broken expectation."""
    previous_state_dir = os.environ.get(STATE_DIR_ENV)
    # The stack's own output (the worker's log lines, REPORT lines) goes to a file that outlives the drill.
    log_file = state_dir() / "drills" / f"dlq-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgops-drill-") as home:
        os.environ[STATE_DIR_ENV] = home  # the drill's stack, state and faults stay its own
        try:
            stack_options = LocalStackOptions(
                workers=2, prefix="drill", visibility_timeout_seconds=2, sample_every_seconds=1.0, log_file=log_file
            )
            with LocalStack(stack_options) as stack:
                say("Starting a local stack with time-compressed retries (visibility 2 s) and metrics (1 s)")
                say(f"   its log: {log_file}")
                info = stack.start()
                stack_target = for_local(info)
                target = LoadTarget(stack_target, info.demo_username, info.demo_password)
                sqs, sns = target.client("sqs"), target.client("sns")
                table = stack_target.table()
                say("Reading the CDK app's alarms (synthesized once, then cached)")
                template = stack_template(info.prefix)
                inbox = _subscribe_inbox(sqs, sns, f"{info.prefix}-ops-alarms")

                def check_alarms() -> dict[str, str]:
                    evaluations = alarms.check(template, stack_target, period=ALARM_PERIOD_SECONDS)
                    return {e.alarm.name.removeprefix(f"{info.prefix}-"): e.state for e in evaluations}

                mix = parse_mix("jpeg1080=1")
                cache = options.corpus_cache or state_dir() / "corpus"
                files = build_corpus(mix=mix, count=4, seed=11, cache_dir=cache)

                say(f"1. Upload {options.healthy} healthy images: expect all DONE")
                healthy = LoadTest(
                    target, upload_plan(files, mix, options.healthy, 1), RunOptions(timeout_seconds=60)
                ).run()
                counts = healthy.counts()
                expect(counts.get("DONE") == options.healthy, f"healthy batch ended {counts}")

                say(f"2. Inject a DynamoDB throttle ({FAULT}) and upload {options.poison} more: expect them in the DLQ")
                write_rules(faults_file(), parse_rules(FAULT))
                poison_run = LoadTest(
                    target, upload_plan(files, mix, options.poison, 2), RunOptions(wait_for_results=False)
                ).run()
                poison_ids = [r.image_id for r in poison_run.records]
                expect(all(r.status == "SENT" for r in poison_run.records), "poison uploads did not all go out")
                wait_for(
                    f"{options.poison} messages in the DLQ",
                    lambda: _visible(sqs, info.dlq_url) >= options.poison,
                    options.timeout_seconds,
                )

                say("3. imgops alarms check: expect dlq-not-empty in ALARM and an ALARM message on the ops topic")
                wait_for("the DLQ alarm to fire", lambda: check_alarms()[DLQ_ALARM] == "ALARM", 30, interval=1.0)
                expect(
                    any(
                        m["NewStateValue"] == "ALARM" for m in _drain(sqs, inbox) if m["AlarmName"].endswith(DLQ_ALARM)
                    ),
                    "no ALARM notification for the DLQ alarm on the ops topic",
                )

                say("4. imgops dlq inspect: expect every poison image listed, the DLQ unchanged")
                listed = dlq.inspect(sqs, info.dlq_url, table)
                expect(
                    sorted(m.image_id for m in listed) == sorted(poison_ids),
                    f"inspect listed {[m.image_id for m in listed]}",
                )
                expect(_visible(sqs, info.dlq_url) == options.poison, "inspect consumed DLQ messages")
                for message in listed:
                    say(
                        f"   {message.message_id}  {message.s3_key}  "
                        f"receives={message.receive_count}  status={message.status or '-'}"
                    )

                say("5. Clear the cause (imgops faults clear), then imgops dlq redrive: expect every message moved")
                write_rules(faults_file(), [])
                moved = dlq.redrive(sqs, dlq_url=info.dlq_url, queue_url=info.queue_url, prefer_move_task=False)
                expect(moved.error == "", moved.error)
                expect(
                    moved.method == "move-task" or len(moved.moved) == options.poison, f"redrive moved {moved.moved}"
                )

                say("6. Expect every image DONE: nothing lost")
                wait_for(
                    "the redriven images to be DONE",
                    lambda: all((store.get(table, i) or {}).get("status") == "DONE" for i in poison_ids),
                    options.timeout_seconds,
                )
                expect(_visible(sqs, info.dlq_url) == 0, "the DLQ is not empty after the redrive")

                say("7. imgops alarms check: expect dlq-not-empty back to OK and an OK message on the ops topic")
                wait_for("the DLQ alarm to clear", lambda: check_alarms()[DLQ_ALARM] == "OK", 30, interval=1.0)
                expect(
                    any(m["NewStateValue"] == "OK" for m in _drain(sqs, inbox) if m["AlarmName"].endswith(DLQ_ALARM)),
                    "no OK notification for the DLQ alarm on the ops topic",
                )
                all_ids = [r.image_id for r in healthy.records] + poison_ids
                done = sum((store.get(table, i) or {}).get("status") == "DONE" for i in all_ids)
                expect(done == len(all_ids), f"{done} of {len(all_ids)} images DONE")
                return {"images": len(all_ids), "done": done, "redriven": len(poison_ids)}
        finally:
            if previous_state_dir is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = previous_state_dir


def _visible(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _subscribe_inbox(sqs: Any, sns: Any, topic_name: str) -> str:
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{topic_name}-oncall")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return str(inbox)


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    received = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
        for message in batch:
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return received
