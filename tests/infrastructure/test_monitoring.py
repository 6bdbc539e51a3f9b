"""Alarms (metric, threshold, comparison, actions, runbook) and the two dashboards."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from aws_cdk.assertions import Match

from dashboards.config import AppConfig
from dashboards.constructs import monitoring
from dashboards.constructs.monitoring import ALARMS, AlarmSpec
from monitoring.capacity_handlers import COUNTER_MAX_RECEIVE_COUNT
from pipeline.resources import WORKER_TIMEOUT_SECONDS
from tests.infrastructure.conftest import Synthesized

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_LINK = re.compile(r"Runbook: (\S+)")
GT = "GreaterThanThreshold"


@dataclass(frozen=True)
class Expected:
    namespace: str
    metric: str
    stat: str
    threshold: float
    comparison: str
    datapoints: int
    missing: str
    # Which resource the metric's dimension must point at (attribute path on the stack) or a literal.
    dimension: tuple[str, str]
    periods: int | None = None  # evaluation periods when more than `datapoints` (M of N)


EXPECTED: dict[str, Expected] = {
    monitoring.DLQ_NOT_EMPTY.slug: Expected(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        0,
        GT,
        1,
        "notBreaching",
        ("QueueName", "work_queue.dead_letter_queue.queue_name"),
    ),
    monitoring.QUEUE_BACKLOG_OLD.slug: Expected(
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "Maximum",
        18 * 60,
        GT,
        3,
        "missing",
        ("QueueName", "work_queue.queue.queue_name"),
    ),
    monitoring.WORKER_FAULT_RATE.slug: Expected(
        "AWS/Lambda",
        "Errors",
        "Average",
        0.05,
        GT,
        2,  # of 3: a worker failing every retry runs once per visibility timeout (`imgops alarms test`)
        "notBreaching",
        ("FunctionName", "worker.function.function_name"),
        periods=3,
    ),
    monitoring.WORKER_THROTTLES.slug: Expected(
        "AWS/Lambda", "Throttles", "Sum", 0, GT, 3, "notBreaching", ("FunctionName", "worker.function.function_name")
    ),
    monitoring.WORKER_DURATION.slug: Expected(
        "AWS/Lambda",
        "Duration",
        "p99",
        0.8 * WORKER_TIMEOUT_SECONDS * 1000,
        GT,
        3,
        "notBreaching",
        ("FunctionName", "worker.function.function_name"),
    ),
    monitoring.API_5XX_RATE.slug: Expected(
        "AWS/ApiGateway", "5xx", "Average", 0.05, GT, 3, "notBreaching", ("ApiId", "api.http_api.api_id")
    ),
    monitoring.UPLOAD_BUCKET_SIZE.slug: Expected(
        "CustomS3",
        "BucketSizeBytes",
        "Maximum",
        500 * 2**30,
        GT,
        1,
        "notBreaching",
        ("BucketName", "storage.upload_bucket.bucket_name"),
    ),
    monitoring.CAPACITY_EVENT_LAG.slug: Expected(
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "Maximum",
        15 * 60,
        GT,
        5,
        "notBreaching",
        ("QueueName", "capacity.queue.queue_name"),
    ),
    monitoring.CAPACITY_DRIFT_UPLOADS.slug: Expected(
        "CustomS3",
        "DriftOwners",
        "Maximum",
        0,
        GT,
        2,
        "notBreaching",
        ("BucketName", "storage.upload_bucket.bucket_name"),
    ),
    monitoring.CAPACITY_DRIFT_PROCESSED.slug: Expected(
        "CustomS3",
        "DriftOwners",
        "Maximum",
        0,
        GT,
        2,
        "notBreaching",
        ("BucketName", "storage.processed_bucket.bucket_name"),
    ),
    monitoring.UPLOADS_NOT_REPORTING.slug: Expected(
        "CustomS3",
        "NumberOfObjects",
        "SampleCount",
        1,
        "LessThanThreshold",
        3,
        "breaching",
        ("BucketName", "storage.upload_bucket.bucket_name"),
    ),
    monitoring.PROCESSED_NOT_REPORTING.slug: Expected(
        "CustomS3",
        "NumberOfObjects",
        "SampleCount",
        1,
        "LessThanThreshold",
        3,
        "breaching",
        ("BucketName", "storage.processed_bucket.bucket_name"),
    ),
}


def attribute(root: Any, path: str) -> Any:
    for name in path.split("."):
        root = getattr(root, name)
    return root


def alarms(synthesized: Synthesized) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()]


def test_every_catalogued_alarm_is_expected_here() -> None:
    assert set(EXPECTED) == {alarm.slug for alarm in ALARMS}


def test_the_stack_has_exactly_the_catalogued_alarms(synthesized: Synthesized) -> None:
    names = sorted(alarm["AlarmName"] for alarm in alarms(synthesized))
    assert names == sorted(f"imgops-{alarm.slug}" for alarm in ALARMS)


@pytest.mark.parametrize("alarm", ALARMS, ids=lambda alarm: alarm.slug)
def test_alarm(synthesized: Synthesized, alarm: AlarmSpec) -> None:
    expected = EXPECTED[alarm.slug]
    stack = synthesized.stack
    dimension_name, dimension_path = expected.dimension
    topic = stack.resolve(stack.alerts.topic.topic_arn)
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"imgops-{alarm.slug}",
            "AlarmDescription": Match.string_like_regexp(
                rf"^\[{alarm.severity}\] .+ Likely: .+\. First: `imgops .+`[\s\S]*Runbook: file:///\S+/runbooks/"
                + re.escape(f"{alarm.slug}.md")
            ),
            "ComparisonOperator": expected.comparison,
            "Threshold": expected.threshold,
            "DatapointsToAlarm": expected.datapoints,
            "EvaluationPeriods": expected.periods or expected.datapoints,
            "TreatMissingData": expected.missing,
            "ActionsEnabled": True,
            "AlarmActions": [topic],
            "OKActions": [topic],
            "Metrics": [
                Match.object_like(
                    {
                        "MetricStat": Match.object_like(
                            {
                                "Stat": expected.stat,
                                "Metric": {
                                    "Namespace": expected.namespace,
                                    "MetricName": expected.metric,
                                    "Dimensions": Match.array_with(
                                        [
                                            {
                                                "Name": dimension_name,
                                                "Value": stack.resolve(attribute(stack, dimension_path)),
                                            }
                                        ]
                                    ),
                                },
                            }
                        )
                    }
                )
            ],
        },
    )


def test_worker_fault_rate_threshold_is_a_fraction() -> None:
    """cdk-monitoring-constructs compares Errors' Average (0-1): 5 would never fire."""
    assert 0 < monitoring.WORKER_MAX_FAULT_RATE < 1
    assert 0 < monitoring.API_MAX_5XX_RATE < 1


