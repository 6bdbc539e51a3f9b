"""CloudFormation's DescribeStacks for the stacks the local AWS built, answered by the stack itself.

`--stack-name <prefix>-pipeline` finds a local stack as it finds a deployed one: through DescribeStacks and the
stack's outputs (monitoring.target). moto's CloudFormation could hold such a stack, but using it at all imports
moto's CloudFormation, which imports nearly every other moto service (EC2 with its AMI and instance-type tables,
Auto Scaling, API Gateway with its OpenAPI validator...): 1.45 s of CPU to import alone, and 0.7 s of the moto
process's CPU in a stack's start (2.6 s → 1.9 s measured there). `DescribedStacks` answers DescribeStacks for
the stacks the parent publishes (`MotoProcess.publish_stack`) in CloudFormation's own XML, which botocore parses as
it parses AWS's; every other CloudFormation call, and a DescribeStacks for another stack, goes on to moto unchanged.
"""

from __future__ import annotations

import io
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_CLOUDFORMATION_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/cloudformation/")
_MAX_FORM_BYTES = 64 * 1024  # a DescribeStacks is a few hundred bytes; a larger body is not one
ACCOUNT = "123456789012"  # moto's default account, which every ARN of the local stack carries


@dataclass(frozen=True)
class DescribedStack:
    name: str
    region: str
    description: str
    outputs: Mapping[str, str]
    created: str
    stack_id: str

    @classmethod
    def create(cls, name: str, region: str, description: str, outputs: Mapping[str, str]) -> DescribedStack:
        return cls(
            name=name,
            region=region,
            description=description,
            outputs=dict(outputs),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            stack_id=f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{name}/{uuid.uuid4()}",
        )

    def member(self) -> str:
        outputs = "".join(
            f"<member><OutputKey>{escape(key)}</OutputKey><OutputValue>{escape(value)}</OutputValue></member>"
            for key, value in self.outputs.items()
        )
        return (
            f"<member><StackName>{escape(self.name)}</StackName><StackId>{escape(self.stack_id)}</StackId>"
            f"<Description>{escape(self.description)}</Description><CreationTime>{self.created}</CreationTime>"
            f"<StackStatus>CREATE_COMPLETE</StackStatus><Outputs>{outputs}</Outputs></member>"
        )


def describe_stacks_xml(stacks: Iterable[DescribedStack]) -> bytes:
    members = "".join(stack.member() for stack in stacks)
    return (
        '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        f"<DescribeStacksResult><Stacks>{members}</Stacks></DescribeStacksResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></DescribeStacksResponse>"
    ).encode()


class DescribedStacks:
    """WSGI middleware: DescribeStacks for the published stacks; everything else to the app behind it."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._stacks: dict[tuple[str, str], DescribedStack] = {}  # (region, name) → stack

    def publish(self, stack: DescribedStack) -> None:
        with self._lock:
            self._stacks[(stack.region, stack.name)] = stack

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        scope = _CLOUDFORMATION_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
        if scope is None or environ.get("REQUEST_METHOD") != "POST":
            return self._app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self._app(environ, start_response)
        if not 0 < length <= _MAX_FORM_BYTES:
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again if the call goes on
        form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("Action") != "DescribeStacks":
            return self._app(environ, start_response)
        region = scope.group("region")
        with self._lock:
            name = form.get("StackName")
            if name is None:  # every stack: ours (moto holds none of the local stack's)
                found = [stack for (where, _), stack in self._stacks.items() if where == region]
            else:
                found = [
                    stack
                    for (where, _), stack in self._stacks.items()
                    if where == region and name in (stack.name, stack.stack_id)
                ]
        if name is not None and not found:
            return self._app(environ, start_response)  # moto's answer (a ValidationError) for an unknown stack
        answer = describe_stacks_xml(found)
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))])
        return [answer]
