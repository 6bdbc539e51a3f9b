"""A few hundred uploads through the local stack with faults on: AWS errors and throttling at a rate, worker
processes SIGKILLed mid-batch, duplicate deliveries. Nothing may go missing; after the faults stop and the DLQ is
redriven, every healthy image is DONE."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from loadtest.corpus import build_corpus, parse_mix, upload_plan
from loadtest.harness import LoadTest, RunOptions
from loadtest.targets import LoadTarget
from localaws.faults import parse_rules, write_rules
from localaws.stack import LocalStack, LocalStackOptions
from monitoring import dlq
from monitoring.target import STATE_DIR_ENV, faults_file, for_local, report_log
from pipeline import store
from tests.e2e.conftest import wait_until_drained

pytestmark = pytest.mark.slow

# Retried by the worker's SDK (4 attempts) and by SQS (3 receives); the SIGKILL hits before any write.
FAULTS = (
    "dynamodb:PutItem=0.3:ProvisionedThroughputExceededException,"
    "sns:Publish=0.3:Throttling,"
    "s3:PutObject=0.3:SlowDown,"
    "s3:GetObject=0.3:InternalError,"
    "s3:HeadObject=0.02:SIGKILL,"
    "s3:GetObject=0.02:SIGKILL"
)
HEALTHY = 100


def test_faults_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # Time-compressed: a 20 s function timeout (the claim lease; the local runtime stops an invocation there, so it
    # must hold a batch of 10 with the SDK's retries and backoff on a loaded 2-core machine) under a 24 s visibility.
    options = LocalStackOptions(
        workers=2, prefix="chaos", visibility_timeout_seconds=24, worker_timeout_seconds=20, metrics=False
    )
    with LocalStack(options) as stack:
        info = stack.start()
        target = LoadTarget(for_local(info), info.demo_username, info.demo_password)
        sqs, sns, s3 = target.client("sqs"), target.client("sns"), target.client("s3")
        table = target.stack.table()
        observer = sqs.create_queue(QueueName="chaos-observer")["QueueUrl"]
        observer_arn = sqs.get_queue_attributes(QueueUrl=observer, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=info.topic_arn, Protocol="sqs", Endpoint=observer_arn, Attributes={"RawMessageDelivery": "true"}
        )

        mix = parse_mix("jpeg1080=70,webp=30")
        files = build_corpus(mix=mix, count=4, seed=5, cache_dir=tmp_path / "corpus")
        write_rules(faults_file(), parse_rules(FAULTS))
        run = LoadTest(
            target, upload_plan(files, mix, HEALTHY, 3), RunOptions(concurrency=8, wait_for_results=False)
        ).run()
        healthy = [r.image_id for r in run.records if r.status == "SENT"]
        refused = Counter(f"{r.status}: {r.reason}" for r in run.records if r.status != "SENT")
        assert len(healthy) == HEALTHY, f"uploads not sent: {dict(refused)}"
        # Poison the user sends on purpose: these must end FAILED with a reason, faults or not.
        corrupt = [f"00000000-0000-4000-8000-{i:012d}" for i in range(5)]
        for image_id in corrupt:
            s3.put_object(Bucket=info.upload_bucket, Key=f"user-uploads/{info.demo_sub}/{image_id}.jpg", Body=b"<html>")
        # Duplicate deliveries: SQS may hand the same S3 event out twice.
        for message in sqs.receive_message(QueueUrl=info.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        ):
            sqs.send_message(QueueUrl=info.queue_url, MessageBody=message["Body"])

        wait_until_drained(sqs, info.queue_url, 300)
        parked = {m.image_id for m in dlq.inspect(sqs, info.dlq_url, table)}
        items = {i: store.get(table, i) for i in healthy + corrupt}
        outcome = Counter("DLQ" if i in parked else (item or {}).get("status", "MISSING") for i, item in items.items())
        print(f"\nwith faults on: {dict(outcome)}")
        unaccounted = [
            i for i, item in items.items() if i not in parked and (item or {}).get("status") not in ("DONE", "FAILED")
        ]
        assert unaccounted == [], f"uploads neither finished nor parked in the DLQ: {unaccounted} ({outcome})"
        assert all((items[i] or {}).get("status") == "FAILED" and (items[i] or {}).get("reason") for i in corrupt)

        write_rules(faults_file(), [])  # the outage ends
        moved = dlq.redrive(sqs, dlq_url=info.dlq_url, queue_url=info.queue_url, prefer_move_task=False)
        assert moved.error == ""
        wait_until_drained(sqs, info.queue_url, 300)

        statuses = Counter((store.get(table, i) or {}).get("status") for i in healthy)
        assert statuses == Counter({"DONE": HEALTHY}), statuses
        notified: Counter[tuple[str, str]] = Counter()
        while batch := sqs.receive_message(QueueUrl=observer, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages"
        ):
            for message in batch:
                body = json.loads(message["Body"])
                notified[(body["imageId"], body["status"])] += 1
                sqs.delete_message(QueueUrl=observer, ReceiptHandle=message["ReceiptHandle"])
        assert {i for i, status in notified if status == "DONE"} >= set(healthy)
        duplicates = {key: n for key, n in notified.items() if n > 1}
        assert duplicates == {}, f"notified more than once: {duplicates}"
        kills = sum(1 for line in report_log().read_text().splitlines() if "Init Duration" in line) - 2
        print(f"worker processes replaced after SIGKILL: at least {max(0, kills)}")
