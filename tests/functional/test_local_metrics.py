"""The local stack's CloudWatch metrics against the moto server: published like AWS, read back with GetMetricData."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import requests
from botocore.config import Config
from werkzeug.test import Client

from localaws.api import Route
from localaws.context import LocalLambdaContext
from localaws.jwt_auth import CognitoJwtVerifier
from localaws.metrics import (
    LAMBDA_NAMESPACE,
    BacklogAge,
    MetricBuffer,
    Periodic,
    QueueRef,
    QueueSampler,
    QueueSnapshot,
    StatisticsPublisher,
    TableUse,
    WorkerMeter,
    WorkerSignals,
    dynamodb_observations,
    invocation_datums,
    item_size,
    metered,
    sqs_message_size,
    table_uses,
)
from localaws.moto_process import HEALTH_PATH, MeteredMotoServer, MotoProcess
from localaws.runtime import RuntimeConfig, in_process, invoke
from localaws.stack import MeteredHttpApi, scheduled_event
from monitoring import reconcile, s3_metrics
from monitoring.target import StackInfo, fetch_access_token, running_stack
from pipeline.resources import ResourceNames

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef


@pytest.fixture
def cloudwatch(moto_endpoint: str) -> CloudWatchClient:
    return boto3.client("cloudwatch")


@pytest.fixture
def buffer(cloudwatch: CloudWatchClient) -> MetricBuffer:
    return MetricBuffer(cloudwatch)


def statistic(namespace: str, name: str, dimensions: dict[str, str], stat: str) -> float | None:
    """One statistic over the last half hour (a single period, so no minute boundary splits the datums)."""
    dims: list[DimensionTypeDef] = [{"Name": key, "Value": value} for key, value in dimensions.items()]
    now = datetime.now(UTC)
    answer = boto3.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
                    "Period": 3600,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=5),
    )
    values = answer["MetricDataResults"][0]["Values"]
    return float(values[0]) if values else None


def lambda_stat(function_name: str, name: str, stat: str) -> float | None:
    return statistic(LAMBDA_NAMESPACE, name, {"FunctionName": function_name}, stat)


def sqs_stat(queue_name: str, name: str, stat: str) -> float | None:
    return statistic("AWS/SQS", name, {"QueueName": queue_name}, stat)


def signals(workers: int = 1) -> WorkerSignals:
    return WorkerSignals.create(multiprocessing.get_context("spawn"), workers)


def receive(sqs: Any, queue_url: str, count: int, *, visibility_timeout: int | None = None) -> list[dict[str, Any]]:
    extra = {} if visibility_timeout is None else {"VisibilityTimeout": visibility_timeout}
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < count and time.monotonic() < deadline:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, count - len(messages)),
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            **extra,
        )
        messages += batch.get("Messages", [])
    assert len(messages) == count
    return messages


def drain(sqs: Any, queue_url: str) -> None:
    """Remove the s3:TestEvent the bucket notification put on the work queue, so counts start at zero."""
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_invocations_publish_what_lambda_publishes(
    stack: StackInfo, sqs: Any, buffer: MetricBuffer, tmp_path: Path
) -> None:
    drain(sqs, stack.queue_url)
    function_name = ResourceNames(stack.prefix).worker_function
    config = RuntimeConfig(
        queue_url=stack.queue_url,
        queue_arn=stack.queue_arn,
        region=stack.region,
        function_name=function_name,
        report_log=tmp_path / "reports.log",
    )
    shared = signals()
    meter = WorkerMeter(function_name, buffer, shared, index=0, timeout_seconds=config.timeout_seconds)
    for body in ("a", "b", "c", "d"):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    first, second = receive(sqs, stack.queue_url, 3), receive(sqs, stack.queue_url, 1)

    def fails_one(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    def crashes(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.sleep(0.01)  # a duration the metric shows (it has 0.01 ms resolution)
        raise RuntimeError("boom")

    with (tmp_path / "reports.log").open("a") as report_file:
        invoke(in_process(fails_one, config), first, sqs, config, report_file, meter)
        invoke(in_process(crashes, config), second, sqs, config, report_file, meter)
    assert buffer.flush() == 10

    assert lambda_stat(function_name, "Invocations", "Sum") == 2
    # A partial batch failure is a successful invocation; only the crash counts, so the dashboards' rate is 50 %.
    assert lambda_stat(function_name, "Errors", "Sum") == 1
    assert lambda_stat(function_name, "Errors", "Average") == 0.5
    assert lambda_stat(function_name, "Throttles", "Sum") == 0
    assert lambda_stat(function_name, "Duration", "SampleCount") == 2
    assert (lambda_stat(function_name, "Duration", "Maximum") or 0) > 0
    assert lambda_stat(function_name, "ConcurrentExecutions", "Maximum") == 1
    assert shared.take_deleted() == 2  # three received, one failed; the crashed batch stays on the queue
    wait = shared.take_longest_wait()
    assert wait is not None
    assert 0 <= wait < 60
    assert shared.take_longest_wait() is None  # taken: the next sample starts afresh
    assert sum(shared.busy[:]) == 0


def test_concurrent_executions_counts_busy_workers() -> None:
    shared = signals(workers=3)

    assert shared.set_busy(0, True) == 1
    assert shared.set_busy(2, True) == 2
    assert shared.set_busy(0, False) == 1
    datums = invocation_datums("f", duration_ms=1.0, error=False, concurrent=2, timestamp=datetime.now(UTC))
    assert {d["MetricName"]: d["Value"] for d in datums}["ConcurrentExecutions"] == 2


def test_sampler_publishes_queue_depth_age_and_derived_counts(stack: StackInfo, sqs: Any, buffer: MetricBuffer) -> None:
    drain(sqs, stack.queue_url)
    names = ResourceNames(stack.prefix)
    shared = signals()
    meter = WorkerMeter(names.worker_function, buffer, shared, index=0, timeout_seconds=60)
    clock = [time.time() - 120]  # timestamps stay inside the read-back window
    sampler = QueueSampler(
        sqs,
        buffer,
        work=QueueRef(names.work_queue, stack.queue_url),
        dead_letters=QueueRef(names.dead_letter_queue, stack.dlq_url),
        signals=shared,
        clock=lambda: clock[0],
    )
    baseline = {d["MetricName"] for d in sampler.sample() if d["Dimensions"][0]["Value"] == names.work_queue}
    assert "NumberOfMessagesSent" not in baseline  # nothing to count over yet

    for body in ("1", "2", "3"):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    [taken] = receive(sqs, stack.queue_url, 1)
    meter.received([taken])
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=taken["ReceiptHandle"])
    meter.finished(duration_ms=5.0, error=False, concurrent=1, deleted=1)
    redrive_to_dlq(sqs, stack, expected=2)
    clock[0] += 60
    sampler.sample()
    assert buffer.flush() > 0

    assert sqs_stat(names.work_queue, "NumberOfMessagesDeleted", "Sum") == 1
    # Sent = net change (3 - 1 - 2 = 0) + deleted (1) + moved to the DLQ (2).
    assert sqs_stat(names.work_queue, "NumberOfMessagesSent", "Sum") == 3
    assert sqs_stat(names.work_queue, "ApproximateNumberOfMessagesVisible", "Maximum") == 0
    assert sqs_stat(names.dead_letter_queue, "NumberOfMessagesSent", "Sum") == 2
    assert sqs_stat(names.dead_letter_queue, "ApproximateNumberOfMessagesVisible", "Maximum") == 2
    work_age = sqs_stat(names.work_queue, "ApproximateAgeOfOldestMessage", "Maximum")
    assert work_age is not None
    assert 0 <= work_age < 60

    clock[0] += 60
    dlq_ages = [
        d["Value"]
        for d in sampler.sample()
        if d["MetricName"] == "ApproximateAgeOfOldestMessage" and d["Dimensions"][0]["Value"] == names.dead_letter_queue
    ]
    assert dlq_ages == [60.0]  # nobody receives from the DLQ: the time since it was first seen non-empty


def redrive_to_dlq(sqs: Any, stack: StackInfo, *, expected: int) -> None:
    """Receive without deleting until SQS moves the messages past maxReceiveCount into the DLQ."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        attributes = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        if int(attributes["Attributes"]["ApproximateNumberOfMessages"]) >= expected:
            return
    pytest.fail("messages never reached the DLQ")


