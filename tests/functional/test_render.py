"""`imgops dashboards render` against the moto server: metric data in under the dashboards' names, pictures out.

One synth per module (seconds); every test renders that template against its own files.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from PIL import Image
from typer.testing import CliRunner

from dashboards.render import (
    BASIC_STATISTICS,
    NOT_EVALUATED,
    RenderOptions,
    parse_metrics,
    parse_search,
    render,
)
from dashboards.template import LOCAL_API_ID, PhysicalIds, Resolver, TemplateError, stack_template
from imgops.dashboards import app as dashboards_app
from localaws.object_events import Sequencers, message_body, object_created
from localaws.provision import provision, register_stack
from monitoring.capacity import DEFAULT_SHARDS, CapacityStore, parse_message
from monitoring.capacity_publisher import publish_counters
from monitoring.target import StackInfo
from pipeline.resources import ResourceNames

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

WORKER_INVOCATIONS = [4.0, 7.0, 3.0]
UPLOAD_BYTES = 12_345


@pytest.fixture(scope="module")
def rendered_stack(moto_endpoint: str) -> StackInfo:
    """Provisioned and registered as `imgops local up` leaves a stack: the CLI finds it by its CloudFormation
    outputs (no local API runs here: its URL is a placeholder)."""
    info = provision(ResourceNames(f"r{uuid.uuid4().hex[:10]}"), endpoint_url=moto_endpoint, visibility_timeout=30)
    info = replace(info, api_url=f"{moto_endpoint}/no-local-api-in-this-test")
    register_stack(info)
    return info


@pytest.fixture(scope="module")
def template(rendered_stack: StackInfo) -> dict[str, Any]:
    return stack_template(rendered_stack.prefix)


@pytest.fixture(scope="module")
def cloudwatch(rendered_stack: StackInfo) -> CloudWatchClient:
    """The stack's metrics as the local runtime and the capacity publisher would have published them."""
    client: CloudWatchClient = boto3.client("cloudwatch")
    names = ResourceNames(rendered_stack.prefix)
    now = datetime.now(UTC)
    worker: list[DimensionTypeDef] = [{"Name": "FunctionName", "Value": names.worker_function}]
    datums: list[MetricDatumTypeDef] = []
    for minutes_ago, invocations in zip((25, 15, 5), WORKER_INVOCATIONS, strict=True):
        timestamp = now - timedelta(minutes=minutes_ago)
        for _ in range(int(invocations)):
            datums += [
                {"MetricName": "Invocations", "Dimensions": worker, "Timestamp": timestamp, "Value": 1.0},
                {"MetricName": "Errors", "Dimensions": worker, "Timestamp": timestamp, "Value": 0.0},
                {"MetricName": "Duration", "Dimensions": worker, "Timestamp": timestamp, "Value": 420.0},
            ]
    client.put_metric_data(Namespace="AWS/Lambda", MetricData=datums)
    client.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": names.work_queue}],
                "Timestamp": now - timedelta(minutes=10),
                "Value": 17.0,
            }
        ],
    )
    # An upload, counted by the capacity counters from its object event, published as the capacity publisher does.
    key = "user-uploads/u/a.jpg"
    etag = boto3.client("s3").put_object(Bucket=rendered_stack.upload_bucket, Key=key, Body=b"x" * UPLOAD_BYTES)["ETag"]
    event = object_created(rendered_stack.upload_bucket, key, UPLOAD_BYTES, etag, Sequencers().next(), now)
    store = CapacityStore(boto3.client("dynamodb"), names.capacity_table, shards=DEFAULT_SHARDS)
    store.apply(parse_message(message_body(event)))
    publish_counters([rendered_stack.upload_bucket, rendered_stack.processed_bucket], store, client)
    return client


def physical_ids(info: StackInfo) -> PhysicalIds:
    names = ResourceNames(info.prefix)
    return PhysicalIds(
        region=info.region,
        api_id=LOCAL_API_ID,
        queue_urls={names.work_queue: info.queue_url, names.dead_letter_queue: info.dlq_url},
        topic_arns={names.notifications_topic: info.topic_arn},
        user_pool_id=info.user_pool_id,
        user_pool_client_id=info.user_pool_client_id,
    )


