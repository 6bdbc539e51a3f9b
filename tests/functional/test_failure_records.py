"""Every failed attempt leaves its cause where on-call looks: the worker's log, the image item, `imgops dlq inspect`
and `imgops images status` (issue #11: a throttled claim PutItem used to leave no trace anywhere), for every upload
of a batch, at every stage, overlapped (the default) and one at a time (issue #21: with the SDK's retries, a
throttled batch outlived its invocation and most of its messages reached the DLQ with no item)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from typer.testing import CliRunner

from imgops.cli import app
from localaws.context import LocalLambdaContext
from localaws.runtime import sqs_event
from monitoring.images import status_rows
from monitoring.target import StackInfo
from pipeline import aws, imaging, labels, store, worker
from pipeline.errors import describe_failure
from pipeline.resources import QUEUE_MAX_RECEIVE_COUNT
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.faults import inject_fault
from tests.functional.conftest import NO_RETRIES, provisioned_stack, receive_uploads

runner = CliRunner()
SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"
IMAGE_ID = "0b6f7f8e-2222-4c3b-9d1e-0000000000d1"
OTHER_IMAGE_ID = "0b6f7f8e-2222-4c3b-9d1e-0000000000d2"
THROTTLED = "ProvisionedThroughputExceededException"


@pytest.fixture
def stack(moto_endpoint: str, unique_prefix: str) -> StackInfo:
    """The conftest stack, with a 1 s visibility timeout: a failed delivery comes back at once."""
    return provisioned_stack(moto_endpoint, unique_prefix, visibility_timeout=1)


@pytest.fixture
def worker_log() -> Iterator[io.StringIO]:
    """What the worker's Powertools logger writes (on Lambda: the function's CloudWatch Logs), one JSON per line."""
    captured = io.StringIO()
    handler = worker.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(captured)
    yield captured
    handler.setStream(previous)


@pytest.fixture
def handler_deps(deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch) -> WorkerDeps:
    """`worker.handler` with the test's clients (no SDK retries), so faults injected into them reach it."""
    monkeypatch.setattr(worker, "_deps", lambda: deps)
    return deps


def log_records(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines() if line.strip()]


def invoke(stack: StackInfo, messages: list[dict[str, Any]], timeout_seconds: int = 60) -> set[str]:
    """Run the worker's handler on the messages as Lambda would; the ids it reports as failed."""
    event = sqs_event(messages, queue_arn=stack.queue_arn, region=stack.region)
    try:
        response = worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=timeout_seconds))
    except BatchProcessingError:  # every record failed: Lambda retries the whole batch
        return {m["MessageId"] for m in messages}
    return {str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]}


def invoke_until_timeout(stack: StackInfo, messages: list[dict[str, Any]], timeout_seconds: int) -> set[str]:
    """`invoke`, which must end within the invocation's timeout: Lambda kills an invocation that outlives it, and
    whatever the worker had not recorded by then is lost."""
    outcome: list[set[str]] = []
    running = threading.Thread(target=lambda: outcome.append(invoke(stack, messages, timeout_seconds)), daemon=True)
    running.start()
    running.join(timeout_seconds)
    assert outcome, f"the invocation outlived its {timeout_seconds} s timeout: Lambda would have killed it"
    return outcome[0]


def put_upload(s3: Any, stack: StackInfo, image_id: str = IMAGE_ID, width: int = 320) -> str:
    key = f"user-uploads/{SUB}/{image_id}.jpg"
    s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=jpeg_bytes(width, 240), ContentType="image/jpeg")
    return key


def wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.3)
    raise AssertionError("timed out")


