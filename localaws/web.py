"""The upload page locally: what CloudFront and the page's BucketDeployment do on AWS, in front of the local API.

`PageServer` serves the page's files (dashboards/web) and a `config.json` pointing at this stack under
`dashboards.web.LOCAL_PATH`, with the security headers CloudFront adds; every other request goes on to the local
API unchanged (and unmetered: on AWS the page is CloudFront's traffic, not the API's). The page and the API then
share an origin, so the API needs no CORS locally; Cognito and S3 are moto's, another origin. Cognito's CORS is the
stack's own (localaws/cors.py, allowing `page_origins` only); S3 applies the bucket's CORS rules. The
upload bucket's rule allows the CloudFront page's origin, which does not exist locally: `allow_page_origin`
puts the local page's origin in its place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from dashboards.web import CONFIG_FILE, LOCAL_PATH, PAGE_DIR, PAGE_FILES, PageConfig, content_security_policy
from monitoring.target import StackInfo, for_local

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# What CloudFront's response headers policy adds on AWS (dashboards.constructs.web), less HSTS: this is plain HTTP.
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)
_LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def page_config(info: StackInfo, api_url: str) -> PageConfig:
    """config.json for the local page: the local API, and moto's Cognito (its root answers the IdP's API)."""
    return PageConfig(
        api_url=api_url,
        cognito_endpoint=f"{info.endpoint_url.rstrip('/')}/",
        user_pool_client_id=info.user_pool_client_id,
        region=info.region,
    )


class PageServer:
    """WSGI middleware: GET/HEAD under LOCAL_PATH are the page's, anything else is the API's."""

    def __init__(self, api: WSGIApplication, info: StackInfo) -> None:
        self._api = api
        self._info = info
        self._policy = content_security_policy([info.endpoint_url.rstrip("/")])

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == LOCAL_PATH.rstrip("/"):
            return _answer(start_response, "301 Moved Permanently", b"", [("Location", LOCAL_PATH)])
        if not path.startswith(LOCAL_PATH):
            return self._api(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"", [("Allow", "GET, HEAD")])
        name = path.removeprefix(LOCAL_PATH) or "index.html"
        if name == CONFIG_FILE:
            body = json.dumps(page_config(self._info, _own_url(environ)).as_json()).encode()
            media_type = "application/json"
        elif name in PAGE_FILES:  # only the page's own files: no path ever reaches the file system
            body = (PAGE_DIR / name).read_bytes()  # read per request: an edited page shows on reload
            media_type = PAGE_FILES[name]
        else:
            return _answer(start_response, "404 Not Found", b"not found\n", [("Content-Type", "text/plain")])
        headers = [("Content-Type", media_type), ("Content-Security-Policy", self._policy), *_SECURITY_HEADERS]
        return _answer(start_response, "200 OK", b"" if environ["REQUEST_METHOD"] == "HEAD" else body, headers)


def _own_url(environ: WSGIEnvironment) -> str:
    """This server as the browser reached it (127.0.0.1 or localhost), so the page's API calls stay same-origin.
    Any other Host (a rebound DNS name) is not trusted: the page then talks to the server's own address."""
    port = environ["SERVER_PORT"]
    host = str(environ.get("HTTP_HOST") or "")
    if host not in {f"{name}:{port}" for name in _LOOPBACK_NAMES}:
        host = f"127.0.0.1:{port}"
    return f"http://{host}"


def _answer(start_response: StartResponse, status: str, body: bytes, headers: list[tuple[str, str]]) -> Iterable[bytes]:
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [body]


def page_url(api_url: str) -> str:
    return f"{api_url.rstrip('/')}{LOCAL_PATH}"


def page_origins(api_url: str) -> list[str]:
    """The origins a browser may show the local page from: the API's port by either loopback name."""
    port = api_url.rstrip("/").rsplit(":", 1)[-1]
    return [f"http://{name}:{port}" for name in _LOOPBACK_NAMES]


def allow_page_origin(info: StackInfo, api_url: str) -> list[str]:
    """In the upload bucket's CORS rules, the CloudFront page's origin (a token the local stack cannot resolve:
    a `<…>` placeholder) becomes the local page's, by either loopback name. Returns the origins now allowed."""
    s3 = for_local(info).client("s3")
    try:
        rules: list[dict[str, Any]] = s3.get_bucket_cors(Bucket=info.upload_bucket)["CORSRules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
            return []
        raise
    local = page_origins(api_url)
    for rule in rules:
        origins = rule.get("AllowedOrigins", [])
        if any("<" in origin for origin in origins):
            rule["AllowedOrigins"] = [o for o in origins if "<" not in o] + local
    s3.put_bucket_cors(Bucket=info.upload_bucket, CORSConfiguration={"CORSRules": rules})
    return sorted({origin for rule in rules for origin in rule.get("AllowedOrigins", [])})
