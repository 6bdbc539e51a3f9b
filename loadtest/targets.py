"""What a load test talks to: the embedded local stack, or a deployed CloudFormation stack."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jwt
import requests

from loadtest.local import state
from loadtest.local.provision import StackInfo, fetch_access_token, local_session
from pipeline.resources import ResourceNames, StackOutputs


class TargetError(RuntimeError):
    pass


def _session(region: str, endpoint_url: str | None) -> boto3.session.Session:
    """The embedded local AWS gets the local stack's dummy credentials; anything else (LocalStack via
    AWS_ENDPOINT_URL, real AWS) the usual credential chain."""
    if endpoint_url is not None and endpoint_url.startswith("http://127.0.0.1:"):
        return local_session(region)
    return boto3.session.Session(region_name=region)


@dataclass
class Target:
    name: str
    api_url: str
    region: str
    endpoint_url: str | None  # None: real AWS
    topic_arn: str
    user_pool_client_id: str
    worker_function: str
    username: str
    password: str
    report_log: Path | None = None  # the local runtime's REPORT lines; AWS: CloudWatch Logs
    static_token: str | None = None  # skips Cognito: only for the harness self-check against a sink
    _token: tuple[float, str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        return _session(self.region, self.endpoint_url).client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def access_token(self) -> str:
        """A Cognito access token, renewed well before its hour runs out."""
        if self.static_token is not None:
            return self.static_token
        with self._lock:
            if self._token is None or time.monotonic() - self._token[0] > 1800:
                result = self.client("cognito-idp").initiate_auth(
                    ClientId=self.user_pool_client_id,
                    AuthFlow="USER_PASSWORD_AUTH",
                    AuthParameters={"USERNAME": self.username, "PASSWORD": self.password},
                )
                self._token = (time.monotonic(), result["AuthenticationResult"]["AccessToken"])
            return self._token[1]

    def user_sub(self) -> str:
        return str(jwt.decode(self.access_token(), options={"verify_signature": False})["sub"])


def local_target(info: StackInfo) -> Target:
    return Target(
        name="local",
        api_url=info.api_url,
        region=info.region,
        endpoint_url=info.endpoint_url,
        topic_arn=info.topic_arn,
        user_pool_client_id=info.user_pool_client_id,
        worker_function=ResourceNames(info.prefix).worker_function,
        username=info.demo_username,
        password=info.demo_password,
        report_log=state.report_log(),
    )


def running_local_stack(state_file: Path | None = None) -> StackInfo | None:
    """The stack `imgops local up` runs, if its state file exists and its endpoints answer."""
    try:
        info = state.read_state(state_file)
    except state.NoLocalStack:
        return None
    try:
        requests.get(info.endpoint_url, timeout=2)
        requests.get(info.api_url, timeout=2)
        fetch_access_token(info)
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return None
    return info


def aws_target(*, stack_name: str, region: str, username: str, password: str) -> Target:
    if not username or not password:
        raise TargetError(
            "--target aws needs Cognito credentials: --username/--password or IMGOPS_USERNAME/IMGOPS_PASSWORD"
        )
    outputs = _stack_outputs(
        stack_name,
        region,
        (StackOutputs.API_URL, StackOutputs.TOPIC_ARN, StackOutputs.USER_POOL_CLIENT_ID, StackOutputs.WORKER_FUNCTION),
    )
    return Target(
        name=f"aws:{stack_name}",
        api_url=outputs[StackOutputs.API_URL].rstrip("/"),
        region=region,
        endpoint_url=None,
        topic_arn=outputs[StackOutputs.TOPIC_ARN],
        user_pool_client_id=outputs[StackOutputs.USER_POOL_CLIENT_ID],
        worker_function=outputs[StackOutputs.WORKER_FUNCTION],
        username=username,
        password=password,
    )


@dataclass(frozen=True)
class Resources:
    """The queues, table and bucket on-call commands act on, local or deployed."""

    region: str
    endpoint_url: str | None
    work_queue_url: str
    dlq_url: str
    images_table: str
    upload_bucket: str

    def client(self, service: str) -> Any:
        return _session(self.region, self.endpoint_url).client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def table(self) -> Any:
        session = _session(self.region, self.endpoint_url)
        return session.resource("dynamodb", endpoint_url=self.endpoint_url).Table(self.images_table)


def resolve_resources(*, stack_name: str | None, region: str, state_file: Path | None = None) -> Resources:
    """`--stack-name` reads a deployed stack's outputs; otherwise the running local stack's state file."""
    if stack_name:
        outputs = _stack_outputs(
            stack_name,
            region,
            (StackOutputs.WORK_QUEUE_URL, StackOutputs.DLQ_URL, StackOutputs.IMAGES_TABLE, StackOutputs.UPLOAD_BUCKET),
        )
        return Resources(
            region=region,
            endpoint_url=None,
            work_queue_url=outputs[StackOutputs.WORK_QUEUE_URL],
            dlq_url=outputs[StackOutputs.DLQ_URL],
            images_table=outputs[StackOutputs.IMAGES_TABLE],
            upload_bucket=outputs[StackOutputs.UPLOAD_BUCKET],
        )
    info = state.read_state(state_file)
    return Resources(
        region=info.region,
        endpoint_url=info.endpoint_url,
        work_queue_url=info.queue_url,
        dlq_url=info.dlq_url,
        images_table=info.images_table,
        upload_bucket=info.upload_bucket,
    )


def _stack_outputs(stack_name: str, region: str, needed: tuple[str, ...]) -> dict[str, str]:
    """The stack's outputs, refusing a stack that lacks any of `needed`."""
    cloudformation = boto3.client("cloudformation", region_name=region)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - botocore's errors carry the useful message
        raise TargetError(f"cannot read stack {stack_name!r} in {region}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [name for name in needed if name not in outputs]
    if missing:
        raise TargetError(f"stack {stack_name!r} lacks outputs {', '.join(missing)}; is it an imgops stack?")
    return outputs