def parked_count(sqs: Any, stack: StackInfo) -> int:
    """Messages on the DLQ, after a receive on the work queue (moto moves a message past maxReceiveCount then)."""
    sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)
    attributes = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def narrow(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    return result.output


@pytest.mark.usefixtures("handler_deps")
def test_a_throttled_claim_leaves_its_cause_everywhere_on_call_looks(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, worker_log: io.StringIO, state_file: Path
) -> None:
    """The story of issue #11: `dynamodb:PutItem=1:ProvisionedThroughputExceededException`, an upload (in a batch
    with another), the runbook. Every delivery fails at the claim's PutItem, so the item can only be written
    another way."""
    assert deps.settings.worker_overlap  # as deployed
    key = put_upload(s3, stack)
    put_upload(s3, stack, OTHER_IMAGE_ID)
    inject_fault(deps.table.meta.client, "PutItem", status=400, code=THROTTLED)

    delivered: list[str] = []
    for _ in range(QUEUE_MAX_RECEIVE_COUNT):
        messages = receive_uploads(sqs, stack, 2, timeout=10)
        assert invoke(stack, messages) == {m["MessageId"] for m in messages}
        delivered += [m["MessageId"] for m in messages if IMAGE_ID in m["Body"]]
    message_id = delivered[0]
    assert delivered == [message_id] * QUEUE_MAX_RECEIVE_COUNT

    item = store.get(deps.table, IMAGE_ID)
    assert item is not None, "the item exists from the first attempt"
    assert item["attempts"] == QUEUE_MAX_RECEIVE_COUNT
    assert item["last_error"].startswith(f"{THROTTLED}: claim (PutItem): ")
    assert len(item["last_error"]) <= 300
    assert (item["status"], item["userId"], item["originalS3Key"]) == ("PROCESSING", SUB, key)
    assert item["last_attempt_at"]

    retried = [r for r in log_records(worker_log) if r["message"] == "upload will be retried"]
    assert len([r for r in retried if r["image_id"] == OTHER_IMAGE_ID]) == QUEUE_MAX_RECEIVE_COUNT
    retried = [r for r in retried if r["image_id"] == IMAGE_ID]
    assert len(retried) == QUEUE_MAX_RECEIVE_COUNT
    for record in retried:
        assert (record["key"], record["image_id"], record["stage"]) == (key, IMAGE_ID, "claim")
        assert record["message_id"] == message_id
        assert THROTTLED in record["error"]
        assert record["transient"] is True
        assert record["level"] == "ERROR"
        assert THROTTLED in record["exception"]  # the traceback, as logger.exception writes it

    wait_for(lambda: parked_count(sqs, stack) == 2)  # SQS parks them after maxReceiveCount receives
    shown = runner.invoke(app, ["dlq", "inspect", "--state-file", str(state_file), "--json"])
    assert shown.exit_code == 0, shown.output
    [parked] = [m for m in json.loads(shown.output) if m["image_id"] == IMAGE_ID]
    assert parked["message_id"] == message_id
    assert (parked["status"], parked["state"], parked["attempts"]) == ("PROCESSING", "RETRYING", 3)
    assert parked["last_error"] == item["last_error"]
    assert (parked["user_id"], parked["s3_key"], parked["error_class"]) == (SUB, key, THROTTLED)

    table = narrow("dlq", "inspect", "--state-file", str(state_file))
    flat = " ".join(table.split())
    assert f"{IMAGE_ID} · 3 attempts · sent" in flat
    assert f"RETRYING · last error {THROTTLED}: claim (PutItem)" in flat
    assert f"user {SUB}" in flat
    assert "receive count" in flat  # inspecting raises them: it says so

    status = narrow("images", "status", IMAGE_ID, "--state-file", str(state_file))
    lines = [line.split() for line in status.splitlines() if line.strip()]
    assert lines[0] == ["status", "RETRYING"]
    assert ["attempts", "3"] in lines
    assert f"last error {THROTTLED}: claim (PutItem)" in " ".join(status.split())
    assert any(line.startswith("last attempt ") and " UTC (" in line for line in status.splitlines())


OVERLAP = pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "one-at-a-time"])


@pytest.fixture
def worker_as_deployed(handler_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], WorkerDeps]]:
    """`worker.handler` with the clients and settings it has on Lambda (pipeline.aws: the SDK retries and backs
    off), and IMGOPS_WORKER_OVERLAP unset (the default) or 0."""

    def configure(overlap: bool) -> WorkerDeps:
        if not overlap:
            monkeypatch.setenv("IMGOPS_WORKER_OVERLAP", "0")
        aws.forget_clients()
        worker._deps.cache_clear()
        return worker._deps()

    yield configure
    aws.forget_clients()  # the clients carry the test's faults


