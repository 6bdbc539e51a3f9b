"""docs/item-schema.md (the one statement of the DynamoDB item and the SNS message) against what the worker really
writes and the read API shows.

One batch of two uploads, as the queue delivers them (a photo that ends DONE, a file that is no image and ends
FAILED), through the real handler on the moto server; then the fields of both items, of both notices and of the API's
answers are compared with that page's table and list, in both directions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from monitoring.target import StackInfo
from pipeline.read_api import describe_image
from pipeline.settings import Settings
from tests.conftest import jpeg_bytes
from tests.functional.conftest import receive_uploads
from tests.functional.test_worker import SUB, invoke, put_upload

SCHEMA = Path(__file__).parents[2] / "docs" / "item-schema.md"
DONE_ID = "0b6f7f8e-2222-4c3b-9d1e-0000000000d0"
FAILED_ID = "0b6f7f8e-2222-4c3b-9d1e-0000000000f0"
# The page's "written" column for fields a plain DONE and a plain FAILED upload do not get.
CONDITIONAL = {"after a failed attempt", "DONE, labels on", "DONE, labels on, when they failed"}


def documented_item() -> dict[str, tuple[str, str]]:
    """field → (written, API) from the page's item table."""
    section = SCHEMA.read_text(encoding="utf-8")
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Za-z0-9_]+)`", cells[0]):
                rows[name] = (cells[2], cells[3])
    return rows


def documented_notice() -> set[str]:
    section = SCHEMA.read_text(encoding="utf-8").split("The SNS notice", 1)[1]
    listed = section.split("is JSON with", 1)[1].split("(", 1)[0]
    return {name.strip() for name in listed.replace("`", "").replace("\n", " ").split(",") if name.strip()}


@pytest.mark.usefixtures("handler_env")
def test_the_schema_page_lists_every_field_the_worker_writes_and_no_other(
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    settings: Settings,
    notifications: Callable[[], list[dict[str, Any]]],
) -> None:
    put_upload(s3, stack, jpeg_bytes(800, 600), image_id=DONE_ID)
    put_upload(s3, stack, b"<html>not a photo</html>", image_id=FAILED_ID)
    assert invoke(stack, receive_uploads(sqs, stack, 2)) == {"batchItemFailures": []}

    table = boto3.resource("dynamodb").Table(stack.images_table)
    items = {image_id: table.get_item(Key={"imageId": image_id})["Item"] for image_id in (DONE_ID, FAILED_ID)}
    shown = {
        image_id: describe_image(image_id=image_id, user_sub=SUB, settings=settings, table=table, s3=s3)
        for image_id in items
    }
    notices = [json.loads(envelope["Message"]) for envelope in notifications()]

    documented = documented_item()
    written = set(items[DONE_ID]) | set(items[FAILED_ID])
    assert items[DONE_ID]["status"] == "DONE"
    assert items[FAILED_ID]["status"] == "FAILED"
    assert written - set(documented) == set(), "fields the worker writes that docs/item-schema.md does not list"
    unwritten = {name for name in documented if name not in written}
    assert {name for name in unwritten if documented[name][0] not in CONDITIONAL} == set(), "listed, never written"
    for image_id, answer in shown.items():
        for name in items[image_id]:
            assert (name in answer) == (documented[name][1] == "yes"), f"docs/item-schema.md's API column for {name}"
    assert "thumbnails" in shown[DONE_ID]
    assert len(notices) == 2
    assert all(set(notice) == documented_notice() for notice in notices)
    for notice in notices:
        assert notice["status"] == items[notice["imageId"]]["status"]
