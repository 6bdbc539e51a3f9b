"""What a load test talks to: a stack (`monitoring.target.Target`) plus the Cognito user who uploads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from monitoring.target import Target, TargetError, deployed_target


@dataclass
class LoadTarget:
    """The stack and the signed-in user; tokens are renewed well before their hour runs out."""

    stack: Target
    username: str
    password: str
    static_token: str | None = None  # skips Cognito: only for the harness self-check against a sink
    _token: tuple[float, str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.stack.name

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def topic_arn(self) -> str:
        return self.stack.topic_arn

    @property
    def worker_function(self) -> str:
        return self.stack.worker_function

    @property
    def report_log(self) -> Path | None:
        return self.stack.report_log

    def client(self, service: str) -> Any:
        return self.stack.client(service)

    def access_token(self) -> str:
        if self.static_token is not None:
            return self.static_token
        with self._lock:
            if self._token is None or time.monotonic() - self._token[0] > 1800:
                self._token = (time.monotonic(), self.stack.sign_in(self.username, self.password))
            return self._token[1]

    def user_sub(self) -> str:
        return str(jwt.decode(self.access_token(), options={"verify_signature": False})["sub"])


def aws_load_target(*, stack_name: str, region: str, username: str, password: str) -> LoadTarget:
    if not username or not password:
        raise TargetError(
            "--target aws needs Cognito credentials: --username/--password or IMGOPS_USERNAME/IMGOPS_PASSWORD"
        )
    return LoadTarget(deployed_target(stack_name, region), username, password)


def sink_target(url: str) -> LoadTarget:
    """The harness self-check's target: a do-nothing loopback sink standing in for API and S3."""
    stack = Target(
        name="sink",
        region="us-east-1",
        endpoint_url=url,
        local=True,
        prefix="sink",
        api_url=url,
        upload_bucket="",
        processed_bucket="",
        work_queue_url="",
        dlq_url="",
        images_table="",
        topic_arn="",
        user_pool_id="",
        user_pool_client_id="",
        worker_function="",
    )
    return LoadTarget(stack, "", "", static_token="selfcheck")  # noqa: S106 - the sink checks nothing
