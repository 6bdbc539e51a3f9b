"""`imgops local up` as a user starts it: a real upload through the presigned URL, to DONE and notified."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from PIL import Image

from monitoring.target import StackInfo
from tests.conftest import jpeg_bytes
from tests.e2e.conftest import kill, local_up_output, start_local_up, wait_for_state_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StackInfo, subprocess.Popen[str], Path]]:
    state_dir = tmp_path_factory.mktemp("state")
    process, info, _ = start_local_up(state_dir, "--workers", "2")
    state_file = state_dir / "local-stack.json"
    yield info, process, state_file
    if process.poll() is None:
        process.kill()
        process.wait()


def clients(info: StackInfo) -> dict[str, Any]:
    session = boto3.session.Session(region_name=info.region)
    url = info.endpoint_url
    return {
        "sqs": session.client("sqs", endpoint_url=url),
        "sns": session.client("sns", endpoint_url=url),
        "s3": session.client("s3", endpoint_url=url),
        "cognito": session.client("cognito-idp", endpoint_url=url),
        "table": session.resource("dynamodb", endpoint_url=url).Table(info.images_table),
    }


def test_upload_to_done_through_the_local_stack(
    running_stack: tuple[StackInfo, subprocess.Popen[str], Path],
) -> None:
    info, _, _ = running_stack
    aws = clients(info)
    observer = aws["sqs"].create_queue(QueueName="e2e-observer")["QueueUrl"]
    observer_arn = aws["sqs"].get_queue_attributes(QueueUrl=observer, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws["sns"].subscribe(
        TopicArn=info.topic_arn,
        Protocol="sqs",
        Endpoint=observer_arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"userId": [info.demo_sub]})},
    )
    token = aws["cognito"].initiate_auth(
        ClientId=info.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": info.demo_username, "PASSWORD": info.demo_password},
    )["AuthenticationResult"]["AccessToken"]
    headers = {"Authorization": f"Bearer {token}"}

    grant = requests.post(f"{info.api_url}/uploads", json={"content_type": "image/jpeg"}, headers=headers, timeout=10)
    assert grant.status_code == 201, grant.text
    upload = grant.json()
    photo = jpeg_bytes(4032, 3024, orientation=6)  # a 12 MP phone photo shot in portrait
    put = requests.put(upload["upload_url"], data=photo, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert put.status_code == 200
    uploaded = time.monotonic()

    notification = None
    while notification is None and time.monotonic() - uploaded < 60:
        batch = aws["sqs"].receive_message(QueueUrl=observer, WaitTimeSeconds=1, MaxNumberOfMessages=1)
        for message in batch.get("Messages", []):
            notification = json.loads(message["Body"])
    assert notification is not None, "no notification within 60 s"
    print(f"\n12 MP JPEG upload -> DONE notification: {(time.monotonic() - uploaded) * 1000:.0f} ms")
    assert (notification["imageId"], notification["status"]) == (upload["image_id"], "DONE")

    item = aws["table"].get_item(Key={"imageId": upload["image_id"]})["Item"]
    assert item["status"] == "DONE"
    assert (int(item["width"]), int(item["height"])) == (3024, 4032)  # EXIF orientation applied
    for size, key in item["processedS3Keys"].items():
        body = aws["s3"].get_object(Bucket=info.processed_bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(body)) as thumbnail:
            assert thumbnail.size == (int(size) * 3 // 4, int(size))

    status = requests.get(f"{info.api_url}/images/{upload['image_id']}", headers=headers, timeout=10)
    assert status.status_code == 200
    assert set(status.json()["thumbnails"]) == {"1024", "512", "256"}


def test_ctrl_c_stops_cleanly(running_stack: tuple[StackInfo, subprocess.Popen[str], Path]) -> None:
    _, process, state_file = running_stack
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    output = local_up_output(state_file.parent)
    assert process.returncode == 0, output
    assert "REPORT RequestId:" in output
    assert "Local stack stopped." in output
    assert "Traceback" not in output
    assert not state_file.exists()  # other commands no longer find a stack that is gone


def test_sigterm_to_the_process_group_stops_everything_cleanly(tmp_path: Path) -> None:
    """`timeout 60 imgops local up`, systemd, a CI runner: SIGTERM reaches every process of the group at once;
    the children must leave stopping to the parent (a child dying on it used to hang the parent's stop)."""
    env = {**os.environ, "IMGOPS_STATE_DIR": str(tmp_path), "COLUMNS": "120"}
    env.pop("AWS_ENDPOINT_URL", None)
    log = tmp_path / "output.txt"
    with log.open("w", encoding="utf-8") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "imgops", "local", "up", "--workers", "1"],
            env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    wait_for_state_file(process, tmp_path, output=log.read_text)

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill(process)
        raise AssertionError("local up did not stop within 30 s of SIGTERM") from None

    output = log.read_text()
    assert process.returncode == 0, output
    assert "Local stack stopped." in output
    assert "Traceback" not in output
    assert not (tmp_path / "local-stack.json").exists()


def test_ctrl_c_stops_a_stack_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A script's `imgops local up &`, a CI step run in the background: the shell starts it with SIGINT ignored, and
    Python leaves an inherited SIG_IGN alone. `local up` handles SIGINT itself, so Ctrl-C still stops it (it used
    to be ignored, and the suite's two Ctrl-C tests waited out their timeouts when the suite ran so)."""
    process, _, _ = start_local_up(tmp_path, "--workers", "1", ignore_sigint=True)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill(process)
        raise AssertionError(f"not stopped within 10 s of SIGINT:\n{local_up_output(tmp_path)}") from None
    output = local_up_output(tmp_path)
    assert process.returncode == 0, output
    assert "Local stack stopped." in output
    assert not (tmp_path / "local-stack.json").exists()
