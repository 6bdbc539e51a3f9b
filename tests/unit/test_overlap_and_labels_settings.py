"""The switches of the overlapped batch and the labels stage, the memory counter's bound, and the bench's latency
specs: pure functions, no AWS."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from localaws.faults import FaultSpecError, parse_latency
from pipeline.overlap import HeldBytes, budget_bytes
from pipeline.resources import Env
from pipeline.settings import Settings, SettingsError

REQUIRED = {
    Env.UPLOAD_BUCKET: "u",
    Env.PROCESSED_BUCKET: "p",
    Env.IMAGES_TABLE: "t",
    Env.TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:x",
}


def test_overlap_on_and_labels_off_by_default() -> None:
    settings = Settings.from_env(REQUIRED)
    assert (settings.worker_overlap, settings.labels, settings.labels_min_confidence) == (True, "none", 80.0)


@pytest.mark.parametrize(("raw", "expected"), [("0", False), ("1", True), ("false", False), ("ON", True)])
def test_overlap_switch(raw: str, expected: bool) -> None:
    assert Settings.from_env({**REQUIRED, Env.WORKER_OVERLAP: raw}).worker_overlap is expected


def test_labels_settings() -> None:
    settings = Settings.from_env({**REQUIRED, Env.LABELS: "Rekognition", Env.LABELS_MIN_CONFIDENCE: "62.5"})
    assert (settings.labels, settings.labels_min_confidence) == ("rekognition", 62.5)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (Env.WORKER_OVERLAP, "maybe", "must be 1 or 0"),
        (Env.LABELS, "clip", "must be one of none, rekognition"),
        (Env.LABELS_MIN_CONFIDENCE, "high", "is not a number"),
        (Env.LABELS_MIN_CONFIDENCE, "101", "between 0 and 100"),
    ],
)
def test_bad_values_are_deployment_mistakes(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**REQUIRED, name: raw})


def test_the_budget_is_five_percent_of_the_memory() -> None:
    assert budget_bytes(1769) == 1769 * 2**20 // 20
    assert budget_bytes(128) == 128 * 2**20 // 20


def test_a_prefetch_over_the_budget_waits_for_the_decoder_and_the_writer() -> None:
    held = HeldBytes(budget=100)
    held.reserve_original(80)  # nothing else held: never waits
    held.start_decoding(80)
    read = threading.Event()

    def prefetch() -> None:
        held.reserve_original(150)  # over the budget: only once nothing else is held
        read.set()

    thread = threading.Thread(target=prefetch)
    thread.start()
    time.sleep(0.05)
    assert not read.is_set()
    held.finish_decoding(handed_to_writer=30)
    time.sleep(0.05)
    assert not read.is_set()  # the thumbnails are still being written
    held.written(30)
    assert read.wait(2)
    thread.join()
    assert (held.originals, held.peak_originals) == (1, 1)


def test_a_prefetch_within_the_budget_overlaps() -> None:
    held = HeldBytes(budget=100)
    held.reserve_original(500)
    held.start_decoding(500)
    held.reserve_original(60)  # fits beside nothing else extra: no wait
    assert (held.originals, held.peak_originals, held.peak_extra_bytes) == (2, 2, 60)
    held.finish_decoding(handed_to_writer=30)
    held.drop_original(60)
    held.written(30)
    assert held.originals == 0


def test_latency_specs() -> None:
    assert parse_latency("") == {}
    assert parse_latency("30") == {"*": 30.0}
    assert parse_latency("s3=30, dynamodb=8,SNS=20") == {"s3": 30.0, "dynamodb": 8.0, "sns": 20.0}
    with pytest.raises(FaultSpecError, match="expected MS or SERVICE=MS"):
        parse_latency("s3=slow")
    with pytest.raises(FaultSpecError, match="negative"):
        parse_latency("-5")


class OddRekognition:
    """An answer outside the documented shape (labels without a usable confidence), as a stub or a changed API
    could give: the labels stage must still not raise."""

    def detect_labels(self, **_: object) -> dict[str, object]:
        return {"Labels": [{"Name": "Cat"}, {"Name": "Dog", "Confidence": None}, {"Name": "Sky", "Confidence": 91.25}]}


def test_labels_without_a_confidence_are_skipped_not_raised() -> None:
    from typing import cast

    from pipeline import labels
    from pipeline.imaging import ImageOptions, make_thumbnails
    from pipeline.store import Upload
    from tests.conftest import jpeg_bytes

    data = jpeg_bytes(320, 240)
    upload = Upload(bucket="b", key="user-uploads/u/i.jpg", image_id="i", user_id="u", version="v", event_time="")
    found = labels.detect(
        cast("Any", OddRekognition()), upload=upload, image=make_thumbnails(data, ImageOptions()), original=data,
        original_size=len(data), min_confidence=0.0,
    )  # fmt: skip

    assert found == {"labels": [{"name": "Sky", "confidence": 91.2}]}
