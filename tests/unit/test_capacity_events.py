"""Reading S3's object events and applying them to key records: what the capacity counters rest on (pure parts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from monitoring.capacity import (
    BUCKET_TOTAL,
    CapacityError,
    EventKind,
    KeyRecord,
    ObjectEvent,
    drift,
    normalize_sequencer,
    owner_prefix,
    parse_message,
    plan,
    truth_from_listing,
)
from monitoring.s3_metrics import Totals

SUB = "0f9e8d7c-6b5a-4321-9876-543210fedcba"
KEY = f"user-uploads/{SUB}/1b4e28ba-2fa1-11d2-883f-0016d3cca427.jpg"
WHEN = "2026-12-05T10:00:00Z"


def eventbridge(detail_type: str, key: str, sequencer: str, *, size: int | None = None, reason: str = "") -> str:
    obj: dict[str, object] = {"key": key, "sequencer": sequencer}
    if size is not None:
        obj["size"] = size
    detail = {"bucket": {"name": "b"}, "object": obj, "reason": reason}
    return json.dumps({"version": "0", "detail-type": detail_type, "source": "aws.s3", "time": WHEN, "detail": detail})


def event(kind: EventKind, sequencer: str, size: int | None = None, key: str = KEY) -> ObjectEvent:
    return ObjectEvent("b", key, kind, normalize_sequencer(sequencer), size, datetime(2026, 12, 5, tzinfo=UTC))


def test_eventbridge_creates_and_deletes_lifecycle_expirations_included() -> None:
    [created] = parse_message(eventbridge("Object Created", KEY, "617f08299329d189", size=5, reason="PutObject"))
    assert (created.kind, created.size, created.owner) == (EventKind.CREATED, 5, f"user-uploads/{SUB}/")
    [deleted] = parse_message(eventbridge("Object Deleted", KEY, "617f0829932a0000", reason="DeleteObject"))
    [expired] = parse_message(eventbridge("Object Deleted", KEY, "617f0829932b", reason="Lifecycle Expiration"))
    assert deleted.kind is expired.kind is EventKind.REMOVED
    assert deleted.size is expired.size is None  # S3 does not say how big a deleted object was
    assert parse_message(eventbridge("Object Restore Completed", KEY, "01")) == []


def test_notification_records_are_url_decoded_and_test_events_ignored() -> None:
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": WHEN,
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "processed/a+b%21.jpg", "size": 3, "sequencer": "0A"},
                },
            },
            {
                "eventName": "LifecycleExpiration:Delete",
                "eventTime": WHEN,
                "s3": {"bucket": {"name": "b"}, "object": {"key": "processed/a+b%21.jpg", "sequencer": "0B"}},
            },
        ]
    }
    created, expired = parse_message(json.dumps(body))
    assert created.key == "processed/a b!.jpg"
    assert (created.owner, expired.kind) == ("processed/", EventKind.REMOVED)
    assert parse_message(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"hello": 1}', "neither an EventBridge event nor an S3 event notification"),
        (eventbridge("Object Created", KEY, "0A"), "without a size"),
        (eventbridge("Object Created", KEY, "xyz", size=1), "not hexadecimal"),
        (eventbridge("Object Deleted", KEY, ""), "not a hex string"),
        ('{"detail-type": "Object Created", "detail": {}}', "not an S3 event (KeyError"),
    ],
)
def test_what_is_not_an_object_event_is_named(body: str, reason: str) -> None:
    with pytest.raises(CapacityError, match=reason.replace("(", r"\(")):
        parse_message(body)


def test_sequencers_compare_after_right_padding() -> None:
    # S3: compare after right-padding the shorter with zeros: "0B" is later than "0A05", "0A" equals "0A00".
    assert normalize_sequencer("0B") > normalize_sequencer("0A05")
    assert normalize_sequencer("0a") == normalize_sequencer("0A00")


def test_owners_are_the_uploaders_folder_or_the_top_level_prefix() -> None:
    assert owner_prefix(KEY) == f"user-uploads/{SUB}/"
    assert owner_prefix("user-uploads/x.jpg") == "user-uploads/"  # no folder: no owner
    assert owner_prefix("processed/abc/256.jpg") == "processed/"
    assert owner_prefix("loose.txt") == "(root)"


def test_an_overwrite_changes_bytes_not_objects_and_a_delete_needs_no_size() -> None:
    result = plan([event(EventKind.CREATED, "01", 10), event(EventKind.CREATED, "02", 25)], {("b", KEY): None})
    assert result.changes[("b", BUCKET_TOTAL)] == Totals(1, 25)
    result = plan([event(EventKind.REMOVED, "03")], {("b", KEY): KeyRecord(normalize_sequencer("02"), True, 25)})
    assert result.changes[("b", f"user-uploads/{SUB}/")] == Totals(-1, -25)


def test_duplicates_and_overtaken_events_change_nothing() -> None:
    newest = KeyRecord(normalize_sequencer("05"), present=False, size=0)  # a tombstone
    late = [event(EventKind.CREATED, "04", 9), event(EventKind.REMOVED, "05"), event(EventKind.CREATED, "03", 1)]
    result = plan(late, {("b", KEY): newest})
    assert (result.stale, result.records, dict(result.changes)) == (3, {}, {})


def test_a_delete_before_its_create_leaves_a_tombstone_the_create_cannot_pass() -> None:
    result = plan([event(EventKind.REMOVED, "07"), event(EventKind.CREATED, "06", 4)], {("b", KEY): None})
    assert result.records[("b", KEY)] == KeyRecord(normalize_sequencer("07"), present=False, size=0)
    assert result.stale == 1
    assert dict(result.changes) == {}


def test_drift_is_counters_minus_truth_and_leaves_out_owners_that_agree() -> None:
    truth = truth_from_listing([(KEY, 10), ("processed/x/1.jpg", 2)])
    assert truth[BUCKET_TOTAL] == Totals(2, 12)
    counters = {BUCKET_TOTAL: Totals(3, 20), f"user-uploads/{SUB}/": Totals(2, 18), "processed/": Totals(1, 2)}
    assert drift(counters, truth) == {BUCKET_TOTAL: Totals(1, 8), f"user-uploads/{SUB}/": Totals(1, 8)}
