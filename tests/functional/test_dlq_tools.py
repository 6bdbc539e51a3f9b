"""DLQ tooling for real incidents: messages grouped by error class, a redrive of one class, and a canary redrive
that sends a few first and the rest only once those finished. The worker's handler runs in the test's own loop."""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgops.cli import app
from monitoring import dlq
from monitoring.target import StackInfo
from pipeline import store, worker
from pipeline.worker import WorkerDeps
from tests.faults import inject_fault
from tests.functional.conftest import provisioned_stack, receive_uploads
from tests.functional.test_failure_records import THROTTLED, invoke, parked_count, put_upload

runner = CliRunner()
SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"


def image(n: int) -> str:
    return f"0b6f7f8e-2222-4c3b-9d1e-{n:012d}"


@pytest.fixture
def stack(moto_endpoint: str, unique_prefix: str) -> StackInfo:
    """A 1 s visibility timeout: a failed delivery comes back at once."""
    return provisioned_stack(moto_endpoint, unique_prefix, visibility_timeout=1)


@pytest.fixture(autouse=True)
def handler_deps(deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch) -> WorkerDeps:
    monkeypatch.setattr(worker, "_deps", lambda: deps)
    return deps


def park(sqs: Any, stack: StackInfo, messages: list[dict[str, Any]]) -> None:
    """Where SQS puts a message after its last failed receive."""
    for message in messages:
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def fail_and_park(s3: Any, sqs: Any, stack: StackInfo, deps: WorkerDeps, images: list[str], client: Any,
                  operation: str, code: str) -> None:  # fmt: skip
    """Uploads whose delivery failed on `operation` (the item records it), parked in the DLQ. Delivered as Lambda
    delivers them: one batch, through the handler, as deployed (overlapped)."""
    assert deps.settings.worker_overlap
    for image_id in images:
        put_upload(s3, stack, image_id)
    messages = receive_uploads(sqs, stack, len(images))
    heal = inject_fault(client, operation, status=400, code=code)
    assert invoke(stack, messages) == {m["MessageId"] for m in messages}
    heal()
    park(sqs, stack, messages)


def s3_event(image_id: str) -> str:
    return json.dumps({"Records": [{"eventTime": "2026-11-23T10:00:00.000Z", "s3": {
        "bucket": {"name": "b"}, "object": {"key": f"user-uploads/{SUB}/{image_id}.jpg", "eTag": "e"}}}]})  # fmt: skip


@pytest.fixture
def incident(s3: Any, sqs: Any, stack: StackInfo, deps: WorkerDeps) -> dict[str, list[str]]:
    """A DLQ as an outage leaves it: three claims throttled, one notification throttled, one upload with no item
    at all, one message that is not an S3 event. Image ids by error class."""
    throttled, notify = [image(1), image(2), image(3)], [image(4)]
    fail_and_park(s3, sqs, stack, deps, throttled, deps.table.meta.client, "PutItem", THROTTLED)
    fail_and_park(s3, sqs, stack, deps, notify, deps.sns, "Publish", "Throttling")
    sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=s3_event(image(5)))
    sqs.send_message(QueueUrl=stack.dlq_url, MessageBody="garbage")
    return {THROTTLED: throttled, "Throttling": notify, dlq.NO_ITEM: [image(5)], dlq.NOT_AN_S3_EVENT: [""]}


def cli(*args: str, columns: int = 80) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns)})