def test_backlog_age_is_a_lower_bound_without_receives() -> None:
    age = BacklogAge()
    waiting, empty = QueueSnapshot(visible=3, not_visible=0), QueueSnapshot(visible=0, not_visible=0)

    assert age.update(0.0, waiting, None) == 0.0  # first seen waiting: nothing known about before
    assert age.update(60.0, waiting, None) == 60.0
    assert age.update(120.0, waiting, 12.5) == 12.5  # a worker took messages: their wait is the evidence
    assert age.update(180.0, waiting, None) == 0.0  # waiting again since the receive
    assert age.update(240.0, empty, None) == 0.0
    assert age.update(300.0, waiting, None) == 0.0
    assert age.update(360.0, empty, 11.0) == 11.0  # a burst that drained between samples still shows its wait


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cloudwatch_never_reaches_the_caller() -> None:
    dead = boto3.client(
        "cloudwatch",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    errors: list[str] = []
    buffer = MetricBuffer(dead, on_error=errors.append, max_pending=5)
    datums = invocation_datums("f", duration_ms=1.0, error=False, concurrent=1, timestamp=datetime.now(UTC))

    buffer.add(LAMBDA_NAMESPACE, datums + datums)  # 10 into a buffer of 5: the oldest 5 go
    assert buffer.flush() == 0
    buffer.add(LAMBDA_NAMESPACE, datums)
    buffer.close()

    assert buffer.dropped == 15
    assert len(errors) == 1  # reported once a minute, not per batch
    assert "PutMetricData AWS/Lambda failed" in errors[0]


def test_the_flush_thread_sends_batches(buffer: MetricBuffer, unique_prefix: str) -> None:
    flushing = MetricBuffer(boto3.client("cloudwatch"), flush_every=0.05).start()
    function_name = f"{unique_prefix}-fn"
    for _ in range(3):
        flushing.add(
            LAMBDA_NAMESPACE,
            invocation_datums(function_name, duration_ms=2.0, error=False, concurrent=1, timestamp=datetime.now(UTC)),
        )
    deadline = time.monotonic() + 5
    while flushing.sent < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    flushing.close()

    assert flushing.sent == 15
    assert lambda_stat(function_name, "Invocations", "Sum") == 3


def test_local_api_publishes_api_gateway_and_lambda_metrics(
    stack: StackInfo, buffer: MetricBuffer, unique_prefix: str
) -> None:
    names = ResourceNames(stack.prefix)

    def ok(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 201, "body": "{}"}

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    verifier = CognitoJwtVerifier(issuer=stack.issuer, client_id=stack.user_pool_client_id, jwks_url=stack.jwks_url)
    routes = [
        Route("POST", "/uploads", names.presign_function, ok),
        Route("GET", "/images/{image_id}", names.read_api_function, broken),
    ]
    api = MeteredHttpApi(routes, verifier, buffer, api_id=unique_prefix)
    client = Client(api)
    bearer = {"Authorization": f"Bearer {fetch_access_token(stack)}"}

    assert client.post("/uploads", headers=bearer).status_code == 201
    assert client.get("/images/abc", headers=bearer).status_code == 500
    assert client.post("/uploads").status_code == 401
    buffer.flush()

    dims = {"ApiId": unique_prefix, "Stage": "$default"}
    assert statistic("AWS/ApiGateway", "Count", dims, "Sum") == 3
    assert statistic("AWS/ApiGateway", "4xx", dims, "Sum") == 1
    assert statistic("AWS/ApiGateway", "5xx", dims, "Sum") == 1
    assert statistic("AWS/ApiGateway", "IntegrationLatency", dims, "SampleCount") == 2  # the 401 never got there
    assert (statistic("AWS/ApiGateway", "Latency", dims, "Minimum") or 0) > 0
    assert lambda_stat(names.presign_function, "Errors", "Sum") == 0
    assert lambda_stat(names.read_api_function, "Errors", "Sum") == 1


@pytest.mark.usefixtures("capacity_env")
def test_scheduled_reconciler_run_is_metered_like_a_lambda(stack: StackInfo, s3: Any, buffer: MetricBuffer) -> None:
    """The bucket-metrics function as the local stack's schedule runs it (the reconciler): AWS/Lambda datums for the
    invocation, its drift in CustomS3 (an object no event counted: the counters are one short)."""
    s3.put_object(Bucket=stack.upload_bucket, Key="user-uploads/u/a.jpg", Body=b"x" * 100)
    function_name = s3_metrics.function_name(stack.prefix)
    handler = metered(function_name, reconcile.handler, buffer, timeout_seconds=30)
    context = LocalLambdaContext.create(function_name, timeout_seconds=30, memory_mb=s3_metrics.MEMORY_MB)

    report = handler(scheduled_event(stack.region, "rule"), context)
    buffer.flush()

    assert [(b["source"], b["drift_objects"], b["drift_bytes"]) for b in report["buckets"]] == [
        ("listing", -1, -100),
        ("listing", 0, 0),
    ]
    assert lambda_stat(function_name, "Invocations", "Sum") == 1
    assert lambda_stat(function_name, "Errors", "Sum") == 0
    assert statistic("CustomS3", "DriftBytes", {"BucketName": stack.upload_bucket}, "Minimum") == -100
    assert statistic("CustomS3", "ScanIncomplete", {"BucketName": stack.processed_bucket}, "Maximum") == 0


def test_periodic_runs_on_schedule_and_survives_a_failing_run() -> None:
    runs: list[float] = []
    errors: list[str] = []

    def task() -> None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            raise RuntimeError("endpoint gone")

    schedule = Periodic("sampler", 0.05, task, on_error=errors.append)
    schedule.run_now()  # what the stack does at start, on its own thread
    schedule.start()
    deadline = time.monotonic() + 5
    while len(runs) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    schedule.stop()
    count = len(runs)
    time.sleep(0.2)

    assert count >= 4
    assert len(runs) == count  # stopped means stopped
    assert runs[1] - runs[0] >= 0.04  # the thread waits a period before its first run: no double run at start
    assert errors == ["sampler: endpoint gone"]


# --- AWS/DynamoDB and AWS/SNS from the embedded AWS ---------------------------------------------------------


@pytest.fixture
def metered_aws(moto_endpoint: str) -> Iterator[tuple[str, StatisticsPublisher, list[str]]]:
    """moto's app (the session server's backends) behind ServiceMeter on a port of its own, flushed by the test."""
    errors: list[str] = []
    publisher = StatisticsPublisher(
        lambda region: boto3.client("cloudwatch", region_name=region), on_error=errors.append
    )
    server = MeteredMotoServer(0, publisher)
    server.start()
    yield server.url, publisher, errors
    server.stop()


def test_embedded_aws_publishes_dynamodb_metrics_of_the_requests_it_serves(
    metered_aws: tuple[str, StatisticsPublisher, list[str]], unique_prefix: str
) -> None:
    url, publisher, _ = metered_aws
    dynamodb = boto3.client("dynamodb", endpoint_url=url)
    table = f"{unique_prefix}-images"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "imageId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "imageId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    big = {"imageId": {"S": "a"}, "blob": {"S": "x" * 3000}}  # 3,011 bytes: 3 write units, 1 read unit
    dynamodb.put_item(TableName=table, Item=big)
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(TableName=table, Item=big, ConditionExpression="attribute_not_exists(imageId)")
    dynamodb.get_item(TableName=table, Key={"imageId": {"S": "a"}}, ConsistentRead=True)
    dynamodb.get_item(TableName=table, Key={"imageId": {"S": "missing"}})  # eventually consistent: half a unit
    dynamodb.update_item(
        TableName=table,
        Key={"imageId": {"S": "a"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "DONE"}},
    )
    dynamodb.scan(TableName=table)
    with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.get_item(TableName=f"{table}-nope", Key={"imageId": {"S": "a"}})
    assert publisher.flush() > 0

    by_table = {"TableName": table}
    assert statistic("AWS/DynamoDB", "ConsumedWriteCapacityUnits", by_table, "Sum") == 3 + 3 + 1  # a failed
    assert statistic("AWS/DynamoDB", "ConditionalCheckFailedRequests", by_table, "Sum") == 1  # condition pays too
    assert statistic("AWS/DynamoDB", "ConsumedReadCapacityUnits", by_table, "Sum") == 1 + 0.5 + 0.5
    assert statistic("AWS/DynamoDB", "WriteThrottleEvents", by_table, "SampleCount") == 3  # 0 per write
    put = {"TableName": table, "Operation": "PutItem"}
    assert statistic("AWS/DynamoDB", "SuccessfulRequestLatency", put, "SampleCount") == 1
    assert (statistic("AWS/DynamoDB", "SuccessfulRequestLatency", put, "Minimum") or 0) > 0
    assert statistic("AWS/DynamoDB", "SystemErrors", put, "Sum") == 0
    assert statistic("AWS/DynamoDB", "ReturnedItemCount", {"TableName": table, "Operation": "Scan"}, "Sum") == 1
    # The refused request counts only as a user error: no metrics for a table that does not exist.
    assert (
        statistic("AWS/DynamoDB", "SystemErrors", {"TableName": f"{table}-nope", "Operation": "GetItem"}, "Sum") is None
    )
    assert (statistic("AWS/DynamoDB", "UserErrors", {}, "Sum") or 0) >= 1
    operations = {
        {d["Name"]: d["Value"] for d in metric["Dimensions"]}["Operation"]
        for metric in boto3.client("cloudwatch").list_metrics(
            Namespace="AWS/DynamoDB",
            MetricName="SuccessfulRequestLatency",
            Dimensions=[{"Name": "TableName", "Value": table}],
        )["Metrics"]
    }
    assert operations == {"PutItem", "GetItem", "UpdateItem", "Scan"}  # CreateTable is not the data plane


def test_embedded_aws_publishes_sns_fan_out(
    metered_aws: tuple[str, StatisticsPublisher, list[str]], unique_prefix: str
) -> None:
    url, publisher, _ = metered_aws
    sns, sqs = boto3.client("sns", endpoint_url=url), boto3.client("sqs", endpoint_url=url)
    topic = sns.create_topic(Name=f"{unique_prefix}-events")["TopicArn"]
    for name, policy in (("all", None), ("mine", {"userId": ["u1"]})):
        queue = sqs.create_queue(QueueName=f"{unique_prefix}-{name}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"FilterPolicy": json.dumps(policy)} if policy else {}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    for user in ("u1", "u2"):
        sns.publish(
            TopicArn=topic, Message="done", MessageAttributes={"userId": {"DataType": "String", "StringValue": user}}
        )
    assert publisher.flush() > 0

    by_topic = {"TopicName": f"{unique_prefix}-events"}
    assert statistic("AWS/SNS", "NumberOfMessagesPublished", by_topic, "Sum") == 2
    assert statistic("AWS/SNS", "NumberOfNotificationsDelivered", by_topic, "Sum") == 3  # u2 is filtered out once
    assert statistic("AWS/SNS", "NumberOfNotificationsFilteredOut", by_topic, "Sum") == 1
    assert statistic("AWS/SNS", "NumberOfNotificationsFailed", by_topic, "Sum") == 0
    # "done" + userId + String + u1: what SNS counts as the size of a message with attributes.
    assert statistic("AWS/SNS", "PublishSize", by_topic, "Maximum") == len("done") + len("userId") + len("String") + 2


def test_a_failing_publisher_never_reaches_the_requests(moto_endpoint: str, unique_prefix: str) -> None:
    def no_cloudwatch(region: str) -> Any:
        raise RuntimeError("no endpoint")

    errors: list[str] = []
    publisher = StatisticsPublisher(no_cloudwatch, on_error=errors.append)
    server = MeteredMotoServer(0, publisher)
    server.start()
    try:
        sns = boto3.client("sns", endpoint_url=server.url)
        topic = sns.create_topic(Name=f"{unique_prefix}-t")["TopicArn"]
        assert sns.publish(TopicArn=topic, Message="m")["MessageId"]
        assert publisher.flush() == 0
    finally:
        server.stop()

    assert publisher.dropped == 5  # the message's five datums
    assert errors == ["no CloudWatch client for us-east-1: no endpoint"]


def test_moto_process_answers_liveness_on_its_own_path_and_publishes(stack: StackInfo, tmp_path: Path) -> None:
    moto = MotoProcess(flush_every=0.2)
    endpoint = moto.start()
    try:
        health = requests.get(f"{endpoint}{HEALTH_PATH}", timeout=5)
        state_file = tmp_path / "local-stack.json"
        state_file.write_text(dataclasses.replace(stack, endpoint_url=endpoint).to_json())
        assert running_stack(state_file).endpoint_url == endpoint  # probes HEALTH_PATH
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
        dynamodb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="t", Item={"id": {"S": "a"}})
        cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint)
        deadline = time.monotonic() + 10
        metrics: list[Any] = []
        while not metrics and time.monotonic() < deadline:
            time.sleep(0.2)
            metrics = cloudwatch.list_metrics(Namespace="AWS/DynamoDB", MetricName="ConsumedWriteCapacityUnits")[
                "Metrics"
            ]
    finally:
        moto.stop()

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert [m["Dimensions"] for m in metrics] == [[{"Name": "TableName", "Value": "t"}]]


