"""The synthesized dashboard bodies resolve to one deployment's names, so `imgops dashboards render` can draw them.

A token the renderer cannot resolve (a new resource type in a widget, an intrinsic it does not know) fails here,
at synth speed, instead of in a render against a running stack.
"""

from __future__ import annotations

from typing import Any

import pytest

from dashboards.render import (
    NOT_EVALUATED,
    RenderOptions,
    dashboards_in,
    parse_metrics,
    plan_dashboard,
)
from dashboards.template import PhysicalIds, Resolver
from monitoring import s3_metrics
from pipeline.resources import ResourceNames
from tests.infrastructure.conftest import Synthesized

NAMES = ResourceNames("imgops")
IDS = PhysicalIds(
    region="us-east-1",
    api_id="local-api",
    queue_urls={NAMES.work_queue: "http://local/work", NAMES.dead_letter_queue: "http://local/dlq"},
    topic_arns={NAMES.notifications_topic: "arn:aws:sns:us-east-1:123456789012:imgops-image-events"},
    user_pool_id="pool",
    user_pool_client_id="client",
)
# Every dimension value a dashboard may name, by dimension.
EXPECTED_DIMENSIONS = {
    "FunctionName": {
        NAMES.worker_function,
        NAMES.presign_function,
        NAMES.read_api_function,
        NAMES.capacity_counter_function,
        NAMES.capacity_publisher_function,
        s3_metrics.function_name(NAMES.prefix),  # the capacity reconciler
    },
    "QueueName": {NAMES.work_queue, NAMES.dead_letter_queue, NAMES.capacity_queue, NAMES.capacity_dead_letter_queue},
    "BucketName": {NAMES.upload_bucket, NAMES.processed_bucket},
    "TableName": {NAMES.images_table},
    "TopicName": {NAMES.notifications_topic},
    "ApiId": {"local-api"},
    "Stage": {"$default"},
}


@pytest.fixture(scope="module")
def resolved(synthesized: Synthesized) -> tuple[Resolver, list[Any]]:
    resolver = Resolver(synthesized.json, IDS)
    return resolver, dashboards_in(synthesized.json, resolver)


def test_both_dashboards_resolve_without_placeholders(resolved: tuple[Resolver, list[Any]]) -> None:
    resolver, dashboards = resolved

    assert [d.name for d in dashboards] == ["imgops-operations", "imgops-capacity"]
    assert resolver.unresolved == set()


def test_every_metric_names_a_resource_of_this_stack(resolved: tuple[Resolver, list[Any]]) -> None:
    _, dashboards = resolved
    seen: dict[str, set[str]] = {}
    for dashboard in dashboards:
        for widget in dashboard.body["widgets"]:
            for spec in parse_metrics(widget.get("properties", {}).get("metrics", [])):
                for name, value in spec.dimensions:
                    seen.setdefault(name, set()).add(value)

    assert set(seen) - set(EXPECTED_DIMENSIONS) == {"Operation"}  # DynamoDB's per-API split names no resource
    for name, expected in EXPECTED_DIMENSIONS.items():
        assert seen.get(name, set()) <= expected, f"{name}: {seen.get(name)}"
    assert seen["FunctionName"] == EXPECTED_DIMENSIONS["FunctionName"]
    assert seen["QueueName"] == EXPECTED_DIMENSIONS["QueueName"]
    assert seen["BucketName"] == EXPECTED_DIMENSIONS["BucketName"]


def test_alarm_thresholds_become_annotations(resolved: tuple[Resolver, list[Any]]) -> None:
    _, dashboards = resolved
    operations = plan_dashboard(dashboards[0], RenderOptions())

    thresholds = {a.value for widget in operations for a in widget.annotations}
    assert {0.05, 1080.0, 48000.0, 0.0} <= thresholds  # fault/5xx rate, oldest message, p99, DLQ and throttles


def test_expressions_are_evaluated_from_their_inputs_not_queried(resolved: tuple[Resolver, list[Any]]) -> None:
    """Metric math (TPS, rates, sums) is planned as expressions over the widget's own MetricStat inputs."""
    _, dashboards = resolved
    widgets = [w for d in dashboards for w in plan_dashboard(d, RenderOptions())]
    with_math = [w for w in widgets if w.expressions]

    assert with_math, "the dashboards have TPS and rate widgets"
    assert all(w.inputs for w in with_math)  # every expression reads fetched metrics
    assert not [w.title for w in widgets for note in w.notes if NOT_EVALUATED in note]
    assert all(s.key.namespace for w in widgets for s in w.series)  # nothing but MetricStat queries
