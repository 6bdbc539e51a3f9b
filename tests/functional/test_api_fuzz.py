"""Whatever a client sends, both routes answer with a 4xx and a JSON `message` (or their success shape), never a
5xx: through the real handlers with HTTP API payload 2.0 events, and over HTTP through the local API (JWT check,
then the same handlers) on moto. A 5xx would be a Lambda error and a page on AWS for what is the caller's mistake.

The requests go out through `http.client`, which sends paths, methods and headers as given; `requests` would
quote and normalise them first.
"""

# The local API and its verifier are test_api.py's fixtures, imported; pytest passes them by name, which pyflakes
# reads as redefining the import.
# ruff: noqa: F811

from __future__ import annotations

import base64
import http.client
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from localaws.api import ApiServer, LocalHttpApi, Route
from localaws.context import LocalLambdaContext
from localaws.jwt_auth import CognitoJwtVerifier
from monitoring.target import StackInfo, fetch_access_token
from pipeline import presign, read_api
from pipeline.imaging import SUPPORTED_CONTENT_TYPES
from tests.functional.test_api import ACCESS, api_event, local_api, verifier  # noqa: F401 - fixtures, see above

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.large_base_example],
)

# The three bodies of issue #9 (500s with a traceback before), and their relatives.
NESTED = "[" * 5000 + "]" * 5000
REGRESSIONS = {
    "content-type-list": '{"content_type": ["image/jpeg"]}',
    "content-type-object": '{"content_type": {"a": 1}}',
    "nested-5000": NESTED,
    "nested-objects": '{"a":' * 2000 + "1" + "}" * 2000,
    "nested-under-content-type": '{"content_type": ' + NESTED + "}",
    "huge-integer": '{"content_type": 1' + "0" * 5000 + "}",
    "method-list": '{"content_type": "image/jpeg", "method": ["PUT"]}',
    "method-object": '{"content_type": "image/jpeg", "method": {"PUT": 1}}',
    "method-number": '{"content_type": "image/jpeg", "method": 1}',
    "json-array": '["image/jpeg"]',
    "json-string": '"image/jpeg"',
    "json-number": "42",
    "json-null": "null",
    "json-true": "true",
    "whitespace": "  \n ",
    "lone-surrogate": '{"content_type": "\\ud800"}',
    "nul": '{"content_type": "image/jpeg\\u0000"}',
    "parameters": '{"content_type": "image/jpeg; charset=x"}',
    "long-s-method": '{"content_type": "image/png", "method": "po\u017ft"}',
}
GRANT_KEYS = {"upload_url", "file_path", "image_id", "expires_in", "method", "content_type", "fields"}


def _context() -> LocalLambdaContext:
    return LocalLambdaContext.create("api", timeout_seconds=29)


def assert_client_error_shape(status: int, body: str, *, ok: frozenset[int] = frozenset()) -> dict[str, Any]:
    """A 4xx with a one-line JSON `message`, or one of the `ok` statuses; never a 5xx, never a traceback."""
    assert status < 500, (status, body[:300])
    assert "Traceback" not in body
    assert 'File "' not in body
    answer = json.loads(body)
    assert isinstance(answer, dict), body[:300]
    if status not in ok:
        assert 400 <= status < 500, (status, body[:300])
        assert isinstance(answer.get("message"), str), body[:300]
        assert answer["message"]
        assert "\n" not in body
    return answer


# --- through the handlers, as API Gateway invokes them ----------------------------------------------------------


@pytest.mark.parametrize("body", list(REGRESSIONS.values()), ids=list(REGRESSIONS))
def test_malformed_upload_bodies_are_400_from_the_handler(body: str) -> None:
    response = presign.handler(api_event("POST", "/uploads", claims=ACCESS, body=body), _context())
    assert response["statusCode"] == 400, response
    assert_client_error_shape(response["statusCode"], response["body"])


def _encoded(body: str | None, *, base64_encoded: bool) -> dict[str, Any]:
    event = api_event("POST", "/uploads", claims=ACCESS, body=body)
    event["isBase64Encoded"] = base64_encoded
    return event


