"""The upload request parser and the image-id check: every input is either a request or a client error."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, RequestEntityTooLargeError, ServiceError
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.imaging import SUPPORTED_CONTENT_TYPES
from pipeline.presign import MAX_REQUEST_CHARS, UploadRequest, parse_upload_request
from pipeline.read_api import is_image_id


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"content_type": "image/jpeg"}', UploadRequest("image/jpeg", "PUT")),
        ('{"content_type": "image/png", "method": "POST"}', UploadRequest("image/png", "POST")),
        ('{"content_type": "IMAGE/JPEG", "method": "post"}', UploadRequest("image/jpeg", "POST")),
        ('{"content_type": " image/webp\\t", "method": " Put\\n"}', UploadRequest("image/webp", "PUT")),
        ('{"content_type": "image/png", "method": null}', UploadRequest("image/png", "PUT")),
        ('{"content_type": "image/png", "file_path": "../x", "bucket": "b"}', UploadRequest("image/png", "PUT")),
        ('{"content_type": "image/gif", "content_type": "image/png"}', UploadRequest("image/png", "PUT")),
    ],
)
def test_accepted_requests(body: str, expected: UploadRequest) -> None:
    assert parse_upload_request(body) == expected
    encoded = base64.b64encode(body.encode()).decode()
    assert parse_upload_request(encoded, base64_encoded=True) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"content_type": ["image/jpeg"]}',
            "content_type must be a string, one of image/avif, image/heic, image/heif, image/jpeg, image/png, "
            "image/webp; got an array",
        ),
        ('{"content_type": {"a": 1}}', "got an object"),
        ("[" * 5000 + "]" * 5000, "request body is nested too deeply"),
        ('{"content_type": 1' + "0" * 5000 + "}", "request body must be JSON"),
        ("{not json", "request body must be JSON"),
        ("", "content_type is required"),
        ("null", "must be a JSON object; got null"),
        ("[]", "must be a JSON object; got an array"),
        ("3.5", "must be a JSON object; got a number"),
        ('"image/png"', "must be a JSON object; got 'image/png'"),
        ('{"content_type": true}', "got a boolean"),
        ('{"content_type": "image/jpeg; charset=x"}', "got 'image/jpeg; charset=x'"),
        ('{"content_type": "image/svg+xml"}', "content_type must be one of"),
        ('{"content_type": "\\uff49mage/png"}', "content_type must be one of"),  # fullwidth i
        ('{"content_type": "image/png", "method": "po\\u017ft"}', "method must be PUT or POST"),  # long s
        ('{"content_type": "image/png", "method": ["PUT"]}', "method must be PUT or POST; got an array"),
        ('{"content_type": "image/png", "method": 1}', "got a number"),
        ('{"content_type": "image/png", "method": "DELETE"}', "got 'DELETE'"),
    ],
)
def test_refused_requests_say_why(body: str, message: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_upload_request(body)
    assert message in str(refused.value.msg)


def test_echoes_are_short_and_on_one_line() -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_upload_request(json.dumps({"content_type": "x\n" * 1000}))
    message = str(refused.value.msg)
    assert "\n" not in message
    assert len(message) < 200  # the allow-list (six types) plus a 40-character echo


@pytest.mark.parametrize(
    ("body", "base64_encoded", "error", "message"),
    [
        ("x" * (MAX_REQUEST_CHARS + 1), False, RequestEntityTooLargeError, "longer than"),
        (base64.b64encode(b" " * (MAX_REQUEST_CHARS + 100)).decode(), True, RequestEntityTooLargeError, "longer than"),
        ("not base64!", True, BadRequestError, "not valid base64"),
        ("ü", True, BadRequestError, "not valid base64"),
        (base64.b64encode(b"\xff\xfe{}").decode(), True, BadRequestError, "UTF-8"),
    ],
)
def test_size_and_encoding(body: str, base64_encoded: bool, error: type[ServiceError], message: str) -> None:
    with pytest.raises(error) as refused:
        parse_upload_request(body, base64_encoded=base64_encoded)
    assert message in str(refused.value.msg)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from([*SUPPORTED_CONTENT_TYPES, "PUT", "post", " IMAGE/PNG "]) | JSON


@settings(max_examples=500, deadline=None)
@given(
    body=st.one_of(
        st.text(),
        JSON.map(json.dumps),
        st.fixed_dictionaries({}, optional={"content_type": FIELDS, "method": FIELDS}).map(json.dumps),
    ),
    base64_encoded=st.booleans(),
    noise=st.binary(max_size=8),
)
def test_any_body_is_a_request_or_a_client_error(body: str, base64_encoded: bool, noise: bytes) -> None:
    if base64_encoded:
        body = base64.b64encode(body.encode("utf-8", "surrogatepass") + noise).decode()
    outcome: UploadRequest | ServiceError
    try:
        outcome = parse_upload_request(body, base64_encoded=base64_encoded)
    except ServiceError as refused:
        outcome = refused
    if isinstance(outcome, ServiceError):
        assert outcome.status_code in (400, 413)
        assert isinstance(outcome.msg, str)
        assert "\n" not in outcome.msg
    else:
        assert outcome.content_type in SUPPORTED_CONTENT_TYPES
        assert outcome.method in ("PUT", "POST")


def test_image_ids_are_canonical_uuids_only() -> None:
    image_id = uuid.uuid4()
    assert is_image_id(str(image_id))
    for other in (
        str(image_id).upper(),
        image_id.hex,
        f"{{{image_id}}}",
        f"urn:uuid:{image_id}",
        f" {image_id}",
        "",
        "..",
        "\x00",
        "a" * 10_000,
    ):
        assert not is_image_id(other), other


@given(st.text() | st.uuids().map(str))
def test_any_text_is_an_image_id_or_not_without_raising(value: str) -> None:
    if is_image_id(value):
        assert str(uuid.UUID(value)) == value
