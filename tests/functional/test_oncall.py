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

from imgops.cli import app
from monitoring import dlq
from monitoring.target import StackInfo
from pipeline import store, worker
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.functional.conftest import outputs_stack, receive_uploads

runner = CliRunner()
SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"


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
        from localaws.faults import error_response

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
        f"{unique_prefix}-copy",
        stack,
        **{StackOutputs.DLQ_URL: "https://sqs/dlq", StackOutputs.IMAGES_TABLE: "t-images"},
        **{StackOutputs.API_URL: "https://api.example/", StackOutputs.WORKER_FUNCTION: "t-worker"},
    )
    outputs_stack(f"{unique_prefix}-other", stack, **{StackOutputs.IMAGES_TABLE: ""})

    target = resolve_target(stack_name=f"{unique_prefix}-copy", region="us-east-1")

    assert (target.dlq_url, target.images_table, target.endpoint_url, target.local) == (
        "https://sqs/dlq",
        "t-images",
        None,
        False,
    )
    assert (target.api_url, target.worker_function, target.prefix) == (
        "https://api.example",
        "t-worker",
        f"{unique_prefix}-copy",
    )
    with pytest.raises(TargetError, match="lacks outputs"):
        resolve_target(stack_name=f"{unique_prefix}-other", region="us-east-1")
    with pytest.raises(TargetError, match="cannot read stack"):
        resolve_target(stack_name=f"{unique_prefix}-missing", region="us-east-1")


def narrow(*args: str) -> str:
    """`imgops ARGS` on an 80-column terminal: its output, after checking that it ran and nothing overflows."""
    result = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    assert "…" not in result.output, result.output  # nothing cut
    return result.output


def listed_ids(sqs: Any, stack: StackInfo) -> list[str]:
    batch = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [m["MessageId"] for m in batch.get("Messages", [])]


def test_inspect_at_80_columns_shows_the_ids_the_next_commands_take(
    stack: StackInfo, sqs: Any, state_file: Path
) -> None:
    failed, stuck = "0b6f7f8e-2222-4c3b-9d1e-0000000000a1", "0b6f7f8e-2222-4c3b-9d1e-0000000000a2"
    table = boto3.resource("dynamodb").Table(stack.images_table)
    table.put_item(Item={"imageId": failed, "userId": SUB, "status": "FAILED", "reason": "too big [12000x9000]"})
    table.put_item(Item={"imageId": stuck, "userId": SUB, "status": "PROCESSING", "sourceVersion": "e:"})
    park_in_dlq(sqs, stack, [s3_event(f"user-uploads/{SUB}/{failed}.jpg"), s3_event(f"user-uploads/{SUB}/{stuck}.jpg")])

    shown = narrow("dlq", "inspect", "--state-file", str(state_file))

    assert failed in shown
    assert stuck in shown
    assert "FAILED: too big [12000x9000]" in " ".join(shown.split())  # wrapped in its column; data, not markup
    full = json.loads(runner.invoke(app, ["dlq", "inspect", "--state-file", str(state_file), "--json"]).output)
    by_image = {m["image_id"]: m["message_id"] for m in full}
    rows = {line.split()[1]: line.split()[0] for line in shown.splitlines() if failed in line or stuck in line}
    for image_id, message_id in by_image.items():
        assert message_id.startswith(rows[image_id])
        assert len(rows[image_id]) >= 8

    moved = runner.invoke(
        app, ["dlq", "redrive", "--state-file", str(state_file), "--id", rows[failed], "--json"]
    )  # the short id as shown
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output)["moved"] == [by_image[failed]]
    assert listed_ids(sqs, stack) == [by_image[stuck]]


def test_redrive_refuses_unknown_and_ambiguous_ids(stack: StackInfo, sqs: Any, state_file: Path) -> None:
    bodies = [s3_event(f"user-uploads/{SUB}/{i}.jpg") for i in range(17)]
    park_in_dlq(sqs, stack, bodies)
    full = json.loads(runner.invoke(app, ["dlq", "inspect", "--state-file", str(state_file), "--json"]).output)
    first_characters = Counter(m["message_id"][0] for m in full)
    shared = next(c for c, n in first_characters.items() if n > 1)  # 17 ids, 16 hex digits: one repeats

    ambiguous = runner.invoke(app, ["dlq", "redrive", "--state-file", str(state_file), "--id", shared])
    unknown = runner.invoke(
        app, ["dlq", "redrive", "--state-file", str(state_file), "--id", full[0]["message_id"], "--id", "zzzzzzzz"]
    )

    assert ambiguous.exit_code == 1
    assert "give more of the id" in ambiguous.output
    assert unknown.exit_code == 1
    assert "no message on the DLQ has the id 'zzzzzzzz'" in unknown.output
    assert len(unknown.output.strip().splitlines()) == 1  # one line, no traceback
    assert bodies_on(sqs, stack.dlq_url) == Counter(bodies)  # nothing moved: not even the id that was right


def test_short_ids_grow_until_they_tell_messages_apart() -> None:
    ids = ["4f1c2d3e-aaaa", "4f1c2d3e-abbb", "9a8b7c6d-0000"]
    assert dlq.short_ids(ids) == {
        "4f1c2d3e-aaaa": "4f1c2d3e-aa",
        "4f1c2d3e-abbb": "4f1c2d3e-ab",
        "9a8b7c6d-0000": "9a8b7c6d-00",
    }
    assert dlq.short_ids(["4f1c2d3e-aaaa", "9a8b7c6d-0000"]) == {
        "4f1c2d3e-aaaa": "4f1c2d3e",
        "9a8b7c6d-0000": "9a8b7c6d",
    }


def test_images_status_at_80_columns_leads_with_what_on_call_needs(
    stack: StackInfo, s3: Any, sqs: Any, deps: WorkerDeps, state_file: Path
) -> None:
    image_id = "0b6f7f8e-2222-4c3b-9d1e-0000000000ee"
    s3.put_object(Bucket=stack.upload_bucket, Key=f"user-uploads/{SUB}/{image_id}.jpg", Body=jpeg_bytes(640, 480))
    [message] = receive_uploads(sqs, stack, 1)
    assert worker.process_message(message["Body"], deps) == ["DONE"]
    item = store.get(deps.table, image_id) or {}

    shown = narrow("images", "status", image_id, "--state-file", str(state_file))

    labels = [line.split()[0] for line in shown.splitlines() if line and not line.startswith(" ")]
    assert labels[:4] == ["status", "image", "user", "original"]
    assert shown.splitlines()[0].split() == ["status", "DONE"]
    assert image_id in shown
    assert SUB in shown
    assert "640 × 480 px" in shown
    assert f"{item['processed_at'][:10]} " in shown  # a readable UTC time, not the stored ISO string
    assert " UTC (" in shown
    for size, key in item["processedS3Keys"].items():
        assert f"{size} → {key}" in shown
    for bookkeeping in ("claimToken", "lease_expires", "sourceVersion", "claimed_at", "notified_at"):
        assert bookkeeping in item
        assert bookkeeping not in shown
        assert str(item[bookkeeping]) not in shown
    as_json = json.loads(
        runner.invoke(app, ["images", "status", image_id, "--state-file", str(state_file), "--json"]).output
    )
    assert as_json == json.loads(json.dumps(item, default=str))  # --json: the whole item, bookkeeping included
