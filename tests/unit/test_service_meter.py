"""ServiceMeter serves DynamoDB one request at a time (moto's DynamoDB is not thread-safe) and nothing else."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest

from localaws.moto_process import DYNAMODB_TARGET_PREFIX, ServiceMeter


class Overlap:
    """A WSGI app that takes 50 ms per request and records how many it served at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self._lock:
            self.now -= 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return iter([b"{", b"}"])  # an iterator, as a streaming app answers: read whole inside the lock


def serve_at_once(meter: ServiceMeter, environ: dict[str, Any], requests: int = 4) -> list[bytes]:
    answers: list[bytes] = []

    def one() -> None:
        answers.append(b"".join(meter(dict(environ), lambda *args: None)))

    threads = [threading.Thread(target=one) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.parametrize("operation", ["GetItem", "UpdateItem", "Query"])
def test_dynamodb_requests_are_served_one_at_a_time(operation: str) -> None:
    app = Overlap()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_X_AMZ_TARGET": DYNAMODB_TARGET_PREFIX + operation}
    answers = serve_at_once(ServiceMeter(app, None), environ)
    assert (app.most, answers) == (1, [b"{}"] * 4)


def test_other_services_are_served_side_by_side() -> None:
    """An S3 upload or an SQS long poll (up to 20 s) must not wait for another."""
    app = Overlap()
    serve_at_once(ServiceMeter(app, None), {"REQUEST_METHOD": "PUT", "PATH_INFO": "/bucket/key"})
    assert app.most > 1