def test_capacity_units_follow_dynamodbs_rounding_rules() -> None:
    item = {"imageId": {"S": "a" * 10}, "size": {"N": "123456"}, "tags": {"SS": ["x", "yy"]}, "ok": {"BOOL": True}}
    assert item_size(item) == (7 + 10) + (4 + 3 + 2) + (4 + 3) + (2 + 1)
    big = {"blob": {"S": "x" * 5000}}

    assert table_uses("PutItem", {"TableName": "t", "Item": big}, {}) == [TableUse("t", write_units=5.0)]
    assert table_uses("Query", {"TableName": "t"}, {"Items": [big, big], "Count": 2}) == [
        TableUse("t", read_units=1.5, returned_items=2)  # 10 KB: 3 units of 4 KB, halved
    ]
    assert table_uses(
        "BatchWriteItem",
        {"RequestItems": {"t": [{"PutRequest": {"Item": big}}, {"DeleteRequest": {"Key": {"id": {"S": "a"}}}}]}},
        {},
    ) == [TableUse("t", write_units=6.0)]
    assert table_uses(
        "TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "t", "Item": {"id": {"S": "a"}}}}]}, {}
    ) == [TableUse("t", write_units=2.0)]
    observed = dynamodb_observations(
        "PutItem", {"TableName": "t"}, status=500, error_code="InternalServerError", response=None, latency_ms=1.0
    )
    assert {(o.name, o.value) for o in observed} >= {("SystemErrors", 1.0), ("UserErrors", 0.0)}
    assert not [o for o in observed if o.name.startswith("Consumed") or o.name == "SuccessfulRequestLatency"]