def widget_counts(template: dict[str, Any]) -> dict[str, int]:
    """Widgets per dashboard straight from the template: tokens replaced by a placeholder, nothing resolved."""
    counts: dict[str, int] = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            parts = resource["Properties"]["DashboardBody"]["Fn::Join"][1]
            body = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
            counts[resource["Properties"]["DashboardName"]] = len(body["widgets"])
    return counts


def find(widgets: list[dict[str, Any]], title: str, metric: str, **dimensions: str) -> dict[str, Any]:
    """The series of `metric` in the first widget titled `title` that graphs it with these dimensions."""
    for widget in widgets:
        for series in widget["series"]:
            if widget["title"] == title and series["metric"] == metric and series["dimensions"] == dimensions:
                return dict(series)
    raise AssertionError(f"no widget {title!r} graphs {metric} {dimensions}")


def test_render_draws_every_widget_with_the_local_data(
    template: dict[str, Any], cloudwatch: CloudWatchClient, rendered_stack: StackInfo, tmp_path: Path
) -> None:
    names = ResourceNames(rendered_stack.prefix)

    result = render(template, cloudwatch, physical_ids(rendered_stack), tmp_path, RenderOptions(hours=1, period=60))

    assert result.unresolved == ()
    counts = widget_counts(template)
    assert (
        {d.name for d in result.dashboards} == set(counts) == {f"{names.prefix}-operations", f"{names.prefix}-capacity"}
    )
    for dashboard in result.dashboards:
        with Image.open(dashboard.png) as image:
            assert image.format == "PNG"
            assert image.width > 1000
        sidecar = json.loads(dashboard.sidecar.read_text())
        assert len(sidecar["widgets"]) == counts[dashboard.name] == dashboard.widgets
        assert dashboard.with_data >= 1

    operations = json.loads((tmp_path / f"{names.prefix}-operations.json").read_text())["widgets"]
    invocations = find(operations, "Invocations", "Invocations", FunctionName=names.worker_function)
    assert invocations["stat"] == "Sum"
    assert invocations["values"] == WORKER_INVOCATIONS  # three minutes with data, one point each
    depth = find(operations, "Message Count", "ApproximateNumberOfMessagesVisible", QueueName=names.work_queue)
    assert depth["values"] == [17.0]
    error_rate = find(operations, "Errors (rate)", "Errors", FunctionName=names.worker_function)
    assert error_rate["stat"] == "Average"
    assert error_rate["values"] == [0.0, 0.0, 0.0]
    latency = find(operations, "Latency", "Duration", FunctionName=names.worker_function)
    assert latency["stat"] == "Maximum"  # moto has no percentiles: one upper-bound line for p50/p90/p99
    assert latency["requested_stat"] == "p50, p90, p99"
    assert latency["values"] == [420.0, 420.0, 420.0]
    [worker_latency] = [w for w in operations if latency in w["series"]]
    assert any("drawn as Maximum" in note for note in worker_latency["notes"])
    assert [a["value"] for a in worker_latency["annotations"]] == [48000.0]  # the p99 alarm's threshold
    # Metric math, evaluated locally: FILL(requests,0) / PERIOD(requests) over the worker's Invocations Sum.
    [worker_tps] = [w for w in operations if w["title"] == "TPS" and worker_input(w, names.worker_function)]
    [tps] = worker_tps["series"]
    assert tps["expression"] == "FILL(requests,0) / PERIOD(requests)"
    assert [round(v * 60, 6) for v in tps["values"] if v] == WORKER_INVOCATIONS
    assert len(tps["values"]) in (60, 61)  # FILL: every minute of the hour, 0 where nothing ran
    every_note = [
        note for dashboard in (operations, capacity_widgets(tmp_path, names)) for w in dashboard for note in w["notes"]
    ]
    assert not [note for note in every_note if NOT_EVALUATED in note]  # every expression the dashboards use

    capacity = capacity_widgets(tmp_path, names)
    size = find(capacity, "Bucket size (bytes)", "BucketSizeBytes", BucketName=rendered_stack.upload_bucket)
    assert size["values"] == [float(UPLOAD_BYTES)]
    assert [w["type"] for w in capacity[:2]] == ["text", "text"]
    # SEARCH('{CustomS3,BucketName,Prefix} BucketName="…" MetricName="BucketSizeBytes"', …), expanded by ListMetrics.
    [by_prefix] = [w for w in capacity if w["title"] == "Upload bucket by prefix (bytes)"]
    assert [(s["label"], s["dimensions"]["Prefix"], s["values"]) for s in by_prefix["series"]] == [
        ("user-uploads/u/", "user-uploads/u/", [float(UPLOAD_BYTES)])  # the uploader's folder: the counters' owner
    ]
    assert "SEARCH expanded locally with ListMetrics: 1 metrics" in by_prefix["notes"]

    page = result.html.read_text()
    assert page.count("<img ") == sum(d.metric_widgets for d in result.dashboards)
    assert page.count('data-has-data="true"') == sum(d.with_data for d in result.dashboards)
    assert "imgops capacity: CustomS3 from the capacity counters every 1 min" in page
    # A local render links to local things: no AWS console on 127.0.0.1 names; runbooks are the repository's files.
    assert "console.aws.amazon.com" not in page
    queue_header = next(w["markdown"] for w in operations if w["markdown"].startswith("### SQS Queue"))
    assert queue_header == f"### SQS Queue **Work queue (local: {rendered_stack.queue_url})**"
    runbook = (Path(__file__).resolve().parents[2] / "runbooks" / "dlq-not-empty.md").as_uri()
    assert f'<a href="{runbook}">{runbook}</a>' in page  # the alarm's own absolute link


