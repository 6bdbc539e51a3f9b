"""The paths the overlapped batch changed, each through `worker.handler` as deployed by default (IMGOPS_WORKER_OVERLAP
unset) with a multi-record batch (issue #21's review): the batch machinery failing, the labels deadline guard, a
failed decode freeing the bytes it held, and the take-over of a crashed delivery's lease."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest

from localaws.context import LocalLambdaContext
from localaws.runtime import sqs_event
from monitoring.target import StackInfo
from pipeline import imaging, labels, store, worker
from pipeline.overlap import BUDGET_SHARE, HeldBytes
from pipeline.settings import Settings
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.functional.conftest import NO_RETRIES, provisioned_stack, receive_uploads

SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"
PHOTO = jpeg_bytes(1600, 1200)  # ~80 KB


@pytest.fixture
def stack(moto_endpoint: str, unique_prefix: str) -> StackInfo:
    """A 1 s visibility timeout: a failed delivery comes back at once."""
    return provisioned_stack(moto_endpoint, unique_prefix, visibility_timeout=1)


@pytest.fixture
def default_worker(deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch) -> WorkerDeps:
    """`worker.handler` with the test's clients and the default settings."""
    assert deps.settings.worker_overlap == Settings.__dataclass_fields__["worker_overlap"].default is True
    monkeypatch.setattr(worker, "_deps", lambda: deps)
    return deps


def image(n: int) -> str:
    return f"0b6f7f8e-2222-4c3b-9d1e-{n:012d}"


def uploads(s3: Any, sqs: Any, stack: StackInfo, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """`count` uploads of PHOTO; their image ids, and their messages in that order (one batch)."""
    images = [image(n) for n in range(1, count + 1)]
    for image_id in images:
        key = f"user-uploads/{SUB}/{image_id}.jpg"
        s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=PHOTO, ContentType="image/jpeg")
    received = {worker.parse_s3_event(m["Body"])[0].image_id: m for m in receive_uploads(sqs, stack, count)}
    return images, [received[image_id] for image_id in images]


def invoke(
    stack: StackInfo, messages: list[dict[str, Any]], *, timeout_seconds: int = 60, memory_mb: int = 1024
) -> set[str]:
    """One invocation as Lambda runs it, in a daemon thread so that a hang fails the test instead of the suite;
    the message ids reported as failed (all of them when the handler raised: every record failed)."""
    context = LocalLambdaContext.create("worker", timeout_seconds=timeout_seconds, memory_mb=memory_mb)
    event = sqs_event(messages, queue_arn=stack.queue_arn, region=stack.region)
    outcome: list[set[str]] = []

    def run() -> None:
        try:
            response = worker.handler(event, context)
        except Exception:  # noqa: BLE001 - BatchProcessingError: every record failed
            outcome.append({m["MessageId"] for m in messages})
        else:
            outcome.append({str(f["itemIdentifier"]) for f in response["batchItemFailures"]})

    running = threading.Thread(target=run, daemon=True)
    running.start()
    running.join(timeout_seconds)
    assert outcome, f"the invocation hangs: still running after its {timeout_seconds} s timeout"
    return outcome[0]


def items(deps: WorkerDeps, images: list[str]) -> dict[str, dict[str, Any]]:
    return {image_id: store.get(deps.table, image_id) or {} for image_id in images}


