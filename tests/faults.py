"""Real HTTP-level faults: botocore receives an AWS error response and parses it as it would from AWS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_body(protocol: str, code: str) -> tuple[bytes, dict[str, str]]:
    if protocol in {"json", "rest-json"}:
        return f'{{"__type":"{code}","message":"injected fault"}}'.encode(), {"x-amzn-errortype": code}
    if protocol == "rest-xml":
        return f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>".encode(), {}
    error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>injected fault</Message></Error>"
    return f"<ErrorResponse>{error}</ErrorResponse>".encode(), {}


def inject_fault(client: Any, operation: str, *, status: int, code: str) -> Callable[[], None]:
    """Every call of `operation` on `client` fails with `code`; returns the function that heals it."""
    service = client.meta.service_model.endpoint_prefix
    body, headers = error_body(client.meta.service_model.protocol, code)

    def respond(**_: Any) -> AWSResponse:
        return AWSResponse(f"https://{service}.fault.local", status, HTTPHeaders.from_dict(headers), _Raw(body))

    event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(event, respond)
    return lambda: client.meta.events.unregister(event, respond)
