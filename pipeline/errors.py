"""The project's error base class, and which failures deserve a retry (the worker's permanent/transient split)."""

from __future__ import annotations

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, ReadTimeoutError


class ImgopsError(Exception):
    """A failure an operator can act on: a tool's boundary (the CLI) prints its message as one line."""


_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "KMSThrottlingException",
        "TransactionInProgressException",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True for throttling, timeouts and 5xx: the same request may succeed later."""
    if isinstance(exc, ConnectionError | HTTPClientError | ReadTimeoutError | TimeoutError):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or status >= 500 or status == 429
    return False


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
