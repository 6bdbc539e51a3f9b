"""The optional labels stage (IMGOPS_LABELS=rekognition, pipeline.labels) against moto's DetectLabels over HTTP.

The calls are checked against the worker's role in a template synthesized with `-c imgops:labels=rekognition`
(this module's `iam_enforced`); with labels off, the suite's own check (the default template, no Rekognition grant)
would refuse any Rekognition call, and the last test asserts there is none.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from localaws.context import LocalLambdaContext
from localaws.faults import FaultInjector, FaultRule, write_rules
from localaws.runtime import sqs_event
from monitoring.target import StackInfo
from pipeline import labels, read_api, store, worker
from pipeline.worker import WorkerDeps
from tests.conftest import jpeg_bytes
from tests.functional.conftest import IAM_RECORDER, NO_RETRIES, receive_uploads
from tests.iam import CallRecorder, RolePolicies

SUB = "5f0c6a9e-1111-4c3b-9d1e-000000000001"
IMAGE_ID = "0b6f7f8e-2222-4c3b-9d1e-0000000000c1"
MOTO_LABEL = {"name": "Mobile Phone", "confidence": 99.9}  # moto's DetectLabels answers this for any image


@functools.cache
def labels_role_policies() -> RolePolicies:
    from dashboards import config
    from dashboards.template import stack_template

    return RolePolicies(stack_template(context={config.LABELS: "rekognition"}))


@pytest.fixture(autouse=True)
def iam_enforced(pytestconfig: pytest.Config) -> Iterator[None]:
    """The suite's check, against the worker's role with the labels stage on."""
    recorder: CallRecorder = pytestconfig.stash[IAM_RECORDER]
    mark = recorder.mark()
    yield
    denied = [d for d in labels_role_policies().decide(recorder.since(mark)) if not d.allowed]
    if denied:
        lines = "\n".join(f"  {decision.describe()}" for decision in denied)
        pytest.fail(f"the labels-enabled template's IAM would refuse these handler calls:\n{lines}", pytrace=False)


@pytest.fixture
def labelled(deps: WorkerDeps, monkeypatch: pytest.MonkeyPatch) -> WorkerDeps:
    """The worker with IMGOPS_LABELS=rekognition, its clients without SDK retries, behind `worker.handler`."""
    with_labels = replace(
        deps,
        settings=replace(deps.settings, labels="rekognition"),
        rekognition=boto3.client("rekognition", config=NO_RETRIES),
    )
    monkeypatch.setattr(worker, "_deps", lambda: with_labels)
    return with_labels


def upload(s3: Any, stack: StackInfo, data: bytes, *, ext: str = "jpg", image_id: str = IMAGE_ID) -> None:
    key = f"user-uploads/{SUB}/{image_id}.{ext}"
    s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=data, ContentType=f"image/{ext}")


def run(stack: StackInfo, sqs: Any, count: int = 1) -> dict[str, Any]:
    event = sqs_event(receive_uploads(sqs, stack, count), queue_arn=stack.queue_arn, region=stack.region)
    return dict(worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=60)))


def sent_images(client: Any) -> list[dict[str, Any]]:
    """What each DetectLabels call sends as `Image` (recorded from the client's own parameters)."""
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.rekognition.DetectLabels", lambda params, **_: sent.append(params["Image"])
    )
    return sent


def test_labels_on_the_item_the_notice_and_the_api(
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    labelled: WorkerDeps,
    notifications: Callable[[], list[dict[str, Any]]],
) -> None:
    sent = sent_images(labelled.rekognition)
    upload(s3, stack, jpeg_bytes(1600, 1200))

    assert run(stack, sqs) == {"batchItemFailures": []}

    item = store.get(labelled.table, IMAGE_ID) or {}
    assert item["status"] == "DONE"
    assert item["labels"] == [MOTO_LABEL]
    assert "labels_error" not in item
    [image] = sent
    assert image["Bytes"][:2] == b"\xff\xd8"  # the original's bytes: a 1 MB JPEG
    [envelope] = notifications()
    message = json.loads(envelope["Message"])
    assert (message["labels"], message["labels_error"]) == ([MOTO_LABEL], None)
    answer = read_api.describe_image(
        image_id=IMAGE_ID, user_sub=SUB, settings=labelled.settings, table=labelled.table, s3=s3
    )
    assert answer["labels"] == [MOTO_LABEL]