@OVERLAP
def test_a_throttle_names_its_cause_for_every_message_of_a_batch(
    overlap: bool,
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    worker_as_deployed: Callable[[bool], WorkerDeps],
    state_file: Path,
) -> None:
    """Issue #21, as on-call met it: `dynamodb:PutItem=1:ProvisionedThroughputExceededException`, five uploads, the
    worker as deployed (its SDK retries back off for seconds per call) with a short timeout (8 s; its last 2 s are
    the reserve no backoff may reach into). Every delivery of every message must end inside the timeout having
    recorded why it failed, so all five reach the DLQ with their cause."""
    deps = worker_as_deployed(overlap)
    assert deps.settings.worker_overlap is overlap
    images = [f"0b6f7f8e-2222-4c3b-9d1e-{n:012d}" for n in range(1, 6)]
    keys = {image_id: put_upload(s3, stack, image_id) for image_id in images}
    inject_fault(deps.table.meta.client, "PutItem", status=400, code=THROTTLED)

    for delivery in range(1, QUEUE_MAX_RECEIVE_COUNT + 1):
        messages = receive_uploads(sqs, stack, len(images), timeout=10)
        failed = invoke_until_timeout(stack, messages, timeout_seconds=8)
        assert failed == {m["MessageId"] for m in messages}
        recorded = {i: store.get(deps.table, i) or {} for i in images}
        missing = [i for i, item in recorded.items() if item.get("attempts") != delivery]
        assert not missing, f"delivery {delivery}: no attempt recorded for {len(missing)} of {len(images)}"

    wait_for(lambda: parked_count(sqs, stack) == len(images))
    shown = runner.invoke(app, ["dlq", "inspect", "--state-file", str(state_file), "--json"])
    assert shown.exit_code == 0, shown.output
    parked = {m["image_id"]: m for m in json.loads(shown.output)}
    assert sorted(parked) == images
    for image_id, message in parked.items():
        assert message["last_error"].startswith(f"{THROTTLED}: claim (PutItem): "), message
        assert (message["attempts"], message["state"], message["error_class"]) == (3, "RETRYING", THROTTLED)
        assert message["s3_key"] == keys[image_id]
        status = narrow("images", "status", image_id, "--state-file", str(state_file))
        assert f"last error {THROTTLED}: claim (PutItem)" in " ".join(status.split())
        assert ["attempts", "3"] in [line.split() for line in status.splitlines()]


# Each stage of an upload, how a test breaks it for every upload of a batch, and the `last_error` that must follow.
STAGES = {
    "claim": f"{THROTTLED}: claim (PutItem): injected fault",
    "read": "SlowDown: read (GetObject): injected fault",
    "decode": "RuntimeError: decode: codec crashed",
    "write": "SlowDown: write (PutObject): injected fault",
    "labels": "RuntimeError: labels: labels stage crashed",
    "finish": f"{THROTTLED}: finish (UpdateItem): injected fault",
    "notify": "Throttling: notify (Publish): injected fault",
}


