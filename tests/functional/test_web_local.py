"""The upload page as the local stack serves it: the page's files and config.json under /web/ with CloudFront's
security headers, everything else passed to the API untouched, and the upload bucket's CORS rule pointed at the
local page's origin instead of the CloudFront one (which does not exist locally)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from werkzeug.test import Client
from werkzeug.wrappers import Response

from dashboards.web import LOCAL_PATH, OUTPUT_KEY, PAGE_FILES
from localaws.moto_process import MotoProcess, MotoStartError
from localaws.web import PageServer, allow_page_origin, page_origins, page_url
from monitoring.target import StackInfo
from pipeline.resources import StackOutputs


def api_stub(environ: dict[str, Any], start_response: Any) -> Any:
    return Response(json.dumps({"api": environ["PATH_INFO"]}), status=418, mimetype="application/json")(
        environ, start_response
    )


def client(stack: StackInfo) -> Client:
    return Client(PageServer(api_stub, stack))


def test_the_page_and_its_config_point_at_this_stack(stack: StackInfo) -> None:
    web = client(stack)

    page = web.get(LOCAL_PATH)
    config = web.get(f"{LOCAL_PATH}config.json", base_url="http://localhost:8123")
    rebound = web.get(f"{LOCAL_PATH}config.json", base_url="http://localhost:8123", headers={"Host": "evil.test:8123"})

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert b'<script type="module" src="app.js">' in page.data
    assert config.json == {
        "apiUrl": "http://localhost:8123",  # the origin the browser used: API calls stay same-origin
        "cognitoEndpoint": f"{stack.endpoint_url}/",
        "userPoolClientId": stack.user_pool_client_id,
        "region": stack.region,
    }
    assert (rebound.json or {}).get("apiUrl") == "http://127.0.0.1:8123"  # another name for this server: not believed
    for name, media_type in PAGE_FILES.items():
        answer = web.get(f"{LOCAL_PATH}{name}")
        assert (answer.status_code, answer.headers["Content-Type"]) == (200, media_type)


def test_security_headers_allow_only_this_stacks_endpoints(stack: StackInfo) -> None:
    headers = client(stack).get(LOCAL_PATH).headers

    policy = headers["Content-Security-Policy"]
    assert f"connect-src 'self' {stack.endpoint_url}" in policy
    assert "script-src 'self';" in policy
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_pages_files_are_served_and_everything_else_is_the_apis(stack: StackInfo) -> None:
    web = client(stack)

    assert web.get(LOCAL_PATH.rstrip("/")).headers["Location"] == LOCAL_PATH
    assert web.get(f"{LOCAL_PATH}__init__.py").status_code == 404
    assert web.get(f"{LOCAL_PATH}../pipeline/resources.py").status_code == 404
    assert web.post(f"{LOCAL_PATH}config.json").status_code == 405
    for path in ("/", "/uploads", "/images/x", "/webx"):
        answer = web.get(path)
        assert (answer.status_code, answer.json) == (418, {"api": path})


def test_the_upload_bucket_allows_the_local_page_origin_instead_of_cloudfronts(stack: StackInfo) -> None:
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url)
    [rule] = s3.get_bucket_cors(Bucket=stack.upload_bucket)["CORSRules"]
    assert [origin for origin in rule["AllowedOrigins"] if "<" in origin]  # the distribution's, unresolvable here

    allowed = allow_page_origin(stack, "http://127.0.0.1:8123")

    assert allowed == ["http://127.0.0.1:8123", "http://localhost:8123"]
    [rule] = s3.get_bucket_cors(Bucket=stack.upload_bucket)["CORSRules"]
    assert (rule["AllowedMethods"], rule["AllowedOrigins"]) == (["POST"], allowed)
    preflight = {"Access-Control-Request-Method": "POST"}
    url = f"{stack.endpoint_url}/{stack.upload_bucket}"
    page = requests.options(url, headers={"Origin": "http://127.0.0.1:8123", **preflight}, timeout=5)
    stranger = requests.options(url, headers={"Origin": "http://127.0.0.1:9999", **preflight}, timeout=5)
    assert (page.status_code, stranger.status_code) == (200, 403)


def test_the_page_url_output_is_the_local_apis(stack: StackInfo) -> None:
    cloudformation = boto3.client("cloudformation", endpoint_url=stack.endpoint_url)
    [described] = cloudformation.describe_stacks(StackName=f"{stack.prefix}-pipeline")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}

    assert outputs[OUTPUT_KEY] == page_url(outputs[StackOutputs.API_URL])
    assert outputs[OUTPUT_KEY].endswith(LOCAL_PATH)


@pytest.fixture(scope="module")
def embedded_aws() -> Iterator[MotoProcess]:
    """The local stack's AWS process (moto behind the stack's own middleware), as `imgops local up` starts it."""
    moto = MotoProcess(metrics=False)
    moto.start()
    yield moto
    moto.stop()


COGNITO_PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-amz-target",
}
LIST_POOLS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AWSCognitoIdentityProviderService.ListUserPools",
}


def test_cognitos_preflight_is_answered_for_the_pages_origin_only(embedded_aws: MotoProcess) -> None:
    page, stranger = page_origins("http://127.0.0.1:8123")[0], "http://127.0.0.1:9999"
    embedded_aws.allow_origins(page_origins("http://127.0.0.1:8123"))
    root = f"{embedded_aws.endpoint_url}/"

    allowed = requests.options(root, headers={"Origin": page, **COGNITO_PREFLIGHT}, timeout=5)
    refused = requests.options(root, headers={"Origin": stranger, **COGNITO_PREFLIGHT}, timeout=5)
    other_header = requests.options(
        root, headers={"Origin": page, **COGNITO_PREFLIGHT, "Access-Control-Request-Headers": "x-evil"}, timeout=5
    )

    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == page
    assert allowed.headers["Access-Control-Allow-Methods"] == "POST"
    assert allowed.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-target"
    assert (refused.status_code, other_header.status_code) == (403, 403)
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert refused.text == f"CORS preflight refused: origin {stranger} is not allowed\n"


def test_cognitos_answers_carry_cors_for_the_pages_origin_only(embedded_aws: MotoProcess) -> None:
    page = "http://localhost:8124"
    embedded_aws.allow_origins(page_origins("http://127.0.0.1:8124"))
    root = f"{embedded_aws.endpoint_url}/"
    body = json.dumps({"MaxResults": 1})

    ours = requests.post(root, data=body, headers={"Origin": page, **LIST_POOLS}, timeout=5)
    theirs = requests.post(root, data=body, headers={"Origin": "http://localhost:9999", **LIST_POOLS}, timeout=5)
    sdk = requests.post(root, data=body, headers=LIST_POOLS, timeout=5)  # no Origin: not a browser

    assert (ours.status_code, theirs.status_code, sdk.status_code) == (200, 200, 200)
    assert "UserPools" in ours.json()
    assert ours.headers["Access-Control-Allow-Origin"] == page
    assert "Access-Control-Allow-Origin" not in theirs.headers  # moto's `*` does not leak through
    never_started = MotoProcess(metrics=False)  # no process to answer: a clear error, not a hang
    with pytest.raises(MotoStartError, match="did not take"):
        never_started.allow_origins([page], timeout=0.2)
