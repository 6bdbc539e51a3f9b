"""Real HTTP-level faults for one client: botocore parses an AWS error response as it would from AWS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse

from localaws.faults import error_response


def inject_fault(client: Any, operation: str, *, status: int, code: str) -> Callable[[], None]:
    """Every call of `operation` on `client` fails with `code`; returns the function that heals it."""
    service = client.meta.service_model.service_id.hyphenize()

    def respond(**_: Any) -> AWSResponse:
        return error_response(service, code, status)

    event = f"before-send.{service}.{operation}"
    client.meta.events.register(event, respond)
    return lambda: client.meta.events.unregister(event, respond)