@pytest.mark.parametrize(
    ("body", "base64_encoded", "status", "message"),
    [
        ("not base64!", True, 400, "not valid base64"),
        ("é", True, 400, "not valid base64"),
        ("YQ", True, 400, "not valid base64"),  # missing padding
        (base64.b64encode(b'{"content_type": "\xff"}').decode(), True, 400, "UTF-8"),
        (base64.b64encode(b"\x89PNG\r\n\x1a\n\0\0").decode(), True, 400, "UTF-8"),
        (base64.b64encode(b'["image/png"]').decode(), True, 400, "JSON object"),
        ("", True, 400, "content_type is required"),
        (None, False, 400, "content_type is required"),
        ("{}", False, 400, "content_type is required"),
        ('{"content_type": "image/png", "x": "' + "a" * 20_000 + '"}', False, 413, "longer than"),
        (base64.b64encode(b"{" + b" " * 20_000 + b"}").decode(), True, 413, "longer than"),
    ],
)
def test_base64_and_oversized_bodies_from_the_handler(
    body: str | None, base64_encoded: bool, status: int, message: str
) -> None:
    response = presign.handler(_encoded(body, base64_encoded=base64_encoded), _context())
    assert response["statusCode"] == status, response
    assert message in assert_client_error_shape(status, response["body"])["message"]


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
CONTENT_TYPES = (
    st.sampled_from(sorted(SUPPORTED_CONTENT_TYPES))
    | st.sampled_from(
        [
            "IMAGE/JPEG",
            " image/png\t",
            "Image/WebP",
            "image/jpeg; charset=x",
            "image/jpeg;",
            "image/gif",
            "image/svg+xml",
            "",
            "image/jpeg\x00",
            "ｉmage/png",
        ]
    )
    | st.text(max_size=40)
    | JSON_VALUES
)
METHODS = st.sampled_from(["PUT", "POST", "put", " Post "]) | st.sampled_from(["PATCH", "", "po\u017ft"]) | JSON_VALUES
UPLOAD_OBJECTS = st.builds(
    lambda required, extra: {**extra, **required},
    st.fixed_dictionaries({"content_type": CONTENT_TYPES}, optional={"method": METHODS})
    | st.fixed_dictionaries({}, optional={"content_type": CONTENT_TYPES, "method": METHODS}),
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3),
)
UPLOAD_BODIES = st.one_of(
    UPLOAD_OBJECTS.map(json.dumps),
    UPLOAD_OBJECTS.map(json.dumps),
    UPLOAD_OBJECTS.map(lambda request: json.dumps(request, ensure_ascii=False, indent=1)),
    JSON_VALUES.map(json.dumps),
    st.text(max_size=200),
    st.integers(1, 6000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 3000).map(lambda depth: '{"content_type":' * depth + "0" + "}" * depth),
    st.integers(4000, 6000).map(lambda digits: '{"content_type": ' + "9" * digits + "}"),
    st.sampled_from(list(REGRESSIONS.values())),
)


@pytest.mark.usefixtures("handler_env")
@FUZZ
@given(body=UPLOAD_BODIES, base64_encoded=st.booleans(), raw=st.binary(max_size=64))
def test_any_upload_event_gets_a_4xx_or_a_grant_from_the_handler(body: str, base64_encoded: bool, raw: bytes) -> None:
    """`raw` stands for a binary body: what API Gateway base64-encodes (or, with the flag off, garbage)."""
    sent = base64.b64encode(body.encode("utf-8", "surrogatepass") + raw).decode() if base64_encoded else body
    response = presign.handler(_encoded(sent, base64_encoded=base64_encoded), _context())
    event(f"status {response['statusCode']}")
    answer = assert_client_error_shape(response["statusCode"], response["body"], ok=frozenset({201}))
    if response["statusCode"] == 201:
        assert set(answer) == GRANT_KEYS
        assert answer["content_type"] in SUPPORTED_CONTENT_TYPES
        assert answer["file_path"].startswith(f"user-uploads/{ACCESS['sub']}/")


IMAGE_IDS = st.one_of(
    st.text(min_size=1, max_size=50),
    st.text(min_size=1, max_size=5000),
    st.uuids().map(str),
    st.uuids().map(lambda value: str(value).upper()),
    st.uuids().map(lambda value: f"urn:uuid:{value}"),
    st.uuids().map(lambda value: value.hex),
    st.uuids().map(lambda value: f"{{{value}}}"),
    st.sampled_from(["..", ".", "%00", "\x00", "..%2F..%2Fetc", "a/b", "*", " "]),
)


