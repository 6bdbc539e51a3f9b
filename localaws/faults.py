"""Fault injection for the local stack: AWS errors, throttling and worker crashes, switched on and off live.

Rules live in a small JSON file (`imgops faults set …` writes it); every worker process re-reads it when it
changes. A matching call gets a real AWS error response, which botocore parses as it would from AWS, so the
worker sees exactly what throttling or a 5xx looks like. `SIGKILL` as the code kills the worker process at
that call, mid-batch, as an out-of-memory kill or a host failure would.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders

from pipeline.errors import ImgopsError
from pipeline.files import write_atomically

FAULTS_FILE_ENV = "IMGOPS_FAULTS_FILE"
KILL = "SIGKILL"
# `DELAY<seconds>` as the code: the call waits that long, then goes through (a slow dependency).
DELAY = "DELAY"

# The status AWS answers each error code with; anything else is a 500.
_STATUS = {
    "ThrottlingException": 400,
    "Throttling": 400,
    "ProvisionedThroughputExceededException": 400,
    "RequestLimitExceeded": 400,
    "SlowDown": 503,
    "ServiceUnavailable": 503,
    "InternalError": 500,
    "InternalServerError": 500,
}


class FaultSpecError(ImgopsError, ValueError):
    pass


@dataclass(frozen=True)
class FaultRule:
    service: str  # botocore's hyphenated service id: s3, dynamodb, sns, sqs
    operation: str  # PutObject, PutItem, Publish … or * for all
    rate: float  # 0..1: the share of matching calls that fail
    code: str  # AWS error code, or SIGKILL

    def matches(self, service: str, operation: str) -> bool:
        return self.service == service and self.operation in ("*", operation)


def parse_rules(text: str) -> list[FaultRule]:
    """`dynamodb:PutItem=0.2:ProvisionedThroughputExceededException,s3:PutObject=0.01:SIGKILL`."""
    rules = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        target, sep, effect = part.partition("=")
        service, colon, operation = target.partition(":")
        rate_text, colon2, code = effect.partition(":")
        if not (sep and colon and colon2 and service and operation and code):
            raise FaultSpecError(f"fault {part!r}: expected SERVICE:OPERATION=RATE:CODE, e.g. sns:Publish=1:Throttling")
        try:
            rate = float(rate_text)
        except ValueError:
            raise FaultSpecError(f"fault {part!r}: rate {rate_text!r} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise FaultSpecError(f"fault {part!r}: rate must be between 0 and 1")
        if code.strip().startswith(DELAY) and _delay_seconds(code.strip()) is None:
            raise FaultSpecError(f"fault {part!r}: a delay is DELAY<seconds>, e.g. DELAY2.5")
        rules.append(FaultRule(service.strip().lower(), operation.strip(), rate, code.strip()))
    return rules


def _delay_seconds(code: str) -> float | None:
    try:
        seconds = float(code.removeprefix(DELAY))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 900 else None


def error_body(protocol: str, code: str) -> tuple[bytes, dict[str, str]]:
    """An AWS error response body in the service's wire protocol."""
    if protocol in {"json", "rest-json"}:
        return f'{{"__type":"{code}","message":"injected fault"}}'.encode(), {"x-amzn-errortype": code}
    if protocol == "rest-xml":
        return f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>".encode(), {}
    error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>injected fault</Message></Error>"
    return f"<ErrorResponse>{error}</ErrorResponse>".encode(), {}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@functools.cache
def _protocol(service: str) -> str:
    try:
        return str(botocore.session.get_session().get_service_model(service).protocol)
    except botocore.exceptions.UnknownServiceError:
        return "json"


def error_response(service: str, code: str, status: int | None = None) -> AWSResponse:
    """What AWS would answer: `code` in `service`'s wire protocol, with the status AWS uses for it."""
    body, headers = error_body(_protocol(service), code)
    return AWSResponse(
        f"https://{service}.fault.local", status or _STATUS.get(code, 500), HTTPHeaders.from_dict(headers), _Raw(body)
    )


def write_rules(path: Path, rules: list[FaultRule]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps([asdict(rule) for rule in rules]))


def read_rules(path: Path) -> list[FaultRule]:
    try:
        return [FaultRule(**rule) for rule in json.loads(path.read_text(encoding="utf-8"))]
    except (FileNotFoundError, ValueError, TypeError):
        return []


class FaultInjector:
    """A botocore `before-send` hook that consults the rules file (re-read when it changes)."""

    def __init__(self, path: Path, rng: random.Random | None = None) -> None:
        self._path = path
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._rules: list[FaultRule] = []
        self.injected = 0

    def rules(self) -> list[FaultRule]:
        try:
            stamp = self._path.stat().st_mtime
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._stamp, self._rules = stamp, read_rules(self._path) if stamp else []
            return self._rules

    def __call__(self, event_name: str, **_: Any) -> AWSResponse | None:
        service, operation = event_name.split(".", 2)[1:]
        for rule in self.rules():
            if rule.matches(service, operation) and self._rng.random() < rule.rate:
                if rule.code == KILL:
                    os.kill(os.getpid(), signal.SIGKILL)
                self.injected += 1
                if rule.code.startswith(DELAY):
                    time.sleep(_delay_seconds(rule.code) or 0.0)
                    return None
                return error_response(service, rule.code)
        return None

    def install(self, events: Any) -> FaultInjector:
        """Register on a botocore event system (a session's or a client's)."""
        events.register("before-send", self)
        return self


def install_from_environment() -> FaultInjector | None:
    """In a worker process: hook boto3's default session when the local stack named a faults file (and add the
    simulated request latency, when one is set)."""
    path = os.environ.get(FAULTS_FILE_ENV)
    if not path:
        install_latency_from_environment()
        return None
    import boto3

    boto3.setup_default_session()  # every client the handlers create later comes from this session
    assert boto3.DEFAULT_SESSION is not None
    install_latency_from_environment()
    return FaultInjector(Path(path)).install(boto3.DEFAULT_SESSION.events)


# Milliseconds every AWS request of the process waits before it is sent (`imgops bench batch --latency`): the
# embedded AWS answers in a millisecond or two, AWS's S3 takes ~20-50 ms to a first byte. A sleep, not CPU work.
# `30` delays every request; `s3=30,dynamodb=8,sns=20` each service's (others: none).
LATENCY_ENV = "IMGOPS_LATENCY_MS"


def parse_latency(text: str) -> dict[str, float]:
    """`30` → {"*": 30.0}; `s3=30,dynamodb=8` → {"s3": 30.0, "dynamodb": 8.0} (botocore's hyphenated service ids)."""
    latencies: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        service, sep, value = part.rpartition("=")
        try:
            milliseconds = float(value)
        except ValueError:
            raise FaultSpecError(f"latency {part!r}: expected MS or SERVICE=MS, e.g. 30 or s3=30") from None
        if milliseconds < 0:
            raise FaultSpecError(f"latency {part!r} is negative")
        latencies[service.strip().lower() if sep else "*"] = milliseconds
    return latencies


def install_latency_from_environment() -> dict[str, float]:
    """Hook boto3's default session (made here if there is none) to wait before each request as IMGOPS_LATENCY_MS
    says."""
    latencies = parse_latency(os.environ.get(LATENCY_ENV, ""))
    if not any(latencies.values()):
        return {}
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None

    def wait(event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        delay = latencies.get(service, latencies.get("*", 0.0))
        if delay:
            time.sleep(delay / 1000)

    boto3.DEFAULT_SESSION.events.register("before-send", wait)
    return latencies
