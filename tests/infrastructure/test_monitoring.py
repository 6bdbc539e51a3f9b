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

from dashboards.constructs import monitoring
from dashboards.constructs.monitoring import ALARMS, AlarmSpec, upload_object_count_threshold
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
    monitoring.UPLOAD_OBJECT_COUNT.slug: Expected(
        "CustomS3",
        "NumberOfObjects",
        "Maximum",
        175_000,
        GT,
        1,
        "notBreaching",
        ("BucketName", "storage.upload_bucket.bucket_name"),
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


def test_custom_s3_alarm_periods_follow_the_scan_rate(synthesized: Synthesized) -> None:
    custom = [a for a in alarms(synthesized) if a["Metrics"][0]["MetricStat"]["Metric"]["Namespace"] == "CustomS3"]
    assert len(custom) == 4
    assert {a["Metrics"][0]["MetricStat"]["Period"] for a in custom} == {5 * 60}


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


def test_object_count_threshold_scales_with_the_scan_budget() -> None:
    assert upload_object_count_threshold(1) == 25_000
    assert upload_object_count_threshold(5) == 175_000
    assert upload_object_count_threshold(60) == 556_250


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
    for metric in ("BucketSizeBytes", "NumberOfObjects", "ScanIncomplete"):
        assert metric in capacity, metric
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
