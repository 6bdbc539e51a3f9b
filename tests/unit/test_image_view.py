"""`imgops images status`'s view of the image item: what on-call reads first, readable, bookkeeping left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitoring.images import (
    BOOKKEEPING,
    NO_ERROR_RECORDED,
    ago,
    readable_bytes,
    readable_time,
    relative,
    state,
    status_rows,
)

NOW = datetime(2026, 11, 30, 7, 5, 16, tzinfo=UTC)
IMAGE = "0b6f7f8e-2222-4c3b-9d1e-0000000000cc"
USER = "5f0c6a9e-1111-4c3b-9d1e-000000000001"


def done_item(**overrides: Any) -> dict[str, Any]:
    """An item as pipeline.store and pipeline.worker leave it after a successful, notified run."""
    return {
        "imageId": IMAGE,
        "userId": USER,
        "originalS3Key": f"user-uploads/{USER}/{IMAGE}.jpg",
        "status": "DONE",
        "sourceVersion": "etag:0062A1",
        "uploaded_at": "2026-11-30T07:02:15.000Z",
        "claimed_at": "2026-11-30T07:02:15.500+00:00",
        "claimToken": "9c1d2e3f4a5b6c7d8e9f00112233aabb",
        "lease_expires": 1796108595,
        "attempts": 1,
        "last_attempt_at": "2026-11-30T07:02:15.500+00:00",
        "processedS3Keys": {"256": f"processed/{IMAGE}/256.jpg", "1024": f"processed/{IMAGE}/1024.jpg"},
        "width": 4032,
        "height": 3024,
        "format": "JPEG",
        "mode": "RGB",
        "has_transparency": False,
        "content_type": "image/jpeg",
        "size_bytes": 3_250_000,
        "processed_bytes": 210_000,
        "processed_at": "2026-11-30T07:02:15.750+00:00",
        "processing_ms": 812.3,
        "notified_at": "2026-11-30T07:02:16.400+00:00",
        **overrides,
    }


def test_on_call_reads_status_then_who_what_when() -> None:
    rows = status_rows(done_item(), NOW)

    assert rows == [
        ("status", "DONE"),
        ("image", IMAGE),
        ("user", USER),
        ("original", f"user-uploads/{USER}/{IMAGE}.jpg"),
        ("format", "JPEG (image/jpeg), RGB"),
        ("dimensions", "4032 × 3024 px"),
        ("size", "3.1 MB; thumbnails 205.1 KB"),
        ("uploaded", "2026-11-30 07:02:15 UTC (3 min ago)"),
        ("processed", "2026-11-30 07:02:15 UTC (3 min ago)"),
        ("processing", "812.3 ms"),
        ("thumbnails", f"1024 → processed/{IMAGE}/1024.jpg"),  # largest first, whatever the map's order
        ("", f"256 → processed/{IMAGE}/256.jpg"),
    ]


def test_bookkeeping_stays_out_of_the_view() -> None:
    item = done_item()
    shown = " ".join(f"{label} {value}" for label, value in status_rows(item, NOW))

    assert set(BOOKKEEPING) <= set(item)
    for field in BOOKKEEPING:
        assert field not in shown
        assert str(item[field]) not in shown


def test_a_failure_leads_with_its_reason() -> None:
    item = {
        "imageId": IMAGE,
        "userId": USER,
        "originalS3Key": f"user-uploads/{USER}/{IMAGE}.png",
        "status": "FAILED",
        "reason": "image is 12000x9000 px; the limit is 50 MP",
        "uploaded_at": "2026-11-30T07:04:16Z",
        "processed_at": "2026-11-30T07:04:17+00:00",
        "processing_ms": 3,
        "claimToken": "t",
        "lease_expires": 1796108595,
        "sourceVersion": "e:s",
    }

    rows = status_rows(item, NOW)

    assert rows[:2] == [("status", "FAILED"), ("reason", "image is 12000x9000 px; the limit is 50 MP")]
    assert ("processing", "3 ms") in rows
    assert ("uploaded", "2026-11-30 07:04:16 UTC (1 min ago)") in rows
    assert not any(label in {"format", "dimensions", "size", "thumbnails"} for label, _ in rows)


def test_an_item_still_processing_shows_what_there_is() -> None:
    item = {key: value for key, value in done_item().items() if key in {"imageId", "userId", "originalS3Key"}}
    item.update(status="PROCESSING", uploaded_at="2026-11-30T07:05:10.000Z", claimToken="t", lease_expires=1)

    assert [label for label, _ in status_rows(item, NOW)] == ["status", "image", "user", "original", "uploaded"]


THROTTLED = "ProvisionedThroughputExceededException: claim (PutItem): The level of configured provisioned throughput"


def retrying_item(**overrides: Any) -> dict[str, Any]:
    """An item whose claim PutItem was throttled three times (pipeline.store.record_failed_claim wrote it)."""
    return {
        "imageId": IMAGE,
        "userId": USER,
        "originalS3Key": f"user-uploads/{USER}/{IMAGE}.jpg",
        "status": "PROCESSING",
        "sourceVersion": "etag:0062A1",
        "uploaded_at": "2026-11-30T07:02:15.000Z",
        "attempts": 3,
        "last_error": THROTTLED,
        "last_attempt_at": "2026-11-30T07:04:16.000+00:00",
        **overrides,
    }


def test_an_item_in_retries_leads_with_its_attempts_and_last_error() -> None:
    rows = status_rows(retrying_item(), NOW)

    assert rows[:4] == [
        ("status", "RETRYING"),
        ("attempts", "3"),
        ("last error", THROTTLED),
        ("last attempt", "2026-11-30 07:04:16 UTC (1 min ago)"),
    ]
    assert [label for label, _ in rows[4:]] == ["image", "user", "original", "uploaded"]


def test_retrying_means_nobody_works_on_it_now() -> None:
    running = retrying_item(claimToken="t", lease_expires=int(NOW.timestamp()) + 30)  # the 4th attempt, now
    let_go = retrying_item(claimToken="t", lease_expires=0)  # a failed attempt released its claim

    assert status_rows(running, NOW)[:2] == [("status", "PROCESSING"), ("attempts", "3")]
    assert state(let_go, NOW) == "RETRYING"
    assert state({"status": "PROCESSING", "lease_expires": 1}, NOW) == "PROCESSING"  # never tried: no claim yet
    assert state(retrying_item(status="DONE"), NOW) == "DONE"


def test_an_attempt_that_crashed_says_no_error_was_recorded() -> None:
    crashed = retrying_item(attempts=1, claimToken="t", lease_expires=int(NOW.timestamp()) - 5)
    del crashed["last_error"]

    assert status_rows(crashed, NOW)[:3] == [
        ("status", "RETRYING"),
        ("attempts", "1"),
        ("last error", NO_ERROR_RECORDED),
    ]


def test_a_finished_item_keeps_its_attempts_and_last_error() -> None:
    rows = status_rows(done_item(attempts=2, last_error="Throttling: notify (Publish): Rate exceeded"), NOW)

    assert rows[:3] == [
        ("status", "DONE"),
        ("attempts", "2"),
        ("last error", "Throttling: notify (Publish): Rate exceeded"),
    ]


def test_fields_it_does_not_know_come_last_alphabetically() -> None:
    rows = status_rows(done_item(zeta="z", alpha={"b": 1}, retried_at=1796108595), NOW)

    assert rows[-3:] == [("alpha", '{"b": 1}'), ("retried_at", "2026-12-01 07:03:15 UTC (in 23 h)"), ("zeta", "z")]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1796108595, "2026-12-01 07:03:15 UTC (in 23 h)"),  # epoch seconds, as lease_expires
        (1796108595000, "2026-12-01 07:03:15 UTC (in 23 h)"),  # epoch milliseconds
        (1796022195.5, "2026-11-30 07:03:15 UTC (2 min ago)"),
        ("2026-11-30T07:02:15.900+00:00", "2026-11-30 07:02:15 UTC (3 min ago)"),  # the worker's ISO times
        ("2026-11-30T07:02:16Z", "2026-11-30 07:02:16 UTC (3 min ago)"),  # S3's event time
        ("2026-11-30T08:02:16+01:00", "2026-11-30 07:02:16 UTC (3 min ago)"),  # another offset, shown in UTC
        ("2026-11-30T07:02:16", "2026-11-30 07:02:16 UTC (3 min ago)"),  # no offset: taken as UTC
        ("soon", "soon"),  # not a time: as it is
        (True, "True"),
    ],
)
def test_times_read_as_utc_with_how_long_ago(value: Any, shown: str) -> None:
    assert readable_time(value, NOW) == shown


@pytest.mark.parametrize(
    ("offset", "shown"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=59), "59 s ago"),
        (timedelta(minutes=3, seconds=59), "3 min ago"),
        (timedelta(hours=47), "47 h ago"),
        (timedelta(days=3, hours=5), "3 d ago"),
        (-timedelta(seconds=40), "in 40 s"),
    ],
)
def test_relative_times_use_the_largest_whole_unit(offset: timedelta, shown: str) -> None:
    assert relative(NOW - offset, NOW) == shown


def test_ago_takes_what_sqs_and_the_table_store() -> None:
    assert ago("2026-11-30T07:04:16+00:00", NOW) == "1 min ago"
    assert ago("", NOW) == ""


@pytest.mark.parametrize(
    ("size", "shown"),
    [(512, "512 bytes"), (1536, "1.5 KB"), (3 * 2**20, "3.0 MB"), (5 * 2**30, "5.0 GB"), ("n/a", "n/a")],
)
def test_sizes_in_the_units_of_the_upload_limit(size: Any, shown: str) -> None:
    assert readable_bytes(size) == shown