def period(alarm: dict[str, Any]) -> int:
    return int(alarm["Metrics"][0]["MetricStat"]["Period"])


def named(synthesized: Synthesized, spec: AlarmSpec) -> dict[str, Any]:
    [alarm] = [a for a in alarms(synthesized) if a["AlarmName"] == f"imgops-{spec.slug}"]
    return alarm


def test_capacity_alarm_periods_follow_their_publishers(synthesized: Synthesized) -> None:
    """Sizes and counts come from the publisher every minute; drift from the reconciler every metrics_rate_minutes
    (hourly by default); the capacity queue's age from SQS every minute."""
    for spec in (monitoring.UPLOAD_BUCKET_SIZE, monitoring.UPLOADS_NOT_REPORTING, monitoring.PROCESSED_NOT_REPORTING):
        assert period(named(synthesized, spec)) == 60, spec.slug
    for spec in (monitoring.CAPACITY_DRIFT_UPLOADS, monitoring.CAPACITY_DRIFT_PROCESSED):
        assert period(named(synthesized, spec)) == AppConfig().metrics_rate_minutes * 60, spec.slug
    assert period(named(synthesized, monitoring.CAPACITY_EVENT_LAG)) == 60


def test_the_lag_threshold_outlasts_one_poison_event(synthesized: Synthesized) -> None:
    """The threshold's reasoning holds for the queue as deployed: a retried event waits the visibility timeout;
    SQS stops counting a message's age at its third receive (2 timeouts), or resets it then and it reaches 3 timeouts
    at most before the DLQ takes it: above the threshold for less than the minutes the alarm needs."""
    [queue] = [
        q["Properties"]
        for q in synthesized.resources("AWS::SQS::Queue").values()
        if q["Properties"].get("QueueName") == "imgops-capacity-events"
    ]
    assert queue["VisibilityTimeout"] == monitoring.CAPACITY_RETRY_SECONDS
    assert queue["RedrivePolicy"]["maxReceiveCount"] == COUNTER_MAX_RECEIVE_COUNT
    retry, threshold = monitoring.CAPACITY_RETRY_SECONDS, monitoring.CAPACITY_LAG_MAX_SECONDS
    assert 2 * retry < threshold
    assert 3 * retry - threshold < monitoring.CAPACITY_LAG_MINUTES_TO_ALARM * 60


