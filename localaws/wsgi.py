"""What the embedded AWS's WSGI layers (moto_process.ServiceMeter, cloudformation.DescribedStacks, cors.CognitoCors)
share: the types, which service and region a request is signed for, and reading a body moto must read again."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/")


def credential_scope(environ: Mapping[str, Any]) -> tuple[str, str] | None:
    """(region, service) of a SigV4-signed request's credential scope; None for an unsigned one."""
    scope = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return None if scope is None else (scope.group("region"), scope.group("service"))


def body_length(environ: Mapping[str, Any]) -> int:
    """CONTENT_LENGTH, 0 when absent or not a number."""
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, put back for the app behind to read again."""
    body: bytes = environ["wsgi.input"].read(body_length(environ))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def form_fields(body: bytes) -> dict[str, str]:
    """A query-protocol body (`Action=…&…`): each field's last value."""
    return {key: values[-1] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}


def read_whole(result: Iterable[bytes]) -> bytes:
    """An app's answer read to the end, and closed as WSGI requires."""
    try:
        return b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