def test_a_failing_batch_machinery_records_its_error_on_every_upload_it_left(
    stack: StackInfo, s3: Any, sqs: Any, default_worker: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory counter fails after the second decode. Every message is retried; the first upload is DONE; the
    second (decoded), the third (claimed, waiting to read: the originals are over the budget of a 1 MB function)
    and the fourth (not reached) say why on their items, and no claim is left live. Nothing hangs on the read
    that waited for memory the failed thread would have released."""
    broken = [True]
    calls: list[int] = []
    real = HeldBytes.finish_decoding

    def finish_decoding(held: HeldBytes, *, handed_to_writer: int) -> None:
        calls.append(handed_to_writer)
        if broken[0] and len(calls) == 2:
            raise RuntimeError("the memory counter broke")
        real(held, handed_to_writer=handed_to_writer)

    monkeypatch.setattr(HeldBytes, "finish_decoding", finish_decoding)
    images, messages = uploads(s3, sqs, stack, 4)

    assert invoke(stack, messages, memory_mb=1) == {m["MessageId"] for m in messages}

    first, second, third, fourth = (items(default_worker, images)[i] for i in images)
    assert (first["status"], first["attempts"], "last_error" in first) == ("DONE", 1, False)
    assert second["last_error"] == "RuntimeError: decode: the memory counter broke"
    assert third["last_error"] == "RuntimeError: read: the memory counter broke"
    assert fourth["last_error"] == "RuntimeError: batch: the memory counter broke"
    for item in (second, third, fourth):
        assert (item["status"], item["attempts"], item.get("lease_expires", 0)) == ("PROCESSING", 1, 0)
        assert item["last_attempt_at"]

    broken[0] = False
    assert invoke(stack, messages, memory_mb=1) == set()
    done = items(default_worker, images)
    assert [(done[i]["status"], done[i]["attempts"]) for i in images] == [("DONE", 1)] + [("DONE", 2)] * 3


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "one-at-a-time"])
def test_labels_are_skipped_near_the_timeout_however_the_batch_runs(
    overlap: bool, stack: StackInfo, s3: Any, sqs: Any, default_worker: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DetectLabels call may take up to labels.CALL_SECONDS; a 10 s invocation never waits for one. (One record
    at a time used to know no deadline and asked anyway; the suite's IAM check, with the default template's
    worker role, refuses a DetectLabels call.)"""
    labelled = replace(
        default_worker,
        settings=replace(default_worker.settings, labels="rekognition", worker_overlap=overlap),
        rekognition=boto3.client("rekognition", config=NO_RETRIES),
    )
    monkeypatch.setattr(worker, "_deps", lambda: labelled)
    sent: list[Any] = []
    assert labelled.rekognition is not None
    labelled.rekognition.meta.events.register("before-send.rekognition.DetectLabels", lambda **kw: sent.append(kw))
    images, messages = uploads(s3, sqs, stack, 3)

    assert invoke(stack, messages, timeout_seconds=10) == set()

    for image_id, item in items(labelled, images).items():
        assert (item["status"], item["labels_error"]) == ("DONE", labels.NO_TIME), image_id
    assert sent == []


def test_failed_decodes_free_their_bytes_so_the_batch_ends(
    stack: StackInfo, s3: Any, sqs: Any, default_worker: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder crashes on the first two photos. With a function whose read-ahead budget holds two originals
    but not three, two failed decodes whose bytes stayed counted would leave the next read waiting for ever."""
    memory_mb = math.ceil(2 * len(PHOTO) * BUDGET_SHARE / 2**20)
    assert 2 * len(PHOTO) <= memory_mb * 2**20 // BUDGET_SHARE < 3 * len(PHOTO)
    real = imaging.make_thumbnails
    calls: list[int] = []

    def crashing_twice(data: bytes, options: Any) -> Any:
        calls.append(len(data))
        if len(calls) <= 2:
            raise RuntimeError("codec crashed")
        return real(data, options)

    monkeypatch.setattr(worker, "make_thumbnails", crashing_twice)
    images, messages = uploads(s3, sqs, stack, 5)

    assert invoke(stack, messages, memory_mb=memory_mb) == {m["MessageId"] for m in messages[:2]}

    done = items(default_worker, images)
    for image_id in images[:2]:
        assert (done[image_id]["status"], done[image_id]["last_error"]) == (
            "PROCESSING",
            "RuntimeError: decode: codec crashed",
        )
    assert [done[i]["status"] for i in images[2:]] == ["DONE"] * 3


def test_a_crashed_deliverys_lease_is_taken_over_and_a_live_one_is_not(
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    default_worker: WorkerDeps,
    notifications: Callable[[], list[dict[str, Any]]],
) -> None:
    """Three uploads in one batch: the first was claimed by a delivery that died (its lease ran out), the second
    is being processed by another delivery right now (live lease), the third is new. Overlapped, the second's
    claim is made ahead, while the first decodes: it must still find the live lease and leave the item alone."""
    images, messages = uploads(s3, sqs, stack, 3)
    crashed, running, new = (worker.parse_s3_event(m["Body"])[0] for m in messages)
    table = default_worker.table
    assert store.claim(table, crashed, now="t0", token="crashed", lease_seconds=-1) is store.ClaimOutcome.PROCESS
    assert store.claim(table, running, now="t0", token="running", lease_seconds=60) is store.ClaimOutcome.PROCESS

    assert invoke(stack, messages) == {messages[1]["MessageId"]}  # retried later: not lost, not an attempt

    after = items(default_worker, images)
    assert (after[crashed.image_id]["status"], after[crashed.image_id]["attempts"]) == ("DONE", 2)
    assert after[crashed.image_id]["claimToken"] != "crashed"
    held = after[running.image_id]
    assert (held["status"], held["claimToken"], held["attempts"], "last_error" in held) == (
        "PROCESSING",
        "running",
        1,
        False,
    )
    assert (after[new.image_id]["status"], after[new.image_id]["attempts"]) == ("DONE", 1)
    assert sorted(n["Message"].split('"imageId": "')[1][:36] for n in notifications()) == sorted(
        [crashed.image_id, new.image_id]
    )
