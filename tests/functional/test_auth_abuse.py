"""Abuse of the API over HTTP, through the local API server (JWT check, then the real handlers) on moto.

Bad tokens get 401 and no URL; a user only ever gets URLs under their own prefix and reads only their own
images; presigned URLs carry exactly the configured expiry and constraints, and their signatures are checked
here with botocore's own signer, because moto accepts any signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import botocore.auth
import jwt
import pytest
import requests
from botocore.auth import S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server

from localaws.api import ApiServer, LocalHttpApi, default_routes
from localaws.jwt_auth import CognitoJwtVerifier
from localaws.provision import create_user, provision
from monitoring.target import StackInfo, fetch_access_token
from pipeline import presign, read_api, worker
from pipeline.resources import Env, ResourceNames
from pipeline.settings import DEFAULT_MAX_UPLOAD_BYTES
from tests.tokens import claims_for, pool_key, pool_signed

EXPIRY = 137  # an unusual value, so a default cannot pass for "as configured"
SIGV4_DATE = "%Y%m%dT%H%M%SZ"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@dataclass(frozen=True)
class Api:
    url: str
    stack: StackInfo
    alice: str  # the demo user's access token
    mallory: str
    mallory_sub: str

    def post(self, token: str | None, body: dict[str, Any], *, path: str = "/uploads") -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=10)

    def get(self, token: str, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture(scope="module")
def api(moto_endpoint: str) -> Iterator[Api]:
    """One stack and API server for the module (the tests only add uniquely named items): ~40 tests in seconds.
    The environment is what the CDK app gives the functions (as the `handler_env` fixture sets it), plus an
    unusual URL expiry."""
    stack = provision(ResourceNames(f"t{uuid.uuid4().hex[:12]}"), endpoint_url=moto_endpoint, visibility_timeout=30)
    caches: list[Any] = [presign._settings, read_api._settings, worker._deps]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**stack.handler_environment(), Env.URL_EXPIRY_SECONDS: str(EXPIRY)}.items():
            patch.setenv(name, value)
        for cached in caches:
            cached.cache_clear()
        verifier = CognitoJwtVerifier(issuer=stack.issuer, client_id=stack.user_pool_client_id, jwks_url=stack.jwks_url)
        server = ApiServer(LocalHttpApi(default_routes(), verifier)).start()
        mallory_sub = create_user(boto3.client("cognito-idp"), stack.user_pool_id, "mallory", "Mallory-pass-123!")
        yield Api(
            url=server.url,
            stack=stack,
            alice=fetch_access_token(stack),
            mallory=fetch_access_token(stack, "mallory", "Mallory-pass-123!"),
            mallory_sub=mallory_sub,
        )
        server.stop()
        for cached in caches:
            cached.cache_clear()


# --- tokens ------------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(stack: StackInfo) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "dummy"}).encode())
    return f"{header}.{b64url(json.dumps(claims_for(stack)).encode())}."


def hmac_with_public_key(stack: StackInfo) -> str:
    """The classic key confusion: HS256 with the pool's *public* key as the shared secret."""
    public_pem = (
        pool_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = ".".join(
        [
            b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "dummy"}).encode()),
            b64url(json.dumps(claims_for(stack)).encode()),
        ]
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True)
class OtherPool:
    """Another identity provider with its own RSA key, serving its own JWKS: its tokens are genuinely valid
    (a verifier configured for it accepts them), just not for this API."""

    key: rsa.RSAPrivateKey
    kid: str
    issuer: str
    client_id: str
    jwks_url: str

    def token(self, stack: StackInfo, *, kid: str | None = None, **overrides: Any) -> str:
        claims = claims_for(stack, **{"iss": self.issuer, "client_id": self.client_id, **overrides})
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture(scope="module")
def other_pool() -> Iterator[OtherPool]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "other-key", "alg": "RS256"}
    body = json.dumps({"keys": [jwk]}).encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pool_id = "us-east-1_OtherPool1"
    yield OtherPool(
        key=key,
        kid="other-key",
        issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{pool_id}",
        client_id="otherclient123",
        jwks_url=f"http://127.0.0.1:{server.server_port}/{pool_id}/.well-known/jwks.json",
    )
    server.shutdown()
    thread.join(timeout=5)