def test_inspect_by_error_counts_each_class_with_example_ids(incident: dict[str, list[str]], state_file: Path) -> None:
    grouped = cli("dlq", "inspect", "--by-error", "--state-file", str(state_file), "--json")
    listed = cli("dlq", "inspect", "--state-file", str(state_file), "--json")
    shown = cli("dlq", "inspect", "--by-error", "--state-file", str(state_file))

    assert grouped.exit_code == listed.exit_code == shown.exit_code == 0, grouped.output + shown.output
    groups = json.loads(grouped.output)
    assert [(g["error_class"], g["count"]) for g in groups] == [
        (THROTTLED, 3),  # the largest first, then by name
        ("Throttling", 1),
        ("no item", 1),
        ("not an S3 event", 1),
    ]
    messages = {m["message_id"]: m for m in json.loads(listed.output)}
    for group in groups:
        assert sorted(messages[i]["image_id"] for i in group["message_ids"]) == sorted(incident[group["error_class"]])
        assert {messages[i]["error_class"] for i in group["message_ids"]} == {group["error_class"]}
    assert groups[0]["example_error"].startswith(f"{THROTTLED}: claim (PutItem)")
    assert groups[1]["example_error"].startswith("Throttling: notify (Publish)")
    assert all("last_error" in m for m in messages.values())

    assert max(len(line) for line in shown.output.splitlines()) <= 80, shown.output
    rows = {line.split()[1]: line.split() for line in shown.output.splitlines() if line.strip()[:1].isdigit()}
    assert rows[THROTTLED][0] == "3"
    short = dlq.short_ids(list(messages))
    assert [i.rstrip(",") for i in rows[THROTTLED][2:]] == [short[i] for i in groups[0]["message_ids"]]
    assert "no item" in shown.output
    assert "receive count" in " ".join(shown.output.split())


def test_inspect_shows_every_message_at_80_columns(incident: dict[str, list[str]], state_file: Path) -> None:
    shown = cli("dlq", "inspect", "--state-file", str(state_file))

    assert shown.exit_code == 0, shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 80, shown.output
    flat = " ".join(shown.output.split())
    for image_id in incident[THROTTLED]:
        assert f"{image_id} · 1 attempt · sent" in flat
    assert f"{image(4)} · 1 attempt" in flat
    assert "DONE · last error Throttling: notify (Publish): injected fault" in flat
    assert f"{image(5)} · sent" in flat  # no item: no attempts to tell
    assert "no item" in flat
    assert "not an S3 event" in flat


def test_redrive_one_error_class(incident: dict[str, list[str]], sqs: Any, stack: StackInfo, state_file: Path) -> None:
    unknown = cli("dlq", "redrive", "--state-file", str(state_file), "--error-class", "Nope")
    assert unknown.exit_code == 1
    assert "no DLQ message has the error class 'Nope'" in unknown.output
    assert f"{THROTTLED} (3)" in unknown.output  # what there is
    assert parked_count(sqs, stack) == 6

    moved = cli("dlq", "redrive", "--state-file", str(state_file), "--error-class", THROTTLED.lower(), "--json")

    assert moved.exit_code == 0, moved.output
    result = json.loads(moved.output)
    assert (result["method"], len(result["moved"]), result["error"]) == ("copy", 3, "")
    on_queue = receive_uploads(sqs, stack, 3)
    assert sorted(worker.parse_s3_event(m["Body"])[0].image_id for m in on_queue) == incident[THROTTLED]
    left = json.loads(cli("dlq", "inspect", "--by-error", "--state-file", str(state_file), "--json").output)
    assert sorted(g["error_class"] for g in left) == ["Throttling", "no item", "not an S3 event"]


def test_default_canary_timeout_follows_the_work_queues_visibility_timeout(sqs: Any, stack: StackInfo) -> None:
    assert dlq.visibility_timeout(sqs, stack.queue_url) == 1
    assert dlq.default_canary_timeout(360) == 420  # as deployed: 6 × a 60 s function timeout, and a minute


