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


LAST_ERROR_LIMIT = 300  # characters of `last_error` kept on the image item


def describe_failure(exc: BaseException, stage: str, limit: int = LAST_ERROR_LIMIT) -> str:
    """One line for the image item's `last_error` and the logs: the error code first (what `imgops dlq inspect
    --by-error` groups by), then the worker's step and the AWS operation, then the service's own message, e.g.
    `ProvisionedThroughputExceededException: claim (PutItem): The level of configured provisioned throughput…`;
    at most `limit` characters."""
    if isinstance(exc, ClientError):
        code = error_code(exc) or type(exc).__name__
        operation = str(getattr(exc, "operation_name", "") or "")
        message = str(exc.response.get("Error", {}).get("Message", "") or "")
        where = f"{stage} ({operation})" if operation else stage
    else:
        code, message, where = type(exc).__name__, str(exc), stage
    text = " ".join(": ".join(part for part in (code, where, message) if part).split())  # one line
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def failure_class(last_error: str) -> str:
    """The error code `describe_failure` put first: `ProvisionedThroughputExceededException`."""
    return last_error.split(":", 1)[0].strip()