def id_token(stack: StackInfo) -> str:
    result = boto3.client("cognito-idp").initiate_auth(
        ClientId=stack.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": stack.demo_username, "PASSWORD": stack.demo_password},
    )
    token = result["AuthenticationResult"]["IdToken"]
    assert jwt.decode(token, options={"verify_signature": False})["token_use"] == "id"
    return token


def in_an_hour() -> int:
    return int(time.time()) + 3600


BAD_TOKENS: dict[str, Callable[[StackInfo, OtherPool], str]] = {
    "forged-signature": lambda s, o: jwt.encode(claims_for(s), o.key, algorithm="RS256", headers={"kid": "dummy"}),
    "other-pool-token": lambda s, o: o.token(s),
    "other-pool-key-our-issuer": lambda s, o: o.token(s, iss=s.issuer, client_id=s.user_pool_client_id),
    "our-key-other-pool-issuer": lambda s, o: pool_signed(s, iss=o.issuer),  # moto shares one key across pools
    "alg-none": lambda s, o: unsigned(s),
    "alg-hs256-with-public-key": lambda s, o: hmac_with_public_key(s),
    "expired": lambda s, o: pool_signed(s, iat=int(time.time()) - 3700, exp=int(time.time()) - 1),
    "not-yet-valid-nbf": lambda s, o: pool_signed(s, nbf=int(time.time()) + 600),
    "issued-in-the-future": lambda s, o: pool_signed(s, iat=int(time.time()) + 600, exp=in_an_hour() + 600),
    "other-client": lambda s, o: pool_signed(s, client_id="someone-elses-app"),
    "audience-instead-of-client": lambda s, o: pool_signed(s, client_id=None, aud=s.user_pool_client_id),
    "id-token": lambda s, o: id_token(s),
    "id-token-use-on-access-claims": lambda s, o: pool_signed(s, token_use="id"),
    "missing-sub": lambda s, o: pool_signed(s, sub=None),
    "missing-exp": lambda s, o: pool_signed(s, exp=None),
    "missing-token-use": lambda s, o: pool_signed(s, token_use=None),
    "missing-issuer": lambda s, o: pool_signed(s, iss=None),
    "sub-dot-dot": lambda s, o: pool_signed(s, sub="../00000000-aaaa-4bbb-8ccc-000000000000"),
    "sub-with-slash": lambda s, o: pool_signed(s, sub=f"{s.demo_sub}/../x"),
    "sub-absolute": lambda s, o: pool_signed(s, sub="/etc"),
    "sub-encoded": lambda s, o: pool_signed(s, sub="%2e%2e%2fx"),
    "sub-empty": lambda s, o: pool_signed(s, sub=""),
    "signature-stripped": lambda s, o: pool_signed(s).rsplit(".", 1)[0] + ".",
    "claims-swapped-after-signing": lambda s, o: ".".join(
        [
            pool_signed(s).split(".")[0],
            b64url(json.dumps(claims_for(s, sub="x")).encode()),
            pool_signed(s).split(".")[2],
        ]
    ),
}


def test_a_well_formed_token_is_accepted_so_the_rejections_mean_something(api: Api) -> None:
    for token in (api.alice, pool_signed(api.stack)):
        response = api.post(token, {"content_type": "image/jpeg"})
        assert response.status_code == 201, response.text
        assert response.json()["file_path"].startswith(f"user-uploads/{api.stack.demo_sub}/")


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_get_401_and_no_url(api: Api, other_pool: OtherPool, case: str) -> None:
    token = BAD_TOKENS[case](api.stack, other_pool)

    upload = api.post(token, {"content_type": "image/jpeg"})
    read = api.get(token, f"/images/{uuid.uuid4()}")

    assert (upload.status_code, read.status_code) == (401, 401), (upload.text, read.text)
    for response in (upload, read):
        assert "X-Amz-" not in response.text
        assert "upload_url" not in response.text
    if not case.startswith("sub-"):  # refused by the authorizer, which keeps its reason for the server's log
        assert upload.json() == read.json() == {"message": "Unauthorized"}
    else:  # a verified token whose subject could bend an S3 key: refused by the handlers themselves
        assert "subject" in upload.json()["message"]


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic ZGVtbzpkZW1v", "Token abc", "Bearer a.b.c", "bearer  x"]
)
def test_malformed_authorization_headers_get_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = requests.post(f"{api.url}/uploads", json={"content_type": "image/png"}, headers=headers, timeout=10)
    assert response.status_code == 401
    assert "upload_url" not in response.text