def worker_pass(sqs: Any, stack: StackInfo) -> int:
    """One poll of the work queue by the worker, as Lambda's SQS poller does it: successes are deleted."""
    messages = sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
    ).get("Messages", [])
    if messages:
        failed = invoke(stack, messages)
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def test_canary_finishes_then_the_rest_follow(
    incident: dict[str, list[str]], sqs: Any, stack: StackInfo, deps: WorkerDeps, state_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The outage is over: the canary is processed, and only then are the other two of its class moved."""
    on_dlq_while_waiting: list[int] = []

    def run_worker(_: float) -> None:  # the canary's wait: the worker gets a turn
        attributes = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        on_dlq_while_waiting.append(int(attributes["Attributes"]["ApproximateNumberOfMessages"]))
        worker_pass(sqs, stack)

    monkeypatch.setattr(dlq, "canary_redrive", functools.partial(dlq.canary_redrive, sleep=run_worker))

    result = cli(
        "dlq", "redrive", "--state-file", str(state_file), "--error-class", THROTTLED, "--canary", "1", "--json"
    )

    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output)
    [canary] = outcome["canaries"]
    assert (canary["outcome"], canary["image_id"] in incident[THROTTLED]) == ("DONE", True)
    assert outcome["method"] == "canary"
    assert len(outcome["moved"]) == 3
    assert outcome["moved"][0] == canary["message_id"]
    assert on_dlq_while_waiting
    assert set(on_dlq_while_waiting) == {5}  # the rest waited on the DLQ
    while worker_pass(sqs, stack):
        pass
    assert {(store.get(deps.table, i) or {}).get("status") for i in incident[THROTTLED]} == {"DONE"}
    assert [g["error_class"] for g in json.loads(cli("dlq", "inspect", "--by-error", "--state-file",
            str(state_file), "--json").output)] == ["Throttling", "no item", "not an S3 event"]  # fmt: skip


def test_canary_that_fails_again_stops_the_redrive(
    incident: dict[str, list[str]], sqs: Any, stack: StackInfo, deps: WorkerDeps, state_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Still throttled: the canary's next attempt fails, which says why, and nothing else leaves the DLQ."""
    inject_fault(deps.table.meta.client, "PutItem", status=400, code=THROTTLED)

    def run_worker(_: float) -> None:
        worker_pass(sqs, stack)

    monkeypatch.setattr(dlq, "canary_redrive", functools.partial(dlq.canary_redrive, sleep=run_worker))

    shown = cli("dlq", "redrive", "--state-file", str(state_file), "--error-class", THROTTLED, "--canary", "1")

    assert shown.exit_code == 1, shown.output
    flat = " ".join(shown.output.split())
    assert "Canaries: 0 of 1 finished" in flat
    assert f"failed again: {THROTTLED}: claim (PutItem): injected fault" in flat
    assert shown.output.splitlines()[-1] == "error: canary failed again (above); 2 message(s) left on the DLQ"
    assert max(len(line) for line in shown.output.splitlines()) <= 80, shown.output
    assert parked_count(sqs, stack) == 5  # the canary is on the work queue; its class's other two stayed
    [canary_image] = [i for i in incident[THROTTLED] if (store.get(deps.table, i) or {}).get("attempts") == 2]
    assert canary_image in flat


def test_canary_back_on_the_dlq_stops_the_redrive(
    incident: dict[str, list[str]], sqs: Any, stack: StackInfo, deps: WorkerDeps
) -> None:
    """DynamoDB refuses every write, so the item cannot tell: the canary's copy coming back to the DLQ does."""
    inject_fault(deps.table.meta.client, "PutItem", status=400, code=THROTTLED)
    inject_fault(deps.table.meta.client, "UpdateItem", status=400, code=THROTTLED)

    def run_worker(_: float) -> None:
        worker_pass(sqs, stack)
        time.sleep(1.1)  # the visibility timeout

    result = dlq.canary_redrive(
        sqs,
        deps.table,
        dlq_url=stack.dlq_url,
        queue_url=stack.queue_url,
        count=1,
        timeout=30,
        error_class=THROTTLED,
        dlq_check_seconds=0,
        sleep=run_worker,
    )

    [canary] = result.canaries
    assert canary.outcome == dlq.CANARY_BACK
    assert canary.detail.startswith(f"{THROTTLED}: claim (PutItem)")  # what the item said before
    assert result.error.startswith(f"canary {canary.message.message_id} (image {canary.message.image_id}) back")
    assert result.left == 2
    assert Counter(m.message_id for m in dlq.inspect(sqs, stack.dlq_url, None))[canary.copy_id] == 1


def test_canary_that_does_not_finish_in_time_stops_the_redrive(
    incident: dict[str, list[str]], sqs: Any, stack: StackInfo, state_file: Path
) -> None:
    """Nobody runs the worker: the canary times out, and the rest stay on the DLQ."""
    shown = cli("dlq", "redrive", "--state-file", str(state_file), "--canary", "1", "--canary-timeout", "1", "--json")

    assert shown.exit_code == 1, shown.output
    outcome = json.loads(shown.output.splitlines()[0])
    assert [c["outcome"] for c in outcome["canaries"]] == ["timed out"]
    assert outcome["left_on_dlq"] == 5
    assert "timed out" in shown.output.splitlines()[-1]
    assert parked_count(sqs, stack) == 5