def test_sent_message_size_comes_from_first_receipts(stack: StackInfo, sqs: Any, buffer: MetricBuffer) -> None:
    drain(sqs, stack.queue_url)
    names = ResourceNames(stack.prefix)
    shared = signals()
    meter = WorkerMeter(names.worker_function, buffer, shared, index=0, timeout_seconds=60)
    sampler = QueueSampler(
        sqs,
        buffer,
        work=QueueRef(names.work_queue, stack.queue_url),
        dead_letters=QueueRef(names.dead_letter_queue, stack.dlq_url),
        signals=shared,
    )
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="x" * 100)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="y" * 10)
    first = receive(sqs, stack.queue_url, 2, visibility_timeout=0)
    again = receive(sqs, stack.queue_url, 2)  # redeliveries: sent once, counted once

    meter.received(first)
    meter.received(again)
    datums = [d for d in sampler.sample() if d["MetricName"] == "SentMessageSize"]

    assert len(datums) == 1
    assert datums[0]["StatisticValues"] == {"SampleCount": 2.0, "Sum": 110.0, "Minimum": 10.0, "Maximum": 100.0}
    assert shared.take_sent_sizes() is None
    with_attribute = {"Body": "x", "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "jpeg"}}}
    assert sqs_message_size(with_attribute) == len("x") + len("kind") + len("String") + len("jpeg")
