"""The upload page: static files with no build step, deployed by the CDK app and served by the local API.

Both read the files from this folder and write the page's `config.json` from `PageConfig`, so the deployed page
and the local one differ only in where it points. Nothing here imports aws_cdk: the local stack uses this module
and must not start the jsii runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parent
# What the page is made of, with the media types the local API serves them with (S3 infers the same on deploy).
PAGE_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CONFIG_FILE = "config.json"
# The local API serves the page under this path (API Gateway routes nothing there); CloudFront at its root.
LOCAL_PATH = "/web/"
# The stack output with the page's URL; not in pipeline.resources.StackOutputs, which lists what the load test reads.
OUTPUT_KEY = "WebPageUrl"


@dataclass(frozen=True)
class PageConfig:
    """What `config.json` tells the page; values may be CDK tokens when the CDK app builds it."""

    api_url: str
    cognito_endpoint: str
    user_pool_client_id: str
    region: str

    def as_json(self) -> dict[str, str]:
        return {
            "apiUrl": self.api_url,
            "cognitoEndpoint": self.cognito_endpoint,
            "userPoolClientId": self.user_pool_client_id,
            "region": self.region,
        }


def cognito_endpoint(region: str) -> str:
    """Cognito's user-pool API, which answers browsers' CORS requests from any origin."""
    return f"https://cognito-idp.{region}.amazonaws.com/"


def content_security_policy(remote: Sequence[str]) -> str:
    """Only this page's own files run; it talks to (and shows images from) `remote` origins alone: the API,
    Cognito and S3 (presigned POST, presigned thumbnail GETs). No inline script or style is needed."""
    origins = " ".join(["'self'", *remote])
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src {origins}",
            f"img-src {origins}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