@pytest.mark.usefixtures("handler_env")
@FUZZ
@given(image_id=IMAGE_IDS)
def test_any_image_id_is_answered_like_an_unknown_one_by_the_handler(image_id: str) -> None:
    unknown = read_api.handler(api_event("GET", f"/images/{uuid.uuid4()}", claims=ACCESS), _context())
    response = read_api.handler(api_event("GET", f"/images/{image_id}", claims=ACCESS), _context())
    assert response["statusCode"] == 404
    assert_client_error_shape(response["statusCode"], response["body"])
    assert response["body"] == unknown["body"]


# --- over HTTP, through the local API ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    text: str
    headers: http.client.HTTPMessage


def send(base_url: str, method: str, target: str, *, headers: dict[str, str], body: bytes = b"") -> Reply:
    """One request exactly as given: the path unnormalised, any method, headers in order (Host too, if given)."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
    try:
        names = {name.lower() for name in headers}
        connection.putrequest(method, target, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        return Reply(response.status, response.getheader("Content-Type", ""), text, response.headers)
    finally:
        connection.close()


@pytest.fixture
def token(stack: StackInfo) -> str:
    return fetch_access_token(stack)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Each test below provisions a stack (the `local_api` fixture), so the cases are loops rather than parameters.

BINARY_BODIES = {
    "png-bytes": ("application/octet-stream", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"),
    "latin-1-in-json": ("application/json", b'{"content_type": "\xff\xfe"}'),
    "jpeg-bytes": ("image/jpeg", b"\xff\xd8\xff\xe0" + bytes(range(256))),
    "no-content-type": ("", bytes(range(256))),
}


def test_malformed_upload_bodies_are_400_and_oversized_ones_413_over_http(local_api: str, token: str) -> None:
    cases: dict[str, tuple[str, bytes, int]] = {
        **{
            name: ("application/json", body.encode("utf-8", "surrogatepass"), 400) for name, body in REGRESSIONS.items()
        },
        **{name: (content_type, body, 400) for name, (content_type, body) in BINARY_BODIES.items()},
        "too-long-for-the-handler": (
            "application/json",
            json.dumps({"content_type": "image/png", "pad": "x" * 20_000}).encode(),
            413,
        ),
        "beyond-the-payload-limit": ("application/json", b"x" * (10 * 1024 * 1024 + 1), 413),
    }
    for name, (content_type, body, status) in cases.items():
        headers = {**bearer(token), **({"Content-Type": content_type} if content_type else {})}
        reply = send(local_api, "POST", "/uploads", headers=headers, body=body)
        assert reply.status == status, (name, reply.status, reply.text[:300])
        assert reply.content_type == "application/json", name
        assert_client_error_shape(reply.status, reply.text)


def test_requests_a_user_would_expect_to_work_get_a_grant(local_api: str, token: str) -> None:
    """Case and surrounding whitespace do not matter; the grant names the canonical type the upload must send.
    Whatever the request's own Content-Type, a JSON body is read (as `image/jpeg` it reaches the handler
    base64-encoded, as on AWS)."""
    cases: list[tuple[str | None, dict[str, Any], tuple[str, str]]] = [
        ("application/json", {"content_type": "image/jpeg"}, ("image/jpeg", "PUT")),
        ("application/json", {"content_type": "IMAGE/JPEG", "method": "post"}, ("image/jpeg", "POST")),
        ("application/json", {"content_type": "  image/png\t", "method": " Put "}, ("image/png", "PUT")),
        ("application/json", {"content_type": "Image/WebP", "method": None, "extra": [1]}, ("image/webp", "PUT")),
        ("image/jpeg", {"content_type": "image/jpeg"}, ("image/jpeg", "PUT")),
        ("application/octet-stream", {"content_type": "image/png"}, ("image/png", "PUT")),
        ("text/plain; charset=utf-8", {"content_type": "image/webp", "method": "POST"}, ("image/webp", "POST")),
        (None, {"content_type": "image/png"}, ("image/png", "PUT")),
    ]
    for content_type, request, granted in cases:
        headers = {**bearer(token), **({"Content-Type": content_type} if content_type else {})}
        reply = send(local_api, "POST", "/uploads?ignored=1", headers=headers, body=json.dumps(request).encode())
        assert reply.status == 201, (content_type, request, reply.text)
        grant = json.loads(reply.text)
        assert set(grant) == GRANT_KEYS
        assert (grant["content_type"], grant["method"]) == granted


ROUTING_REFUSALS = [
    ("GET", "/nope", 404),
    ("GET", "/", 404),
    ("GET", "/uploads", 405),
    ("DELETE", "/uploads", 405),
    ("POST", "/images/abc", 405),
    ("HEAD", "/uploads", 405),
    ("HEAD", f"/images/{uuid.uuid4()}", 405),
    ("OPTIONS", "/uploads", 405),
    ("BREW", "/uploads", 405),
    ("post", "/uploads", 405),
    ("POST", "/uploads/", 404),
    ("POST", "/uploads//", 404),
    ("POST", "/./uploads", 404),
    ("POST", "/uploads/..", 404),
    ("POST", "/uploads%00", 404),
    ("GET", "/images/", 404),
    ("GET", "/images/a/b", 404),
    ("GET", "/images/..%2F..%2Fetc", 404),
    ("GET", "/images/%00", 404),
    ("GET", "/images/..", 404),
    ("GET", "/images/" + "a" * 5000, 404),
    ("GET", f"/images/{uuid.uuid4()}?x=1&x=2&%ff=%00", 404),
    ("GET", f"/images/urn:uuid:{uuid.uuid4()}", 404),
    ("GET", f"/images/{str(uuid.uuid4()).upper()}", 404),
]


def test_routing_refusals_are_json_and_odd_ids_are_just_unknown(local_api: str, token: str) -> None:
    for method, path, status in ROUTING_REFUSALS:
        reply = send(local_api, method, path, headers=bearer(token))
        assert reply.status == status, (method, path, reply.status, reply.text)
        if status == 405:
            assert reply.headers["Allow"] in ("GET", "POST"), (method, path)
        if method != "HEAD":
            assert_client_error_shape(reply.status, reply.text)

    unknown = send(local_api, "GET", f"/images/{uuid.uuid4()}", headers=bearer(token))
    assert unknown.status == 404
    for image_id in ("not-a-uuid", "a" * 3000, "%00", "%ff", '"', "\\", str(uuid.uuid4()).upper(), uuid.uuid4().hex):
        reply = send(local_api, "GET", f"/images/{image_id}", headers=bearer(token))
        assert (reply.status, reply.text) == (404, unknown.text), image_id


def test_a_handler_that_raises_is_a_json_500_and_says_nothing_more(
    stack: StackInfo, verifier: CognitoJwtVerifier
) -> None:
    """The one way to a 5xx (a Lambda error on AWS); the tests above prove client input never takes it."""

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom: secret detail")

    def malformed(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": "two hundred", "body": {"not": "a string"}}

    routes = [Route("POST", "/uploads", "broken", broken), Route("GET", "/images/{image_id}", "malformed", malformed)]
    server = ApiServer(LocalHttpApi(routes, verifier)).start()
    try:
        token = fetch_access_token(stack)
        for method, path in (("POST", "/uploads"), ("GET", f"/images/{uuid.uuid4()}")):
            reply = send(server.url, method, path, headers=bearer(token), body=b"{}")
            assert (reply.status, reply.content_type) == (500, "application/json")
            assert json.loads(reply.text) == {"message": "Internal Server Error"}
    finally:
        server.stop()


# --- fuzzing the whole request over HTTP -----------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Printable ASCII and Latin-1 (http.client sends header values as Latin-1) and no CR/LF, which it refuses.
HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=60)
# Framing headers belong to the HTTP server (API Gateway terminates them); fuzzing them tests http.server.
FRAMING = {"content-length", "transfer-encoding", "connection", "expect", "upgrade", "te", "trailer", "keep-alive"}
HEADER_NAMES = st.sampled_from(
    ["Content-Type", "Content-Encoding", "Accept", "Accept-Encoding", "Cookie", "X-Forwarded-For", "Host", "Origin"]
) | st.text(TOKEN_CHARS, min_size=1, max_size=20).filter(lambda name: name.lower() not in FRAMING | {"authorization"})
REQUEST_CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "image/jpeg",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        ";;;",
    ]
)
SEGMENT_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "?#")
SEGMENTS = st.one_of(
    st.text(SEGMENT_CHARS, max_size=30),
    st.binary(max_size=12).map(lambda raw: quote(raw, safe="")),
    st.sampled_from(["..", ".", "%00", "%2F", "%2e%2e", "uploads", "images", "%ff%fe"]),
    st.uuids().map(str),
    st.integers(100, 3000).map(lambda n: "a" * n),
)
IMAGE_PATHS = SEGMENTS.map(lambda segment: f"/images/{segment}")
PATHS = st.one_of(st.just("/uploads"), IMAGE_PATHS, st.lists(SEGMENTS, max_size=4).map("/".join).map("/{}".format))
QUERIES = st.one_of(st.just(""), st.text(SEGMENT_CHARS + "?#", max_size=40).map(lambda query: f"?{query}"))
METHODS_ON_THE_WIRE = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | st.text(
    TOKEN_CHARS, min_size=1, max_size=10
)
BODIES = st.one_of(
    UPLOAD_BODIES.map(lambda body: body.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _jwt_like(header: str) -> str:
    return f"{_b64url(header)}.{_b64url('{}')}.{_b64url('sig')}"


VALID = "\0valid"  # replaced by the test's access token; `None` leaves the header out
BAD_AUTHORIZATIONS = st.one_of(
    st.none(),
    HEADER_VALUE,
    HEADER_VALUE.map(lambda value: f"Bearer {value}"),
    st.sampled_from(
        [
            '{"kid": ["dummy"], "alg": "RS256"}',
            '{"kid": {"a": 1}}',
            "[" * 3000 + "]" * 3000,
            '{"alg": "none"}',
            '{"kid": 1' + "0" * 5000 + "}",
        ]
    ).map(lambda header: f"Bearer {_jwt_like(header)}"),
)
# Three in four requests carry a valid token: most of what is worth reaching is behind it.
AUTHORIZATIONS = st.integers(0, 3).flatmap(lambda draw: BAD_AUTHORIZATIONS if draw == 0 else st.just(VALID))


@FUZZ
@given(
    # Most requests go to a route, with its method, so that the body and headers reach the handlers.
    route=st.one_of(
        st.just(("POST", "/uploads")),
        st.just(("POST", "/uploads")),
        st.tuples(st.just("GET"), IMAGE_PATHS),
        st.tuples(METHODS_ON_THE_WIRE, PATHS),
    ),
    query=QUERIES,
    authorization=AUTHORIZATIONS,
    content_type=st.none() | REQUEST_CONTENT_TYPES,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUE, max_size=4),
    body=BODIES,
)
@example(
    route=("POST", "/uploads"),
    query="",
    authorization=VALID,
    content_type="application/json",
    headers={},
    body=NESTED.encode(),
)
@example(
    route=("GET", "/images/%00"),
    query="?%ff=%00&a=1&a=2",
    authorization=VALID,
    content_type=None,
    headers={"Host": "\xff\xfe", "Cookie": "a=\x01"},
    body=b"\xff",
)
def test_any_request_is_answered_under_500_with_json(
    local_api: str,
    token: str,
    route: tuple[str, str],
    query: str,
    authorization: str | None,
    content_type: str | None,
    headers: dict[str, str],
    body: bytes,
) -> None:
    method, path = route
    sent = dict(headers)
    if authorization is not None:
        sent["Authorization"] = f"Bearer {token}" if authorization == VALID else authorization
    if content_type is not None:
        sent["Content-Type"] = content_type
    reply = send(local_api, method, path + query, headers=sent, body=body)
    event(f"status {reply.status}")  # the spread shows with --hypothesis-show-statistics
    if method == "HEAD":  # no body to check
        assert reply.status < 500, reply
        return
    answer = assert_client_error_shape(reply.status, reply.text, ok=frozenset({201}))
    assert reply.content_type == "application/json"
    if reply.status == 201:
        assert (method, path) == ("POST", "/uploads")
        assert set(answer) == GRANT_KEYS