def test_every_alarm_links_an_existing_runbook(synthesized: Synthesized) -> None:
    composites = synthesized.template.find_resources("AWS::CloudWatch::CompositeAlarm").values()
    for alarm in [*alarms(synthesized), *(c["Properties"] for c in composites)]:
        match = RUNBOOK_LINK.search(alarm["AlarmDescription"])
        assert match, f"{alarm['AlarmName']} has no runbook link"
        runbook = Path(urlparse(match.group(1)).path)  # an absolute file:// link to this checkout's page
        assert runbook.is_file(), f"{alarm['AlarmName']} links {match.group(1)}, which does not exist"
        assert runbook.stem == alarm["AlarmName"].removeprefix("imgops-"), "runbooks are named after their alarm"


def test_runbook_index_lists_every_alarm() -> None:
    index = (REPO_ROOT / "runbooks" / "README.md").read_text()
    for alarm in ALARMS:
        assert f"({alarm.slug}.md)" in index, alarm.slug


def test_operations_and_capacity_dashboards(synthesized: Synthesized) -> None:
    dashboards = {
        d["Properties"]["DashboardName"]: d["Properties"]["DashboardBody"]
        for d in synthesized.resources("AWS::CloudWatch::Dashboard").values()
    }
    assert set(dashboards) == {"imgops-operations", "imgops-capacity"}
    operations = str(dashboards["imgops-operations"])
    for metric in ("Invocations", "Errors", "Duration", "Throttles", "ConcurrentExecutions"):
        assert metric in operations, metric
    for metric in ("ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible", "5xx", "4xx"):
        assert metric in operations, metric
    assert "AWS/DynamoDB" in operations
    assert "AWS/SNS" in operations
    capacity = str(dashboards["imgops-capacity"])
    for metric in ("BucketSizeBytes", "NumberOfObjects", "ScanIncomplete", "DriftObjects", "DriftBytes", "DriftOwners"):
        assert metric in capacity, metric
    # The counters' lag and their DLQ, and the three capacity functions.
    for metric in ("ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible", "Invocations", "Errors"):
        assert metric in capacity, metric
    for name in ("Capacity events", "Capacity counter", "Capacity publisher", "Capacity reconciler"):
        assert name in capacity, name
    assert "Bucket-metrics scan" not in capacity
    # Per-prefix breakdown: a SEARCH over the Prefix dimension, not a literal "*" prefix.
    assert "SEARCH(" in capacity
    assert "Prefix" in capacity
    assert '\\"Prefix\\"=\\"*\\"' not in capacity


def test_one_composite_alarm_pages_for_every_high_severity_alarm(synthesized: Synthesized) -> None:
    high = [spec for spec in monitoring.ALARMS if spec.severity == "high"]
    [composite] = synthesized.template.find_resources("AWS::CloudWatch::CompositeAlarm").values()
    rule = json.dumps(composite["Properties"]["AlarmRule"])

    assert composite["Properties"]["AlarmName"] == "imgops-pipeline-unhealthy"
    assert rule.count("ALARM(") == len(high) >= 3
    for spec in high:
        assert f"imgops{spec.slug.replace('-', '')}" in rule.replace("-", "")  # each high alarm is a child
    assert composite["Properties"]["AlarmActions"] == composite["Properties"]["OKActions"]
