"""Presign, read API and the local API's JWT check, over HTTP against moto's S3 and Cognito."""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from localaws.api import ApiServer, LocalHttpApi, default_routes
from localaws.context import LocalLambdaContext
from localaws.jwt_auth import CognitoJwtVerifier, TokenRejected
from localaws.provision import create_user
from monitoring.target import StackInfo, fetch_access_token
from pipeline import presign, read_api
from pipeline.presign import grant_upload
from pipeline.settings import Settings
from tests.conftest import jpeg_bytes
from tests.tokens import pool_signed


def test_presigned_put_is_scoped_to_the_user_and_binds_content_type(settings: Settings, s3: Any) -> None:
    grant = grant_upload(user_sub="user-1", content_type="image/png", method="PUT", settings=settings, s3=s3)

    assert grant.file_path == f"user-uploads/user-1/{grant.image_id}.png"
    assert str(uuid.UUID(grant.image_id)) == grant.image_id
    assert grant.expires_in == 300
    query = parse_qs(urlparse(grant.upload_url).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")
    assert urlparse(grant.upload_url).path == f"/{settings.upload_bucket}/{grant.file_path}"

    response = requests.put(grant.upload_url, data=b"png bytes", headers={"Content-Type": "image/png"}, timeout=10)
    assert response.status_code == 200
    head = s3.head_object(Bucket=settings.upload_bucket, Key=grant.file_path)
    assert head["ContentType"] == "image/png"


def test_presigned_post_caps_size_and_pins_key(settings: Settings, s3: Any) -> None:
    grant = grant_upload(user_sub="user-1", content_type="image/jpeg", method="POST", settings=settings, s3=s3)

    policy = json.loads(base64.b64decode(grant.fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1, 25 * 1024 * 1024] in conditions
    assert {"key": grant.file_path} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    expires_at = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires_at - (time.time() + 300)) < 5

    response = requests.post(
        grant.upload_url, data=grant.fields, files={"file": ("a.jpg", jpeg_bytes(64, 48))}, timeout=10
    )
    assert response.status_code == 204
    assert s3.head_object(Bucket=settings.upload_bucket, Key=grant.file_path)["ContentLength"] > 0


def api_event(method: str, path: str, *, claims: dict[str, Any] | None, body: str | None = None) -> dict[str, Any]:
    route = "/images/{image_id}" if path.startswith("/images/") else path
    context: dict[str, Any] = {
        "http": {"method": method, "path": path},
        "requestId": "r",
        "stage": "$default",
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": context,
        "pathParameters": {"image_id": path.rsplit("/", 1)[-1]} if route != path else None,
        "body": body,
        "isBase64Encoded": False,
    }


ACCESS = {"sub": "user-1", "token_use": "access"}


@pytest.mark.usefixtures("handler_env")
@pytest.mark.parametrize(
    ("claims", "body", "status", "message"),
    [
        (None, '{"content_type": "image/jpeg"}', 401, "bearer token"),
        ({"sub": "user-1", "token_use": "id"}, '{"content_type": "image/jpeg"}', 401, "access token"),
        ({"token_use": "access"}, '{"content_type": "image/jpeg"}', 401, "subject"),
        ({"sub": "../other", "token_use": "access"}, '{"content_type": "image/jpeg"}', 401, "subject"),
        (ACCESS, '{"content_type": "image/gif"}', 400, "content_type must be one of"),
        (ACCESS, "{not json", 400, "must be JSON"),
        (ACCESS, '{"content_type": "image/jpeg", "method": "PATCH"}', 400, "method must be PUT or POST"),
    ],
)
def test_presign_refuses_bad_requests(claims: dict[str, Any] | None, body: str, status: int, message: str) -> None:
    response = presign.handler(api_event("POST", "/uploads", claims=claims, body=body), _context())
    assert response["statusCode"] == status
    assert message in json.loads(response["body"])["message"]


@pytest.mark.usefixtures("handler_env")
def test_presign_handler_grants_an_upload() -> None:
    response = presign.handler(
        api_event("POST", "/uploads", claims=ACCESS, body='{"content_type": "image/webp", "method": "post"}'),
        _context(),
    )
    assert response["statusCode"] == 201
    grant = json.loads(response["body"])
    assert set(grant) >= {"upload_url", "file_path", "image_id", "expires_in", "fields"}
    assert grant["file_path"] == f"user-uploads/user-1/{grant['image_id']}.webp"


@pytest.mark.usefixtures("handler_env")
def test_read_api_answers_only_the_owner(stack: StackInfo) -> None:
    image_id = str(uuid.uuid4())
    table = boto3.resource("dynamodb").Table(stack.images_table)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=stack.processed_bucket, Key=f"processed/{image_id}/256.jpg", Body=b"thumb")
    table.put_item(
        Item={
            "imageId": image_id,
            "userId": "user-1",
            "status": "DONE",
            "processedS3Keys": {"256": f"processed/{image_id}/256.jpg"},
            "sourceVersion": "etag:",
        }
    )

    mine = read_api.handler(api_event("GET", f"/images/{image_id}", claims=ACCESS), _context())
    theirs = read_api.handler(
        api_event("GET", f"/images/{image_id}", claims={"sub": "user-2", "token_use": "access"}), _context()
    )
    missing = read_api.handler(api_event("GET", f"/images/{uuid.uuid4()}", claims=ACCESS), _context())
    garbage = read_api.handler(api_event("GET", "/images/..%2F..%2Fetc", claims=ACCESS), _context())

    assert mine["statusCode"] == 200
    body = json.loads(mine["body"])
    assert body["status"] == "DONE"
    assert "sourceVersion" not in body
    assert requests.get(body["thumbnails"]["256"], timeout=10).content == b"thumb"
    assert theirs["statusCode"] == missing["statusCode"] == garbage["statusCode"] == 404
    assert json.loads(theirs["body"]) == json.loads(missing["body"])