def test_near_the_invocation_timeout_labels_are_skipped_not_waited_for(
    stack: StackInfo, s3: Any, sqs: Any, labelled: WorkerDeps
) -> None:
    """A DetectLabels call may take up to labels.CALL_SECONDS; with less of the invocation left, the image is
    finished without labels rather than risk the whole batch timing out."""
    sent = sent_images(labelled.rekognition)
    upload(s3, stack, jpeg_bytes(800, 600))
    event = sqs_event(receive_uploads(sqs, stack, 1), queue_arn=stack.queue_arn, region=stack.region)

    assert worker.handler(event, LocalLambdaContext.create("worker", timeout_seconds=10)) == {"batchItemFailures": []}

    item = store.get(labelled.table, IMAGE_ID) or {}
    assert (item["status"], item["labels_error"]) == ("DONE", labels.NO_TIME)
    assert "labels" not in item
    assert sent == []


def test_a_rekognition_fault_leaves_the_thumbnails_done_and_says_why(
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    labelled: WorkerDeps,
    tmp_path: Path,
    notifications: Callable[[], list[dict[str, Any]]],
) -> None:
    """Injected as `imgops faults set rekognition:DetectLabels=1:ThrottlingException` does (localaws.faults)."""
    rules = tmp_path / "faults.json"
    write_rules(rules, [FaultRule("rekognition", "DetectLabels", 1.0, "ThrottlingException")])
    injector = FaultInjector(rules).install(labelled.rekognition.meta.events)  # type: ignore[union-attr]
    upload(s3, stack, jpeg_bytes(800, 600))

    assert run(stack, sqs) == {"batchItemFailures": []}  # not retried: labels never fail the thumbnails

    assert injector.injected >= 1  # (botocore retries a throttled call once even so)
    item = store.get(labelled.table, IMAGE_ID) or {}
    assert item["status"] == "DONE"
    assert sorted(item["processedS3Keys"]) == ["1024", "256", "512"]
    assert "labels" not in item
    assert item["labels_error"] == "Rekognition DetectLabels failed: ThrottlingException"
    assert "last_error" not in item  # not a failed attempt
    [envelope] = notifications()
    message = json.loads(envelope["Message"])
    assert (message["status"], message["labels"], message["labels_error"]) == ("DONE", None, item["labels_error"])


def test_min_confidence_filters_and_large_or_unreadable_originals_are_sent_another_way(
    stack: StackInfo, s3: Any, sqs: Any, labelled: WorkerDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = replace(labelled, settings=replace(labelled.settings, labels_min_confidence=99.95))
    monkeypatch.setattr(worker, "_deps", lambda: strict)
    sent = sent_images(labelled.rekognition)
    noise = Image.frombytes("RGB", (1400, 1400), os.urandom(1400 * 1400 * 3))
    png = io.BytesIO()
    noise.save(png, "PNG", compress_level=0)
    assert png.tell() > labels.BYTES_LIMIT
    webp = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes(900, 600))).save(webp, "WEBP")
    big, phone = "0b6f7f8e-2222-4c3b-9d1e-0000000000c2", "0b6f7f8e-2222-4c3b-9d1e-0000000000c3"
    upload(s3, stack, png.getvalue(), ext="png", image_id=big)
    upload(s3, stack, webp.getvalue(), ext="webp", image_id=phone)

    assert run(stack, sqs, 2) == {"batchItemFailures": []}

    for image_id in (big, phone):
        item = store.get(labelled.table, image_id) or {}
        assert (item["status"], item["labels"]) == ("DONE", [])  # moto's 99.94 % is under 99.95 %
    by_kind = {("S3Object" if "S3Object" in image else "Bytes"): image for image in sent}
    assert by_kind["S3Object"]["S3Object"]["Name"] == f"user-uploads/{SUB}/{big}.png"  # over 5 MB: by reference
    assert by_kind["Bytes"]["Bytes"][:2] == b"\xff\xd8"  # the WebP's largest thumbnail, a JPEG


@pytest.mark.usefixtures("handler_env")
def test_off_by_default_no_rekognition_call(stack: StackInfo, s3: Any, sqs: Any, pytestconfig: pytest.Config) -> None:
    recorder: CallRecorder = pytestconfig.stash[IAM_RECORDER]
    mark = recorder.mark()
    upload(s3, stack, jpeg_bytes(640, 480))

    assert run(stack, sqs) == {"batchItemFailures": []}

    assert worker._deps().settings.labels == "none"
    assert worker._deps().rekognition is None
    calls = recorder.since(mark)
    assert any(call.action == "s3:GetObject" for call in calls)
    assert not [call for call in calls if call.action.startswith("rekognition:")]
    item = store.get(boto3.resource("dynamodb").Table(stack.images_table), IMAGE_ID) or {}
    assert item["status"] == "DONE"
    assert "labels" not in item
    assert "labels_error" not in item