def break_stage(stage: str, deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Every upload fails at `stage`: an AWS error as `imgops faults set` injects it, or (decode, labels: no AWS
    call of theirs to break) a defect in the worker's own code. Returns what heals it."""
    faults = {
        "claim": (deps.table.meta.client, "PutItem", 400, THROTTLED),
        "read": (deps.s3, "GetObject", 503, "SlowDown"),
        "write": (deps.s3, "PutObject", 503, "SlowDown"),
        "finish": (deps.table.meta.client, "UpdateItem", 400, THROTTLED),
        "notify": (deps.sns, "Publish", 400, "Throttling"),
    }
    if stage in faults:
        client, operation, status, code = faults[stage]
        return inject_fault(client, operation, status=status, code=code)
    broken = [True]
    real = imaging.make_thumbnails

    def decode(data: bytes, options: Any) -> Any:
        if broken[0]:
            raise RuntimeError("codec crashed")
        return real(data, options)

    def detect(_: Any, **__: Any) -> dict[str, Any]:
        if broken[0]:
            raise RuntimeError("labels stage crashed")
        return {"labels": []}

    if stage == "decode":
        monkeypatch.setattr(worker, "make_thumbnails", decode)
    else:
        monkeypatch.setattr(labels, "detect", detect)
    return lambda: broken.__setitem__(0, False)


@OVERLAP
@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_records_its_failure_for_every_upload_of_a_batch(
    stage: str,
    overlap: bool,
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    deps: WorkerDeps,
    worker_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whichever thread runs the stage (overlapped: the fetch thread claims and reads ahead, the handler's thread
    decodes, the writer writes, asks for labels, finishes and notifies), each upload's item says why its attempt
    failed, the claim (if any) is let go, and the next delivery succeeds and keeps the account."""
    configured = replace(deps, settings=replace(deps.settings, worker_overlap=overlap))
    if stage == "labels":
        settings = replace(configured.settings, labels="rekognition")
        configured = replace(configured, settings=settings, rekognition=boto3.client("rekognition", config=NO_RETRIES))
    monkeypatch.setattr(worker, "_deps", lambda: configured)
    images = [f"0b6f7f8e-2222-4c3b-9d1e-{n:012d}" for n in range(1, 4)]
    for image_id in images:
        put_upload(s3, stack, image_id)
    messages = receive_uploads(sqs, stack, len(images))
    message_of = {worker.parse_s3_event(m["Body"])[0].image_id: m["MessageId"] for m in messages}
    heal = break_stage(stage, configured, monkeypatch)

    assert invoke(stack, messages) == set(message_of.values())

    retried = {r["image_id"]: r for r in log_records(worker_log) if r["message"] == "upload will be retried"}
    for image_id in images:
        item = store.get(deps.table, image_id) or {}
        assert item.get("last_error") == STAGES[stage], (image_id, item)
        assert (item["attempts"], item["status"]) == (1, "DONE" if stage == "notify" else "PROCESSING")
        assert item["last_attempt_at"]
        assert item.get("lease_expires", 0) == 0  # a claim, if there was one, is let go
        assert (retried[image_id]["stage"], retried[image_id]["message_id"]) == (stage, message_of[image_id])

    heal()
    assert invoke(stack, messages) == set()
    for image_id in images:
        item = store.get(deps.table, image_id) or {}
        assert (item["status"], item["attempts"], item["last_error"]) == ("DONE", 2, STAGES[stage])
        assert item["notified_at"]


@OVERLAP
def test_recording_the_failure_never_replaces_the_error(
    overlap: bool,
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    deps: WorkerDeps,
    worker_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DynamoDB refuses every write: nothing can be recorded, which is logged, and the claim's error is what
    fails each message."""
    configured = replace(deps, settings=replace(deps.settings, worker_overlap=overlap))
    monkeypatch.setattr(worker, "_deps", lambda: configured)
    keys = {image_id: put_upload(s3, stack, image_id) for image_id in (IMAGE_ID, OTHER_IMAGE_ID)}
    messages = receive_uploads(sqs, stack, 2)
    inject_fault(deps.table.meta.client, "PutItem", status=400, code=THROTTLED)
    inject_fault(deps.table.meta.client, "UpdateItem", status=500, code="InternalServerError")

    assert invoke(stack, messages) == {m["MessageId"] for m in messages}

    table = boto3.resource("dynamodb").Table(stack.images_table)
    for image_id, key in keys.items():
        assert table.get_item(Key={"imageId": image_id}).get("Item") is None
        records = {r["message"]: r for r in log_records(worker_log) if r.get("image_id") == image_id}
        assert THROTTLED in records["upload will be retried"]["error"]
        unrecorded = records["could not record the failure on the image item"]
        assert unrecorded["key"] == key
        assert unrecorded["record_error"].startswith("InternalServerError: record (UpdateItem)")


def test_a_failure_after_the_claim_lets_go_and_is_kept_after_success(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, worker_log: io.StringIO
) -> None:
    put_upload(s3, stack)
    [message] = receive_uploads(sqs, stack, 1)
    heal = inject_fault(s3, "PutObject", status=503, code="SlowDown")

    with pytest.raises(Exception, match="SlowDown"):
        worker.process_message(message["Body"], deps)

    failed = store.get(deps.table, IMAGE_ID) or {}
    assert (failed["status"], failed["attempts"], failed["lease_expires"]) == ("PROCESSING", 1, 0)  # let go
    assert failed["last_error"].startswith("SlowDown: write (PutObject): ")
    assert dict(status_rows(failed))["status"] == "RETRYING"
    [record] = [r for r in log_records(worker_log) if r["message"] == "upload will be retried"]
    assert (record["stage"], record["image_id"]) == ("write", IMAGE_ID)

    heal()
    assert worker.process_message(message["Body"], deps) == ["DONE"]
    done = store.get(deps.table, IMAGE_ID) or {}
    assert (done["status"], done["attempts"], done["last_error"]) == ("DONE", 2, failed["last_error"])
    assert done["last_attempt_at"] > failed["last_attempt_at"]
    rows = dict(status_rows(done))
    assert (rows["status"], rows["attempts"]) == ("DONE", "2")


def test_a_lost_notification_is_recorded_on_the_finished_item(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps
) -> None:
    put_upload(s3, stack)
    [message] = receive_uploads(sqs, stack, 1)
    heal = inject_fault(deps.sns, "Publish", status=400, code="Throttling")

    with pytest.raises(Exception, match="Throttling"):
        worker.process_message(message["Body"], deps)
    heal()

    item = store.get(deps.table, IMAGE_ID) or {}
    assert (item["status"], item["attempts"], item["lease_expires"]) == ("DONE", 1, 0)
    assert item["last_error"].startswith("Throttling: notify (Publish): ")
    assert worker.process_message(message["Body"], deps) == ["notify_only"]
    notified = store.get(deps.table, IMAGE_ID) or {}
    assert (notified["attempts"], notified["last_error"]) == (2, item["last_error"])
    assert notified["notified_at"]
    assert worker.process_message(message["Body"], deps) == ["duplicate"]
    assert (store.get(deps.table, IMAGE_ID) or {})["attempts"] == 2  # a duplicate is not an attempt


def test_a_newer_upload_starts_its_attempts_afresh(stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps) -> None:
    put_upload(s3, stack)
    [older] = receive_uploads(sqs, stack, 1)
    # Keep its body, not the message: under load the throttled attempt below can outlast the visibility timeout.
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=older["ReceiptHandle"])
    heal = inject_fault(deps.table.meta.client, "PutItem", status=400, code=THROTTLED)
    with pytest.raises(Exception, match=THROTTLED):
        worker.process_message(older["Body"], deps)
    heal()
    time.sleep(0.01)  # event times are millisecond-precise
    put_upload(s3, stack, width=300)  # other content: another version of the key
    [newer] = receive_uploads(sqs, stack, 1)

    assert worker.process_message(newer["Body"], deps) == ["DONE"]
    assert worker.process_message(older["Body"], deps) == ["stale"]
    item = store.get(deps.table, IMAGE_ID) or {}
    assert (item["status"], item["attempts"]) == ("DONE", 1)
    assert "last_error" not in item


def test_malformed_messages_are_logged_with_their_message_id(
    stack: StackInfo, sqs: Any, worker_log: io.StringIO, handler_deps: WorkerDeps
) -> None:
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="this is not an S3 event")
    [message] = receive_uploads(sqs, stack, 1)

    assert invoke(stack, [message]) == {message["MessageId"]}

    [record] = [r for r in log_records(worker_log) if r["message"] == "message will be retried"]
    assert record["message_id"] == message["MessageId"]
    assert "MalformedMessage" in record["exception_name"]


def test_describe_failure_is_one_bounded_line() -> None:
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": THROTTLED, "Message": "Rate exceeded\nfor table " + "x" * 400}}, "PutItem")
    text = describe_failure(error, "claim")
    assert text.startswith(f"{THROTTLED}: claim (PutItem): Rate exceeded for table xxx")
    assert len(text) == 300
    assert text.endswith("...")
    assert describe_failure(TimeoutError("read timed out"), "read") == "TimeoutError: read: read timed out"