def _context() -> LocalLambdaContext:
    return LocalLambdaContext.create("api", timeout_seconds=29)


# --- the local API's JWT authorizer -------------------------------------------------------------


@pytest.fixture
def verifier(stack: StackInfo) -> CognitoJwtVerifier:
    return CognitoJwtVerifier(issuer=stack.issuer, client_id=stack.user_pool_client_id, jwks_url=stack.jwks_url)


def test_real_access_token_is_accepted(stack: StackInfo, verifier: CognitoJwtVerifier) -> None:
    claims = verifier.verify(f"Bearer {fetch_access_token(stack)}")
    assert claims["sub"] == stack.demo_sub
    assert verifier.verify(f"Bearer {pool_signed(stack)}")["sub"] == stack.demo_sub


def _forged(stack: StackInfo) -> str:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(fetch_access_token(stack), options={"verify_signature": False})
    return jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "dummy"})


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda stack: None, id="missing"),
        pytest.param(lambda stack: "Basic abc", id="not-bearer"),
        pytest.param(lambda stack: "Bearer not.a.jwt", id="garbage"),
        pytest.param(lambda stack: f"Bearer {_forged(stack)}", id="forged-signature"),
        pytest.param(lambda stack: f"Bearer {pool_signed(stack, exp=int(time.time()) - 10)}", id="expired"),
        pytest.param(lambda stack: f"Bearer {pool_signed(stack, client_id='someone-else')}", id="other-client"),
        pytest.param(lambda stack: f"Bearer {pool_signed(stack, iss=stack.issuer + 'x')}", id="other-pool"),
        pytest.param(lambda stack: f"Bearer {pool_signed(stack, token_use='id')}", id="id-token"),
        pytest.param(lambda stack: f"Bearer {pool_signed(stack, sub=None)}", id="no-sub"),
    ],
)
def test_bad_tokens_are_rejected(stack: StackInfo, verifier: CognitoJwtVerifier, make_header: Any) -> None:
    with pytest.raises(TokenRejected):
        verifier.verify(make_header(stack))