def test_other_pools_tokens_are_valid_there_but_not_here(api: Api, other_pool: OtherPool) -> None:
    there = CognitoJwtVerifier(issuer=other_pool.issuer, client_id=other_pool.client_id, jwks_url=other_pool.jwks_url)
    token = other_pool.token(api.stack)
    assert there.verify(f"Bearer {token}")["sub"] == api.stack.demo_sub
    assert api.post(token, {"content_type": "image/png"}).status_code == 401


# --- isolation between users ----------------------------------------------------------------------------------

PATH_TRICKS = [
    "../../user-uploads/{alice}/x.png",
    "/user-uploads/{alice}/x.png",
    "user-uploads/{alice}/x.png",
    "%2e%2e%2f%2e%2e%2fuser-uploads%2f{alice}%2fx.png",
    "..\\..\\{alice}\\x.png",
    "．．／{alice}／x.png",
    "x.png\u0000.jpg",
    "",
]


def test_extra_fields_and_path_tricks_never_leave_the_callers_prefix(api: Api) -> None:
    alice = api.stack.demo_sub
    own = re.compile(rf"user-uploads/{re.escape(api.mallory_sub)}/({UUID})\.png")
    alice_grant = api.post(api.alice, {"content_type": "image/png"}).json()
    issued: set[str] = set()
    for trick in PATH_TRICKS:
        name = trick.format(alice=alice)
        body = {
            "content_type": "image/png",
            "filename": name,
            "file_path": name,
            "key": name,
            "Key": name,
            "name": name,
            "image_id": alice_grant["image_id"],
            "sub": alice,
            "user_sub": alice,
            "bucket": "some-other-bucket",
        }
        for path in ("/uploads", f"/uploads?key={name}&file_path={name}"):
            response = api.post(api.mallory, body, path=path)
            assert response.status_code == 201, response.text
            grant = response.json()
            match = own.fullmatch(grant["file_path"])
            assert match is not None, grant["file_path"]
            assert grant["image_id"] == match.group(1) != alice_grant["image_id"]
            url = urlsplit(grant["upload_url"])
            assert url.path == f"/{api.stack.upload_bucket}/{grant['file_path']}"
            assert alice not in grant["upload_url"]
            assert grant["file_path"] not in issued
            issued.add(grant["file_path"])


def test_a_user_cannot_read_another_users_image(api: Api) -> None:
    image_id = str(uuid.uuid4())
    table = boto3.resource("dynamodb").Table(api.stack.images_table)
    thumbnail = f"processed/{image_id}/256.jpg"
    boto3.client("s3").put_object(Bucket=api.stack.processed_bucket, Key=thumbnail, Body=b"alice's thumbnail")
    table.put_item(
        Item={
            "imageId": image_id,
            "userId": api.stack.demo_sub,
            "status": "DONE",
            "originalS3Key": f"user-uploads/{api.stack.demo_sub}/{image_id}.jpg",
            "processedS3Keys": {"256": thumbnail},
            "sourceVersion": "etag:1",
        }
    )

    own = api.get(api.alice, f"/images/{image_id}")
    assert own.status_code == 200
    url = urlsplit(own.json()["thumbnails"]["256"])
    assert url.path == f"/{api.stack.processed_bucket}/{thumbnail}"
    assert parse_qs(url.query)["X-Amz-Expires"] == [str(EXPIRY)]

    unknown = api.get(api.mallory, f"/images/{uuid.uuid4()}")
    assert unknown.status_code == 404
    probes = [
        f"/images/{image_id}",
        f"/images/{image_id.upper()}",
        f"/images/{image_id}/",
        f"/images/{image_id}%2F..%2F{image_id}",
        f"/images/..%2F{image_id}",
        f"/images/%2e%2e/{image_id}",
        f"/images/{{{image_id}}}",
        f"/images/urn:uuid:{image_id}",
    ]
    for path in probes:
        response = api.get(api.mallory, path)
        assert response.status_code in (404, 405), (path, response.status_code)
        assert api.stack.demo_sub not in response.text
        assert "thumbnail" not in response.text
    assert api.get(api.mallory, f"/images/{image_id}").json() == unknown.json(), "indistinguishable from missing"


# --- presigned URLs ---------------------------------------------------------------------------------------------


