"""On-call commands against moto: the DLQ is never lost or duplicated, images can be looked at and redone."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from typer.testing import CliRunner

from imgops import app
from monitoring import dlq
from monitoring.target import StackInfo
from pipeline import store, worker
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.functional.conftest import outputs_stack, receive_uploads

runner = CliRunner()
SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"


@pytest.fixture
def state_file(stack: StackInfo, tmp_path: Path) -> Path:
    path = tmp_path / "local-stack.json"
    path.write_text(stack.to_json())
    return path


def park_in_dlq(sqs: Any, stack: StackInfo, bodies: list[str]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)


def bodies_on(sqs: Any, queue_url: str) -> Counter[str]:
    """Every message body on the queue, each counted once; all visible again afterwards."""
    found: dict[str, dict[str, Any]] = {}
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30)
        messages = batch.get("Messages", [])
        if not messages:
            break
        found.update({m["MessageId"]: m for m in messages})
    for message in found.values():
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return Counter(m["Body"] for m in found.values())


def s3_event(key: str) -> str:
    return json.dumps({"Records": [{"eventTime": "2026-11-23T10:00:00.000Z", "s3": {
        "bucket": {"name": "b"}, "object": {"key": key, "eTag": "e"}}}]})  # fmt: skip


def test_inspect_lists_with_reasons_and_leaves_the_dlq_as_it_was(stack: StackInfo, sqs: Any, state_file: Path) -> None:
    image_id = "0b6f7f8e-2222-4c3b-9d1e-0000000000aa"
    boto3.resource("dynamodb").Table(stack.images_table).put_item(
        Item={"imageId": image_id, "userId": SUB, "status": "PROCESSING", "sourceVersion": "e:", "reason": ""}
    )
    park_in_dlq(sqs, stack, [s3_event(f"user-uploads/{SUB}/{image_id}.jpg"), "garbage"])

    result = runner.invoke(app, ["dlq", "inspect", "--state-file", str(state_file), "--json"])

    assert result.exit_code == 0, result.output
    listed = {m["image_id"] or m["reason"]: m for m in json.loads(result.output)}
    assert listed[image_id]["s3_key"] == f"user-uploads/{SUB}/{image_id}.jpg"
    assert listed[image_id]["status"] == "PROCESSING"
    assert any(key.startswith("not an S3 event") for key in listed)
    # Everything is still there, and visible again at once.
    assert bodies_on(sqs, stack.dlq_url) == Counter([s3_event(f"user-uploads/{SUB}/{image_id}.jpg"), "garbage"])


def test_redrive_moves_everything_back(stack: StackInfo, sqs: Any, state_file: Path) -> None:
    bodies = [s3_event(f"user-uploads/{SUB}/{i}.jpg") for i in range(12)]
    park_in_dlq(sqs, stack, bodies)

    result = runner.invoke(app, ["dlq", "redrive", "--state-file", str(state_file), "--json"])

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["moved"]) == 12  # moto has no move task: copy-then-delete
    assert bodies_on(sqs, stack.dlq_url) == Counter()
    assert {b: n for b, n in bodies_on(sqs, stack.queue_url).items() if "TestEvent" not in b} == Counter(bodies)


def test_redrive_failing_half_way_loses_and_duplicates_nothing(stack: StackInfo, sqs: Any) -> None:
    bodies = [s3_event(f"user-uploads/{SUB}/{i}.jpg") for i in range(6)]
    park_in_dlq(sqs, stack, bodies)
    sends = {"count": 0}

    def fail_after_three(**_: Any) -> Any:
        from loadtest.local.faults import error_response

        sends["count"] += 1
        return error_response("sqs", "InternalError") if sends["count"] > 3 else None

    flaky = boto3.client("sqs", config=Config(retries={"total_max_attempts": 1}))
    flaky.meta.events.register("before-send.sqs.SendMessage", fail_after_three)

    result = dlq.redrive(flaky, dlq_url=stack.dlq_url, queue_url=stack.queue_url, prefer_move_task=False)

    assert len(result.moved) == 3
    assert "stopped after 3 of 6" in result.error
    on_dlq = bodies_on(sqs, stack.dlq_url)
    on_queue = Counter({b: n for b, n in bodies_on(sqs, stack.queue_url).items() if "TestEvent" not in b})
    assert on_dlq + on_queue == Counter(bodies)  # nothing lost, nothing twice
    assert not set(on_dlq) & set(on_queue)


def test_purge_needs_yes(stack: StackInfo, sqs: Any, state_file: Path) -> None:
    park_in_dlq(sqs, stack, ["a", "b"])

    refused = runner.invoke(app, ["dlq", "purge", "--state-file", str(state_file)])
    assert refused.exit_code == 1
    assert "--yes" in refused.output
    assert bodies_on(sqs, stack.dlq_url) == Counter(["a", "b"])

    done = runner.invoke(app, ["dlq", "purge", "--state-file", str(state_file), "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.output)) == 2
    assert bodies_on(sqs, stack.dlq_url) == Counter()


def test_images_status_and_reprocess(stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, state_file: Path) -> None:
    image_id = "0b6f7f8e-2222-4c3b-9d1e-0000000000cc"
    s3.put_object(Bucket=stack.upload_bucket, Key=f"user-uploads/{SUB}/{image_id}.jpg", Body=jpeg_bytes(640, 480))
    [message] = receive_uploads(sqs, stack, 1)
    assert worker.process_message(message["Body"], deps) == ["DONE"]
    first = store.get(deps.table, image_id) or {}

    shown = runner.invoke(app, ["images", "status", image_id, "--state-file", str(state_file), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["status"] == "DONE"

    queued = runner.invoke(app, ["images", "reprocess", image_id, "--state-file", str(state_file)])
    assert queued.exit_code == 0, queued.output
    [again] = receive_uploads(sqs, stack, 1)
    assert worker.process_message(again["Body"], deps) == ["DONE"]  # not skipped as a duplicate
    second = store.get(deps.table, image_id) or {}
    assert second["processed_at"] > first["processed_at"]
    assert second["sourceVersion"] != first["sourceVersion"]

    missing = runner.invoke(
        app, ["images", "status", "0b6f7f8e-2222-4c3b-9d1e-00000000ffff", "--state-file", str(state_file)]
    )
    assert missing.exit_code == 1
    assert "no image" in missing.output


def test_deployed_stack_is_found_by_its_outputs(stack: StackInfo, unique_prefix: str) -> None:
    from monitoring.target import TargetError, resolve_target
    from pipeline.resources import StackOutputs

    outputs_stack(
        f"{unique_prefix}-pipeline",
        stack,
        **{StackOutputs.DLQ_URL: "https://sqs/dlq", StackOutputs.IMAGES_TABLE: "t-images"},
        **{StackOutputs.API_URL: "https://api.example/", StackOutputs.WORKER_FUNCTION: "t-worker"},
    )
    outputs_stack(f"{unique_prefix}-other", stack, **{StackOutputs.IMAGES_TABLE: ""})

    target = resolve_target(stack_name=f"{unique_prefix}-pipeline", region="us-east-1")

    assert (target.dlq_url, target.images_table, target.endpoint_url, target.local) == (
        "https://sqs/dlq",
        "t-images",
        None,
        False,
    )
    assert (target.api_url, target.worker_function, target.prefix) == ("https://api.example", "t-worker", unique_prefix)
    with pytest.raises(TargetError, match="lacks outputs"):
        resolve_target(stack_name=f"{unique_prefix}-other", region="us-east-1")
    with pytest.raises(TargetError, match="cannot read stack"):
        resolve_target(stack_name=f"{unique_prefix}-missing", region="us-east-1")
