"""CORS for the embedded Cognito, owned by the local stack rather than left to how a moto release routes it.

The upload page signs in by POSTing InitiateAuth to Cognito's endpoint, the server's root (`/`), from another origin,
so the browser first sends a preflight `OPTIONS /`. moto's answer to that depends on its version (5.2.5 answers 200
with flask-cors' `*`; 5.2.6 routes it to S3's ListBuckets and fails with HTTP 500), so `CognitoCors` answers it
itself, for the origins the stack allows (the local page's, `allow`), and gives the real answer the matching
`Access-Control-Allow-Origin`. Any other origin gets no CORS headers, as the page on AWS gets none from a service
that does not allow it. S3's own CORS (bucket rules, `OPTIONS /<bucket>/…`) is left to moto, which applies the
upload bucket's rules as S3 does. Requests without an `Origin` (the SDKs) pass through untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

ROOT_PATH = "/"  # Cognito's (and every JSON-protocol AWS service's) endpoint
ALLOWED_METHODS = ("POST",)
# What a browser's Cognito call sends besides the CORS-safelisted headers (the AWS SDK for JavaScript: the last 3).
ALLOWED_HEADERS = ("content-type", "x-amz-target", "x-amz-user-agent", "amz-sdk-invocation-id", "amz-sdk-request")
MAX_AGE_SECONDS = 300


class CognitoCors:
    """WSGI middleware: preflights to `/` answered here; answers to `/` carry CORS headers for allowed origins only."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._origins: frozenset[str] = frozenset()

    def allow(self, origins: Iterable[str]) -> None:
        """Replace the allowed origins (scheme://host:port, as a browser sends `Origin`)."""
        cleaned = frozenset(origin.rstrip("/") for origin in origins)
        with self._lock:
            self._origins = cleaned

    @property
    def origins(self) -> frozenset[str]:
        with self._lock:
            return self._origins

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or environ.get("PATH_INFO", "") != ROOT_PATH:
            return self._app(environ, start_response)
        allowed = origin in self.origins
        if environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
            return self._preflight(environ, origin, allowed, start_response)

        def with_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
            kept += _cors_headers(origin) if allowed else []
            return start_response(status, kept, exc_info) if exc_info else start_response(status, kept)

        return self._app(environ, with_cors)

    @staticmethod
    def _preflight(
        environ: dict[str, Any], origin: str, allowed: bool, start_response: StartResponse
    ) -> Iterable[bytes]:
        method = str(environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]).upper()
        requested = [
            header.strip().lower()
            for header in str(environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")).split(",")
            if header.strip()
        ]
        refused = [header for header in requested if header not in ALLOWED_HEADERS]
        if not allowed or method not in ALLOWED_METHODS or refused:
            reason = (
                f"origin {origin} is not allowed"
                if not allowed
                else f"method {method} is not allowed"
                if method not in ALLOWED_METHODS
                else f"headers not allowed: {', '.join(refused)}"
            )
            body = f"CORS preflight refused: {reason}\n".encode()
            start_response(
                "403 Forbidden",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("Vary", "Origin")],
            )
            return [body]
        headers = [
            *_cors_headers(origin),
            ("Access-Control-Allow-Methods", ", ".join(ALLOWED_METHODS)),
            ("Access-Control-Allow-Headers", ", ".join(requested or ALLOWED_HEADERS[:2])),
            ("Access-Control-Max-Age", str(MAX_AGE_SECONDS)),
            ("Content-Length", "0"),
        ]
        start_response("204 No Content", headers)
        return [b""]


def _cors_headers(origin: str) -> list[tuple[str, str]]:
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Expose-Headers", "x-amzn-requestid"),
        ("Vary", "Origin"),
    ]
