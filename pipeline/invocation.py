"""One worker invocation's time, and the SDK retries that must fit in it.

botocore's standard retries back off for up to 1 + 2 + 4 + 8 s on one throttled call (pipeline.aws: 4 retries).
That fits one call into the function's timeout, not a batch: under a DynamoDB throttle each claim of a batch took
4-10 s, so a 5-record batch needed ~40 s, the invocation was killed at its timeout part-way, and the records it had
not reached had no attempt, no `last_error` and no item, whichever way the batch was processed (issue #21). So
within an invocation the worker's clients retry only

- while the longest backoff the SDK may choose still ends before the invocation's last `RESERVE_SHARE`: that time
  is kept for trying the rest of the batch once and recording why each record failed;
- until a call of this invocation to the same service failed on a transient error despite its retries (`gave_up`):
  that dependency is not recovering within seconds, so every other call to it fails at its first error, its failure
  is recorded, and the waiting is left to SQS redelivery (the visibility timeout is the backoff). Other services keep
  their retries: one S3 SlowDown says nothing about SNS.

Outside an invocation (no deadline known: the API's handlers, tools) the SDK retries as configured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

RESERVE_SHARE = 0.25  # of the invocation's time: no SDK backoff may reach into it
# botocore's standard retries wait at most min(2 ** (attempt - 1), 20) s before a throttled call's next attempt
# (other errors: a twentieth of that); the bound is the throttle's, whatever the error.
MAX_BACKOFF_SECONDS = 20.0


def longest_backoff(attempts: int) -> float:
    """The longest wait botocore's standard retry mode may choose after `attempts` attempts."""
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


class Invocation:
    """The running invocation of this process (one at a time, as Lambda runs them), read from every thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.deadline: float | None = None  # when the invocation times out, on `clock`'s time
        self._retry_until: float | None = None
        self.gave_up: set[str] = set()  # services (botocore's hyphenized service ids) that gave up this invocation

    @contextlib.contextmanager
    def running(self, remaining_seconds: float | None) -> Iterator[Invocation]:
        """An invocation with `remaining_seconds` before its timeout (None: not known, no bound)."""
        now = self._clock()
        self.gave_up = set()
        if remaining_seconds is None:
            self.deadline = self._retry_until = None
        else:
            self.deadline = now + remaining_seconds
            self._retry_until = self.deadline - RESERVE_SHARE * remaining_seconds
        try:
            yield self
        finally:
            self.deadline = self._retry_until = None
            self.gave_up = set()

    def failed_transiently(self, service: str) -> None:
        """A call to `service` failed on a transient error although the SDK retried it: no more long retries of
        that service's calls this invocation."""
        if self.deadline is not None:
            self.gave_up.add(service)

    def may_retry(self, attempts: int, service: str) -> bool:
        """Whether the SDK may back off and try a failed call to `service` again, after `attempts` attempts."""
        if self._retry_until is None:
            return True
        return service not in self.gave_up and self._clock() + longest_backoff(attempts) <= self._retry_until

    def bound_retries(self, client: Any) -> None:
        """Make `client`'s retries ask `may_retry` first (idempotent). botocore retries only when the first
        answer of a `needs-retry` handler that is not None is a delay; False from the first handler vetoes it."""
        service = client.meta.service_model.service_id.hyphenize()

        def needs_retry(attempts: int, **_: Any) -> bool | None:
            return None if self.may_retry(attempts, service) else False

        client.meta.events.register_first(
            f"needs-retry.{service}", needs_retry, unique_id=f"imgops-invocation-retries-{service}"
        )


# The worker's invocation (pipeline.worker sets it around each batch; its clients' retries consult it).
current = Invocation()
