"""Uploads through `imgops local up`, then the dashboards drawn from what the local stack published by itself.

No metric is put by the test: the worker runtime, the local API, the SQS sampler, the scheduled bucket-metrics
Lambda and the embedded AWS (AWS/DynamoDB, AWS/SNS) must have published everything the assertions find, and
metric math is evaluated by the renderer. At least 90 % of each dashboard's graphs that can have data here (all but
`EXPECTED_EMPTY`) must have it; a graph that stays empty must be one of `EXPECTED_EMPTY`, for the reason given there.

A handful of images is enough: which graphs have data depends on every path being taken (presign, upload, the
S3 event, the worker, DynamoDB, SNS, the read API, the queue sampler, the bucket scan), not on volume; 4 keep
the test under a minute on two cores. docs/local-stack.md's figure is for `imgops loadtest run --images 200`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from monitoring.target import StackInfo, fetch_access_token
from pipeline.resources import ResourceNames
from tests.conftest import jpeg_bytes
from tests.e2e.conftest import start_local_up, stop

pytestmark = pytest.mark.slow

IMAGES = 4
MIN_SHARE_WITH_DATA = 0.9
# Graphs that cannot have data locally, by title, and why.
EXPECTED_EMPTY = {
    "Iterator": "IteratorAge exists only for stream event sources (Kinesis, DynamoDB Streams); these functions "
    "are invoked by SQS, the API and a schedule",
    "Time to drain": "visible / (deleted - sent) has no value in a minute where as many messages were deleted "
    "as sent (a division by zero), which a burst that drains within the minute makes likely",
}
_GRAPHS_LINE = re.compile(r"(?P<name>\S+): \d+ widgets, (?P<with_data>\d+) of (?P<graphs>\d+) graphs with data")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgops", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackInfo, dict[str, str]]]:
    process, info, env = start_local_up(
        tmp_path_factory.mktemp("state"), "--workers", "2", "--metrics-every", "3600", "--sample-every", "2"
    )
    yield info, env
    stop(process)


def upload_and_wait(info: StackInfo, count: int) -> None:
    headers = {"Authorization": f"Bearer {fetch_access_token(info)}"}
    image_ids = []
    for _ in range(count):
        grant = requests.post(
            f"{info.api_url}/uploads", json={"content_type": "image/jpeg"}, headers=headers, timeout=10
        )
        assert grant.status_code == 201, grant.text
        upload = grant.json()
        put = requests.put(
            upload["upload_url"], data=jpeg_bytes(1600, 1200), headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        assert put.status_code == 200
        image_ids.append(upload["image_id"])
    deadline = time.monotonic() + 90
    pending = set(image_ids)
    while pending and time.monotonic() < deadline:
        for image_id in list(pending):
            status = requests.get(f"{info.api_url}/images/{image_id}", headers=headers, timeout=10)
            if status.status_code == 200 and status.json().get("status") == "DONE":
                pending.discard(image_id)
        time.sleep(0.5)
    assert not pending, f"not DONE within 90 s: {pending}"


def series(widgets: list[dict[str, Any]], title: str, metric: str, dimension: str) -> list[float]:
    """Values of `metric` with a dimension value `dimension` in widgets titled `title` ("" and "": expressions)."""
    values: list[float] = []
    for widget in widgets:
        for item in widget["series"]:
            if widget["title"] != title:
                continue
            if ((metric, dimension) == ("", "") and item.get("expression")) or (
                item["metric"] == metric and dimension in item["dimensions"].values()
            ):
                values += item["values"]
    return values


def test_dashboards_show_what_a_burst_of_uploads_published(
    local_stack: tuple[StackInfo, dict[str, str]], tmp_path: Path
) -> None:
    info, env = local_stack
    names = ResourceNames(info.prefix)
    upload_and_wait(info, IMAGES)

    published = cli(
        "monitoring", "publish", "--state-file", str(Path(env["IMGOPS_STATE_DIR"]) / "local-stack.json"), env=env
    )
    assert published.returncode == 0, published.stdout + published.stderr
    assert f"{names.upload_bucket}" in published.stdout
    time.sleep(8)  # one more SQS sample (2 s) and the 5-s PutMetricData flushes of workers and API

    rendered = cli("dashboards", "render", "--out", str(tmp_path), "--period", "60", "--hours", "1", env=env)

    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    operations = json.loads((tmp_path / f"{names.prefix}-operations.json").read_text())["widgets"]
    capacity = json.loads((tmp_path / f"{names.prefix}-capacity.json").read_text())["widgets"]
    assert sum(series(operations, "Invocations", "Invocations", names.worker_function)) >= 1
    assert series(operations, "Errors (rate)", "Errors", names.worker_function)
    assert max(series(operations, "Latency", "Duration", names.worker_function)) > 0
    assert sum(series(operations, "Message Count", "NumberOfMessagesSent", names.work_queue)) >= IMAGES
    assert series(operations, "Message Count", "ApproximateNumberOfMessagesVisible", names.work_queue)
    assert series(operations, "DLQ: Message Count", "ApproximateNumberOfMessagesVisible", names.dead_letter_queue)
    assert sum(series(operations, "Errors", "5xx", "local")) == 0  # 4xx happen: polling an image not yet stored
    assert sum(series(operations, "Invocations", "Invocations", names.presign_function)) == IMAGES
    # The scan at start (empty) and the on-demand one (IMAGES originals): the latest is the one that counts.
    assert series(capacity, "Number of objects", "NumberOfObjects", info.upload_bucket)[-1] >= IMAGES
    assert sum(series(capacity, "Invocations", "Invocations", f"{names.prefix}-s3-metrics")) >= 1
    # DynamoDB and SNS, published by the embedded AWS from the requests it served; metric math evaluated.
    assert sum(series(operations, "Write Usage", "", "")) > 0
    assert sum(series(operations, "Message Count", "NumberOfMessagesPublished", names.notifications_topic)) >= IMAGES
    assert sum(series(operations, "Invocations", "Invocations", names.read_api_function)) >= IMAGES
    page = (tmp_path / "dashboards.html").read_text()
    assert "console.aws.amazon.com" not in page

    stated = {m["name"]: (int(m["with_data"]), int(m["graphs"])) for m in _GRAPHS_LINE.finditer(rendered.stdout)}
    for name, widgets in ((f"{names.prefix}-operations", operations), (f"{names.prefix}-capacity", capacity)):
        graphs = [w for w in widgets if w["type"] == "metric"]
        empty = [w["title"] for w in graphs if not w["has_data"]]
        with_data = len(graphs) - len(empty)
        print(f"{name}: {with_data} of {len(graphs)} graphs with data; empty: {empty}")
        assert stated[name] == (with_data, len(graphs))
        assert [title for title in empty if title not in EXPECTED_EMPTY] == []
        # Of the graphs that can have data here: the capacity dashboard's three Lambdas bring three Iterator graphs.
        possible = [w for w in graphs if w["title"] not in EXPECTED_EMPTY]
        assert len([w for w in possible if w["has_data"]]) >= MIN_SHARE_WITH_DATA * len(possible)
