from __future__ import annotations

import json
import re

import pytest

from localaws.runtime import report_line, sqs_event
from pipeline.keys import image_id_for, owner_of
from pipeline.resources import QUEUE_VISIBILITY_TIMEOUT_SECONDS, WORKER_TIMEOUT_SECONDS, Env
from pipeline.settings import Settings, SettingsError
from pipeline.worker import MalformedMessage, parse_s3_event

BASE = {
    Env.UPLOAD_BUCKET: "up",
    Env.PROCESSED_BUCKET: "out",
    Env.IMAGES_TABLE: "images",
    Env.TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:t",
}


def test_settings_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.thumbnail_sizes == (1024, 512, 256)
    assert settings.max_pixels == 50_000_000
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert settings.url_expiry_seconds == 300
    assert settings.watermark is None
    assert (settings.output_format, settings.jpeg_quality, settings.webp_quality, settings.avif_quality) == (
        "auto",
        85,
        80,
        70,
    )


def test_output_format_and_qualities_reach_the_image_options() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            Env.OUTPUT_FORMAT: " AVIF ",
            Env.JPEG_QUALITY: "90",
            Env.WEBP_QUALITY: "70",
            Env.AVIF_QUALITY: "55",
        }
    )
    options = settings.image_options()
    assert (options.output_format, options.jpeg_quality, options.webp_quality, options.avif_quality) == (
        "avif",
        90,
        70,
        55,
    )


def test_settings_overrides_and_watermark() -> None:
    settings = Settings.from_env(
        {**BASE, Env.THUMBNAIL_SIZES: "128, 2048,640", Env.MAX_PIXELS: "1000", Env.WATERMARK_TEXT: "(c) me"}
    )
    assert settings.thumbnail_sizes == (2048, 640, 128)
    assert settings.image_options().max_pixels == 1000
    assert settings.watermark is not None
    assert settings.watermark.text == "(c) me"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({Env.UPLOAD_BUCKET: ""}, "IMGOPS_UPLOAD_BUCKET is not set"),
        ({Env.MAX_PIXELS: "lots"}, "not a whole number"),
        ({Env.MAX_PIXELS: "-1"}, "must be positive"),
        ({Env.THUMBNAIL_SIZES: "big"}, "comma-separated"),
        ({Env.WATERMARK_TEXT: "x", Env.WATERMARK_OPACITY: "2"}, "between 0 and 1"),
        ({Env.WATERMARK_TEXT: "x", Env.WATERMARK_POSITION: "middle"}, "not a known position"),
        ({Env.WATERMARK_PNG_PATH: "/nonexistent/mark.png"}, "cannot be read"),
        ({Env.OUTPUT_FORMAT: "heic"}, "IMGOPS_OUTPUT_FORMAT='heic' must be one of auto, source, jpeg, webp, avif"),
        ({Env.WEBP_QUALITY: "101"}, "IMGOPS_WEBP_QUALITY=101 must be between 1 and 100"),
        ({Env.AVIF_QUALITY: "0"}, "IMGOPS_AVIF_QUALITY='0' must be positive"),
        ({Env.JPEG_QUALITY: "high"}, "IMGOPS_JPEG_QUALITY='high' is not a whole number"),
    ],
)
def test_settings_errors_name_the_variable(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env({**BASE, **overrides})


def test_visibility_timeout_follows_aws_advice() -> None:
    assert QUEUE_VISIBILITY_TIMEOUT_SECONDS >= 6 * WORKER_TIMEOUT_SECONDS


def s3_body(key: str, **object_fields: str) -> str:
    record = {
        "eventTime": "2026-11-23T10:00:00.000Z",
        "s3": {"bucket": {"name": "up"}, "object": {"key": key, "eTag": "abc", **object_fields}},
    }
    return json.dumps({"Records": [record]})


def test_parse_decodes_keys_and_derives_ids() -> None:
    image_id = "0b6f7f8e-2222-4c3b-9d1e-0000000000aa"
    [upload] = parse_s3_event(s3_body(f"user-uploads%2Fsub-1%2F{image_id}.jpg", sequencer="0055"))
    assert (upload.key, upload.user_id, upload.image_id) == (
        f"user-uploads/sub-1/{image_id}.jpg",
        "sub-1",
        image_id,
    )
    assert upload.version == "abc:0055"

    [odd] = parse_s3_event(s3_body("user-uploads/sub-1/my+photo%C3%A9.jpg"))
    assert odd.key == "user-uploads/sub-1/my photoé.jpg"
    assert odd.image_id == image_id_for("up", "user-uploads/sub-1/my photoé.jpg")  # stable across deliveries


def test_parse_skips_test_events_and_foreign_keys() -> None:
    assert parse_s3_event(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert parse_s3_event(s3_body("elsewhere/sub-1/a.jpg")) == []
    assert owner_of("user-uploads//a.jpg") is None
    assert owner_of("user-uploads/sub-1/") is None
    assert owner_of("user-uploads/sub-1/nested/a.jpg") == "sub-1"
    assert owner_of("user-uploads/../a.jpg") is None  # no Cognito sub looks like that
    assert owner_of("user-uploads/%2e%2e/a.jpg") is None


@pytest.mark.parametrize("body", ["not json", "[1]", '{"Records": "x"}', '{"Records": [{"s3": {}}]}'])
def test_parse_refuses_malformed_messages(body: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_s3_event(body)


def test_report_line_matches_aws_format() -> None:
    line = report_line("req-1", 1234.561, 1024, 87, 210.0)
    assert line == (
        "REPORT RequestId: req-1\tDuration: 1234.56 ms\tBilled Duration: 1235 ms\t"
        "Memory Size: 1024 MB\tMax Memory Used: 87 MB\tInit Duration: 210.00 ms"
    )
    assert "Init Duration" not in report_line("req-2", 1.0, 128, 50, None)


def test_sqs_event_shape() -> None:
    event = sqs_event(
        [
            {
                "MessageId": "m1",
                "ReceiptHandle": "r1",
                "Body": "{}",
                "Attributes": {"ApproximateReceiveCount": "1"},
            }
        ],
        queue_arn="arn:aws:sqs:us-east-1:123456789012:q",
        region="us-east-1",
    )
    [record] = event["Records"]
    assert (record["messageId"], record["eventSource"], record["attributes"]["ApproximateReceiveCount"]) == (
        "m1",
        "aws:sqs",
        "1",
    )