def credentials() -> ReadOnlyCredentials:
    """The credentials the handlers sign with: the same environment, the same chain."""
    found = boto3.Session().get_credentials()
    assert found is not None
    return found.get_frozen_credentials()


def botocore_query_signature(
    url: str, *, method: str, headers: dict[str, str], expires: int, region: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Sign the request a URL stands for with botocore's S3 query signer, its clock pinned to the URL's
    X-Amz-Date: the signature AWS would expect for exactly this method, path, query and headers."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    signed_at = datetime.strptime(dict(query)["X-Amz-Date"], SIGV4_DATE)
    operation_query = urlencode([(name, value) for name, value in query if not name.startswith("X-Amz-")])
    request = AWSRequest(
        method=method, url=urlunsplit((parts.scheme, parts.netloc, parts.path, operation_query, "")), headers=headers
    )
    with monkeypatch.context() as patched:
        patched.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: signed_at)
        S3SigV4QueryAuth(credentials(), "s3", region, expires=expires).add_auth(request)
    return parse_qs(urlsplit(str(request.url)).query)["X-Amz-Signature"][0]


def test_presigned_put_carries_the_configured_expiry_and_a_signature_botocore_agrees_with(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked_at = datetime.now(UTC).replace(tzinfo=None)
    grant = api.post(api.mallory, {"content_type": "image/webp"}).json()
    url = grant["upload_url"]
    query = parse_qs(urlsplit(url).query)

    assert grant["expires_in"] == EXPIRY
    assert query["X-Amz-Expires"] == [str(EXPIRY)]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], SIGV4_DATE)
    assert abs(signed_at - asked_at) < timedelta(seconds=5)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"] == [f"testing/{signed_at:%Y%m%d}/{api.stack.region}/s3/aws4_request"]
    assert query["X-Amz-SignedHeaders"] == ["content-type;host"], "the content type is part of the signature"

    def signature(*, target: str = url, content_type: str = "image/webp", expires: int = EXPIRY) -> str:
        return botocore_query_signature(
            target,
            method="PUT",
            headers={"Content-Type": content_type},
            expires=expires,
            region=api.stack.region,
            monkeypatch=monkeypatch,
        )

    assert signature() == query["X-Amz-Signature"][0], "botocore signs exactly this URL the same way"

    alice_key = url.replace(f"/user-uploads/{api.mallory_sub}/", f"/user-uploads/{api.stack.demo_sub}/")
    tampered = {
        "key moved to another user's prefix": signature(target=alice_key),
        "content type changed": signature(content_type="image/svg+xml"),
        "expiry stretched to 7 days": signature(expires=7 * 24 * 3600),
        "bucket changed": signature(target=url.replace(f"/{api.stack.upload_bucket}/", "/other-bucket/")),
    }
    for change, recomputed in tampered.items():
        assert recomputed != query["X-Amz-Signature"][0], f"{change}: not covered by the signature"


def test_presigned_post_policy_pins_key_type_size_and_expiry_and_its_signature_verifies(api: Api) -> None:
    grant = api.post(api.mallory, {"content_type": "image/jpeg", "method": "POST"}).json()
    fields = grant["fields"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]

    assert {"key": grant["file_path"]} in conditions
    assert {"bucket": api.stack.upload_bucket} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, DEFAULT_MAX_UPLOAD_BYTES] in conditions
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"], "nothing left open"
    assert fields["key"] == grant["file_path"]
    assert fields["Content-Type"] == "image/jpeg"
    signed_at = datetime.strptime(fields["x-amz-date"], SIGV4_DATE)
    expires_at = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((expires_at - signed_at).total_seconds() - EXPIRY) <= 1, (signed_at, expires_at)

    def signature(encoded_policy: str) -> str:
        request = AWSRequest(method="POST", url=grant["upload_url"])
        request.context["timestamp"] = fields["x-amz-date"]
        return SigV4Auth(credentials(), "s3", api.stack.region).signature(encoded_policy, request)

    assert signature(fields["policy"]) == fields["x-amz-signature"]
    widened = json.loads(base64.b64decode(fields["policy"]))
    widened["conditions"] = [
        ["content-length-range", 1, 5 * 1024**3] if isinstance(c, list) else c for c in widened["conditions"]
    ]
    forged_policy = base64.b64encode(json.dumps(widened).encode()).decode()
    assert signature(forged_policy) != fields["x-amz-signature"], "a widened size range would not verify"
