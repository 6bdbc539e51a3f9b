from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from localaws.provision import provision, register_stack
from localaws.stack import capacity_environment, forget_handler_state
from monitoring.target import StackInfo
from pipeline import aws
from pipeline.resources import ResourceNames, StackOutputs
from pipeline.settings import Settings
from pipeline.worker import WorkerDeps
from tests.iam import CallRecorder, RolePolicies

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


def provisioned_stack(moto_endpoint: str, prefix: str, *, visibility_timeout: int) -> StackInfo:
    """The template's resources and the CloudFormation stack `<prefix>-pipeline` with its outputs, as
    `imgops local up` makes them (no local API runs here: its URL is a placeholder)."""
    info = provision(ResourceNames(prefix), endpoint_url=moto_endpoint, visibility_timeout=visibility_timeout)
    info = replace(info, api_url=f"{moto_endpoint}/no-local-api-in-this-test")
    register_stack(info)
    return info


@pytest.fixture
def stack(moto_endpoint: str, unique_prefix: str) -> StackInfo:
    return provisioned_stack(moto_endpoint, unique_prefix, visibility_timeout=30)


@pytest.fixture
def state_file(stack: StackInfo, tmp_path: Path) -> Path:
    """A local-stack state file pointing at `stack`, for the CLI's --state-file."""
    path = tmp_path / "local-stack.json"
    path.write_text(stack.to_json())
    return path


@pytest.fixture
def settings(stack: StackInfo) -> Settings:
    return Settings(
        upload_bucket=stack.upload_bucket,
        processed_bucket=stack.processed_bucket,
        images_table=stack.images_table,
        topic_arn=stack.topic_arn,
    )


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", config=aws.s3_config().merge(NO_RETRIES))


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs")


@pytest.fixture
def deps(settings: Settings, s3: Any, moto_endpoint: str) -> WorkerDeps:
    return WorkerDeps(
        settings=settings,
        s3=s3,
        table=boto3.resource("dynamodb", config=NO_RETRIES).Table(settings.images_table),
        sns=boto3.client("sns", config=NO_RETRIES),
    )


@pytest.fixture
def handler_env(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment the CDK app gives the functions, for tests that go through `handler`."""
    from pipeline import presign, read_api, worker

    for name, value in stack.handler_environment().items():
        monkeypatch.setenv(name, value)
    caches: list[Any] = [presign._settings, read_api._settings, worker._deps]
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


@pytest.fixture
def notifications(stack: StackInfo, sqs: Any) -> Callable[[], list[dict[str, Any]]]:
    """A queue subscribed to the topic: returns every notification delivered so far (raw SNS envelopes)."""
    sns = boto3.client("sns")
    queue_url = sqs.create_queue(QueueName=f"{stack.prefix}-observer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=arn)
    received: list[dict[str, Any]] = []

    def drain() -> list[dict[str, Any]]:
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return received
            for message in messages:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    return drain


def receive_uploads(sqs: Any, stack: StackInfo, expected: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The work queue's messages for real uploads (the S3 TestEvent is dropped), as SQS returns them."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(messages) < expected and time.monotonic() < deadline:
        batch = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        )
        for message in batch.get("Messages", []):
            if "s3:TestEvent" in message["Body"]:
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                messages.append(message)
    assert len(messages) == expected, f"expected {expected} upload events, got {len(messages)}"
    return messages


@pytest.fixture
def capacity_env(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment the CDK app gives the capacity functions (localaws.stack.capacity_environment, as the local
    stack sets it), with the handlers' cached clients dropped around the test."""
    for name, value in {**stack.handler_environment(), **capacity_environment(stack)}.items():
        monkeypatch.setenv(name, value)
    forget_handler_state()
    yield
    forget_handler_state()


def capacity_queues_caught_up(stack: StackInfo) -> None:
    """The capacity queue and its DLQ as AWS/SQS publishes them: no event waits, so the reconciler may correct
    confirmed drift (monitoring.reconcile.queue_lag)."""
    names = ResourceNames(stack.prefix)
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "QueueName", "Value": queue}],
                "Timestamp": datetime.now(UTC) - timedelta(seconds=30),
                "Value": 0.0,
            }
            for metric, queue in (
                ("ApproximateAgeOfOldestMessage", names.capacity_queue),
                ("ApproximateNumberOfMessagesVisible", names.capacity_dead_letter_queue),
            )
        ],
    )


def outputs_stack(stack_name: str, info: StackInfo, **overrides: str) -> dict[str, str]:
    """A CloudFormation stack on moto whose outputs are an imgops stack's (pointing at `info`'s resources), as
    `--stack-name` reads them; moto cannot create the real template (FACTS.md)."""
    values = {
        StackOutputs.API_URL: info.api_url or "https://api.example/",
        StackOutputs.TOPIC_ARN: info.topic_arn,
        StackOutputs.USER_POOL_ID: info.user_pool_id,
        StackOutputs.USER_POOL_CLIENT_ID: info.user_pool_client_id,
        StackOutputs.WORKER_FUNCTION: ResourceNames(info.prefix).worker_function,
        StackOutputs.UPLOAD_BUCKET: info.upload_bucket,
        StackOutputs.PROCESSED_BUCKET: info.processed_bucket,
        StackOutputs.WORK_QUEUE_URL: info.queue_url,
        StackOutputs.DLQ_URL: info.dlq_url,
        StackOutputs.IMAGES_TABLE: info.images_table,
        **overrides,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in values.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    return values


# --- IAM: every AWS call a handler makes in these tests is checked against its role in the template ----------
# (tests/iam.py). The recorder hooks every client made from here on; a denied call fails the test that made it,
# and the session ends with what each function used of its role (test_iam.py asserts the complete picture).

IAM_RECORDER = pytest.StashKey[CallRecorder]()


@pytest.fixture(scope="session", autouse=True)
def iam_recorder(pytestconfig: pytest.Config) -> Iterator[CallRecorder]:
    """Installed before the functional tests make clients; clients cached by earlier suites are dropped."""
    forget_handler_state()
    recorder = CallRecorder()
    pytestconfig.stash[IAM_RECORDER] = recorder
    with recorder.installed():
        yield recorder


@functools.cache
def role_policies() -> RolePolicies:
    """The roles of the synthesized template (dashboards.template's cache: synthesized once per app source)."""
    from dashboards.template import stack_template

    return RolePolicies(stack_template())


@pytest.fixture(autouse=True)
def iam_enforced(iam_recorder: CallRecorder) -> Iterator[None]:
    """A call the function's role in the synthesized template would refuse fails the test that made it."""
    mark = iam_recorder.mark()
    yield
    calls = iam_recorder.since(mark)
    if not calls:
        return
    denied = [decision for decision in role_policies().decide(calls) if not decision.allowed]
    if denied:
        lines = "\n".join(f"  {decision.describe()}" for decision in denied)
        pytest.fail(f"the synthesized template's IAM would refuse these handler calls:\n{lines}", pytrace=False)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recorder = config.stash.get(IAM_RECORDER, None)
    if recorder is None or not recorder.calls:
        return
    policies = role_policies()
    decisions = policies.decide(recorder.calls)
    terminalreporter.write_sep("-", "IAM: what the handlers used of their roles in this run")
    for function, unused in sorted(policies.unused(decisions).items()):
        used = sorted({d.call.action for d in decisions if d.function == function and d.allowed})
        terminalreporter.write_line(f"{function}: used {', '.join(used) or 'nothing'}")
        if unused:
            terminalreporter.write_line(f"    not exercised: {', '.join(sorted({action for action, _ in unused}))}")
