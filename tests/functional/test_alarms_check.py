"""`imgops alarms check` on the local stack: evaluates, keeps state in CloudWatch, notifies the ops topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from dashboards.alarms import evaluate_target
from dashboards.template import stack_template
from monitoring.target import StackInfo


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return stack_template("imgops")  # names are re-prefixed per test


def for_stack(template: dict[str, Any], stack: StackInfo) -> dict[str, Any]:
    return dict(json.loads(json.dumps(template).replace('"imgops-', f'"{stack.prefix}-')))


def test_dlq_alarm_fires_and_notifies_once(template: dict[str, Any], stack: StackInfo, sqs: Any) -> None:
    cloudwatch, sns = boto3.client("cloudwatch"), boto3.client("sns")
    now = datetime.now(UTC)
    data: list[Any] = [
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": f"{stack.prefix}-work-dlq"}],
            "Timestamp": now - timedelta(seconds=20),
            "Value": 2,
        }
    ]
    cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=data)
    for bucket in (stack.upload_bucket, stack.processed_bucket):  # the metrics Lambda has been reporting
        cloudwatch.put_metric_data(
            Namespace="CustomS3",
            MetricData=[
                {
                    "MetricName": "NumberOfObjects",
                    "Dimensions": [{"Name": "BucketName", "Value": bucket}],
                    "Timestamp": now - timedelta(seconds=age),
                    "Value": 5,
                }
                for age in (20, 80, 140)
            ],
        )
    ops = sns.create_topic(Name=f"{stack.prefix}-ops-alarms")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{stack.prefix}-oncall")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=ops, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})

    def check() -> dict[str, str]:
        evaluations = evaluate_target(
            template=for_stack(template, stack),
            cloudwatch=cloudwatch,
            sns=sns,
            region="us-east-1",
            period=60,
            local=True,
        )
        return {e.alarm.name.removeprefix(f"{stack.prefix}-"): e.state for e in evaluations}

    states = check()
    assert states["dlq-not-empty"] == "ALARM"
    assert states["s3-metrics-not-reporting-uploads"] == "OK"
    assert states["worker-fault-rate"] == "OK"  # no data, treated as not breaching
    assert len(states) == 13  # twelve metric alarms and the composite that pages
    assert states["pipeline-unhealthy"] == "ALARM"  # the DLQ alarm is one of its children
    stored = cloudwatch.describe_alarms(AlarmNames=[f"{stack.prefix}-dlq-not-empty"])["MetricAlarms"][0]
    assert stored["StateValue"] == "ALARM"

    messages = []
    while batch := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
        messages += batch
        for message in batch:
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
    alarms = [json.loads(m["Body"]) for m in messages]
    # Every alarm left INSUFFICIENT_DATA (as on AWS, OK actions fire too); only the DLQ alarm went to ALARM.
    assert states["queue-oldest-message-age"] == "INSUFFICIENT_DATA"  # missing data stays missing: no change
    assert len(alarms) == sum(state != "INSUFFICIENT_DATA" for state in states.values())
    [fired] = [a for a in alarms if a["NewStateValue"] == "ALARM" and "Trigger" in a]
    [page] = [a for a in alarms if a["NewStateValue"] == "ALARM" and "TriggeringChildren" in a]
    assert page["AlarmName"] == f"{stack.prefix}-pipeline-unhealthy"
    assert [c["Arn"].rsplit(":", 1)[-1] for c in page["TriggeringChildren"]] == [f"{stack.prefix}-dlq-not-empty"]
    assert fired["AlarmName"] == f"{stack.prefix}-dlq-not-empty"
    assert fired["OldStateValue"] == "INSUFFICIENT_DATA"
    assert "Runbook:" in fired["AlarmDescription"]

    check()  # no state change: no second message
    assert sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []) == []