@pytest.fixture
def local_api(stack: StackInfo, verifier: CognitoJwtVerifier, handler_env: None) -> Iterator[str]:
    server = ApiServer(LocalHttpApi(default_routes(), verifier)).start()
    yield server.url
    server.stop()


def test_local_api_end_to_end_authorization(stack: StackInfo, local_api: str) -> None:
    token = fetch_access_token(stack)
    cognito = boto3.client("cognito-idp")
    create_user(cognito, stack.user_pool_id, "mallory", "Mallory-pass-123!")
    other = fetch_access_token(stack, "mallory", "Mallory-pass-123!")

    unauthorized = requests.post(f"{local_api}/uploads", json={"content_type": "image/jpeg"}, timeout=10)
    forged = requests.post(
        f"{local_api}/uploads",
        json={"content_type": "image/jpeg"},
        headers={"Authorization": f"Bearer {_forged(stack)}"},
        timeout=10,
    )
    granted = requests.post(
        f"{local_api}/uploads",
        json={"content_type": "image/jpeg"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert (unauthorized.status_code, forged.status_code, granted.status_code) == (401, 401, 201)
    grant = granted.json()
    assert grant["file_path"].startswith(f"user-uploads/{stack.demo_sub}/")

    boto3.resource("dynamodb").Table(stack.images_table).put_item(
        Item={
            "imageId": grant["image_id"],
            "userId": stack.demo_sub,
            "status": "PROCESSING",
            "sourceVersion": "x",
        }
    )
    own = requests.get(
        f"{local_api}/images/{grant['image_id']}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    foreign = requests.get(
        f"{local_api}/images/{grant['image_id']}", headers={"Authorization": f"Bearer {other}"}, timeout=10
    )
    unknown_route = requests.get(f"{local_api}/nope", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert (own.status_code, foreign.status_code, unknown_route.status_code) == (200, 404, 404)
    assert own.json()["status"] == "PROCESSING"


def test_concurrent_calls_each_get_their_own_event(stack: StackInfo, local_api: str) -> None:
    """Two users' uploads and reads at once, from many threads, as the load test and the upload page make them.

    Powertools keeps the resolver's current event in a class attribute (one per process): the local API once ran
    invocations side by side in its threads, and a presign then read a read's event (400 "content_type is required"
    in the 1,000-image main job) or a read a presign's (500), and a grant could name the other user's folder."""
    cognito = boto3.client("cognito-idp")
    create_user(cognito, stack.user_pool_id, "trent", "Trent-pass-123!")
    tokens = {stack.demo_sub: fetch_access_token(stack), "trent": fetch_access_token(stack, "trent", "Trent-pass-123!")}
    subs = {sub: jwt.decode(token, options={"verify_signature": False})["sub"] for sub, token in tokens.items()}
    table = boto3.resource("dynamodb").Table(stack.images_table)
    image_id = str(uuid.uuid4())
    table.put_item(Item={"imageId": image_id, "userId": stack.demo_sub, "status": "PROCESSING", "sourceVersion": "x"})

    def call(turn: int) -> str | None:
        user = stack.demo_sub if turn % 2 else "trent"
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        with requests.Session() as session:
            for _ in range(15):
                if turn % 3 == 0 and user == stack.demo_sub:
                    answer = session.get(f"{local_api}/images/{image_id}", headers=headers, timeout=30)
                    if answer.status_code != 200 or answer.json().get("imageId") != image_id:
                        return f"read: {answer.status_code} {answer.text[:120]}"
                    continue
                answer = session.post(
                    f"{local_api}/uploads", json={"content_type": "image/png"}, headers=headers, timeout=30
                )
                if answer.status_code != 201:
                    return f"presign: {answer.status_code} {answer.text[:120]}"
                if not answer.json()["file_path"].startswith(f"user-uploads/{subs[user]}/"):
                    return f"{user} was granted {answer.json()['file_path']}"
        return None

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: the server's too, as on a loaded machine
    try:
        with ThreadPoolExecutor(8) as pool:
            problems = [problem for problem in pool.map(call, range(16)) if problem]
    finally:
        sys.setswitchinterval(switching)
    assert problems == []