def capacity_widgets(out: Path, names: ResourceNames) -> list[dict[str, Any]]:
    return list(json.loads((out / f"{names.prefix}-capacity.json").read_text())["widgets"])


def worker_input(widget: dict[str, Any], function_name: str) -> bool:
    return any(i["dimensions"].get("FunctionName") == function_name for i in widget["inputs"].values())


def test_metric_math_rows_are_evaluated_or_say_why_not(
    cloudwatch: CloudWatchClient, rendered_stack: StackInfo, tmp_path: Path
) -> None:
    """A dashboard of our own over the fixture's worker metrics: ids, implicit ids, arrays, refusals."""
    worker = ResourceNames(rendered_stack.prefix).worker_function
    metrics: list[Any] = [
        ["AWS/Lambda", "Invocations", "FunctionName", worker, {"stat": "Sum", "visible": False}],  # m1
        [".", "Errors", ".", ".", {"stat": "Sum", "id": "errors", "visible": False}],
        [{"expression": "100 * (errors / m1)", "label": "Error %", "id": "rate"}],
        [{"expression": "rate + 1", "label": "Shifted"}],  # reads another expression
        [{"expression": "SUM(METRICS())", "label": "All"}],
        [{"expression": "ANOMALY_DETECTION_BAND(m1, 2)", "label": "Band"}],
        [{"expression": "loop + 1", "id": "loop", "label": "Loop"}],
    ]
    body = {"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": {
        "title": "math", "metrics": metrics, "period": 60, "region": "us-east-1"}}]}  # fmt: skip
    template = {
        "Resources": {
            "D": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {"DashboardName": "m", "DashboardBody": json.dumps(body)},
            }
        }
    }

    render(template, cloudwatch, physical_ids(rendered_stack), tmp_path, RenderOptions(hours=1, period=60))

    [widget] = json.loads((tmp_path / "m.json").read_text())["widgets"]
    lines = {series["label"]: series["values"] for series in widget["series"]}
    assert lines["Error %"] == [0.0, 0.0, 0.0]
    assert lines["Shifted"] == [1.0, 1.0, 1.0]
    assert lines["All"] == WORKER_INVOCATIONS  # Invocations + Errors (all 0), per minute
    assert set(lines) == {"Error %", "Shifted", "All"}
    assert (
        f"{NOT_EVALUATED}: Band = ANOMALY_DETECTION_BAND(m1, 2) (ANOMALY_DETECTION_BAND() is not evaluated locally)"
        in widget["notes"]
    )
    assert f"{NOT_EVALUATED}: Loop = loop + 1 (loop depends on itself)" in widget["notes"]
    assert widget["has_data"]


def test_cli_renders_a_given_template_for_the_state_files_stack(
    template: dict[str, Any], cloudwatch: CloudWatchClient, rendered_stack: StackInfo, tmp_path: Path
) -> None:
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(rendered_stack.to_json())
    template_file = tmp_path / "Imgops.template.json"
    template_file.write_text(json.dumps(template))
    out = tmp_path / "out"

    result = CliRunner().invoke(
        dashboards_app,
        [
            "render",
            "--state-file",
            str(state_file),
            "--template",
            str(template_file),
            "--out",
            str(out),
            "--period",
            "300",
            "--hours",
            "2",
        ],
    )

    assert result.exit_code == 0, result.output
    names = ResourceNames(rendered_stack.prefix)
    assert str(out / f"{names.prefix}-operations.png") in result.stdout.splitlines()
    assert str(out / "dashboards.html") in result.stdout.splitlines()
    operations = json.loads((out / f"{names.prefix}-operations.json").read_text())
    invocations = find(operations["widgets"], "Invocations", "Invocations", FunctionName=names.worker_function)
    assert invocations["period"] == 300
    assert sum(invocations["values"]) == sum(WORKER_INVOCATIONS)


def test_cli_refuses_a_template_of_another_prefix(
    template: dict[str, Any], rendered_stack: StackInfo, tmp_path: Path
) -> None:
    other = ResourceNames("someone-else")
    register_stack(replace(rendered_stack, prefix=other.prefix), template)
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(json.dumps({**json.loads(rendered_stack.to_json()), "prefix": other.prefix}))
    template_file = tmp_path / "t.json"
    template_file.write_text(json.dumps(template))

    result = CliRunner().invoke(
        dashboards_app,
        ["render", "--state-file", str(state_file), "--template", str(template_file), "--out", str(tmp_path / "o")],
    )

    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: the template has no queue 'someone-else-work'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_without_a_local_stack_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(dashboards_app, ["render", "--state-file", str(tmp_path / "missing.json")])

    assert result.exit_code == 1
    assert "imgops local up" in result.stderr
    assert "Traceback" not in result.output


def test_metric_rows_with_shorthand_and_expressions() -> None:
    rows: list[Any] = [
        ["AWS/SQS", "NumberOfMessagesSent", "QueueName", "q1", {"stat": "Sum"}],
        ["...", "q2"],
        [".", "NumberOfMessagesDeleted", ".", "q3"],
        [{"expression": "m1 / PERIOD(m1)", "label": "TPS", "id": "e1"}],
    ]

    specs = parse_metrics(rows)

    assert [(s.namespace, s.name, s.dimensions) for s in specs[:3]] == [
        ("AWS/SQS", "NumberOfMessagesSent", (("QueueName", "q1"),)),
        ("AWS/SQS", "NumberOfMessagesSent", (("QueueName", "q2"),)),
        ("AWS/SQS", "NumberOfMessagesDeleted", (("QueueName", "q3"),)),
    ]
    assert specs[3].expression == "m1 / PERIOD(m1)"
    assert specs[3].label() == "TPS"


def test_resolver_handles_sub_and_refuses_what_it_cannot_know() -> None:
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "p-work"}}}}
    resolver = Resolver(template, PhysicalIds(region="eu-west-1", queue_urls={"p-work": "http://local/p-work"}))

    assert resolver.resolve({"Fn::Sub": "${Q.QueueName} in ${AWS::Region}"}) == "p-work in eu-west-1"
    assert resolver.resolve({"Ref": "Q"}) == "http://local/p-work"
    assert resolver.resolve({"Fn::GetAtt": ["Q", "Arn"]}) == "arn:aws:sqs:eu-west-1:123456789012:p-work"
    with pytest.raises(TemplateError, match="Fn::ImportValue cannot be resolved locally"):
        resolver.resolve({"Fn::ImportValue": "x"})
    with pytest.raises(TemplateError, match="no resource 'Nope'"):
        resolver.resolve({"Ref": "Nope"})


def test_basic_statistics_are_what_moto_serves() -> None:
    """If moto ever computes percentiles, this set (and the Maximum stand-in) can grow."""
    assert frozenset({"Average", "Sum", "Minimum", "Maximum", "SampleCount"}) == BASIC_STATISTICS


def test_only_plain_searches_are_expanded() -> None:
    plain = parse_search(
        """SEARCH('{"AWS/DynamoDB","TableName","Operation"} "TableName"="t" MetricName="Latency"', 'Average', 300)"""
    )

    assert plain is not None
    assert (plain.namespace, plain.schema, plain.filters) == (
        "AWS/DynamoDB",
        ("TableName", "Operation"),
        (("TableName", "t"),),
    )
    assert (plain.metric_name, plain.stat, plain.period) == ("Latency", "Average", 300)
    assert parse_search("SEARCH('{AWS/Lambda,FunctionName} Errors OR Throttles', 'Sum', 60)") is None
    assert parse_search("requests / PERIOD(requests)") is None
