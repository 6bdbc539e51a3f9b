"""One way to reach an imgops stack: the running local stack, or a deployed CloudFormation stack.

Every tool that talks to a stack (on-call commands, the load test, sizing, rendering, the drills) gets its
sessions and clients from a `Target`; nothing else builds them. A local target always uses the embedded AWS's
dummy credentials, so real ones are never sent to it; a deployed target uses the normal credential chain (and
`AWS_ENDPOINT_URL`, which boto3 honours, for LocalStack and the like).

The running local stack describes itself in a state file (`StackInfo`), which `imgops local up` writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws import new_session
from pipeline.errors import ImgopsError
from pipeline.files import write_atomically
from pipeline.resources import Env, ResourceNames, StackOutputs

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

STATE_DIR_ENV = "IMGOPS_STATE_DIR"
DEFAULT_REGION = "us-east-1"
# The embedded AWS accepts any credentials; fixed dummies guarantee real ones are never sent to it.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "imgops-local", "AWS_SECRET_ACCESS_KEY": "imgops-local"}


class TargetError(ImgopsError, RuntimeError):
    """The stack cannot be reached or is not an imgops stack."""


class NoLocalStack(TargetError):
    """No local stack runs where the state file says."""


def client_config() -> Config:
    return Config(retries={"max_attempts": 4, "mode": "standard"})


# --- The local stack's state file --------------------------------------------------------------------------


@dataclass(frozen=True)
class StackInfo:
    """Everything a client of a running local stack needs; also the local state file's content."""

    endpoint_url: str
    region: str
    prefix: str
    upload_bucket: str
    processed_bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    images_table: str
    topic_arn: str
    user_pool_id: str
    user_pool_client_id: str
    issuer: str
    jwks_url: str
    demo_username: str
    demo_password: str
    demo_sub: str
    api_url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})

    def handler_environment(self) -> dict[str, str]:
        """What the CDK app sets on the functions, pointed at this stack."""
        return for_local(self).handler_environment()


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".imgops"


def state_file() -> Path:
    return state_dir() / "local-stack.json"


def report_log() -> Path:
    """The local runtime's REPORT lines (on AWS: the worker's CloudWatch Logs group)."""
    return state_dir() / "worker-reports.log"


def faults_file() -> Path:
    """The fault rules the local stack's workers follow (see localaws.faults)."""
    return state_dir() / "faults.json"


def write_state(info: StackInfo) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, info.to_json())  # readers never see half a file


def clear_state() -> None:
    state_file().unlink(missing_ok=True)


def read_state(path: Path | None = None) -> StackInfo:
    """The state file as written; says nothing about whether the stack still runs (see `running_stack`)."""
    path = path or state_file()
    try:
        return StackInfo.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoLocalStack(f"no local stack is running ({path} not found); start one with `imgops local up`") from None
    except (ValueError, TypeError) as exc:
        raise NoLocalStack(f"{path} is not a local stack state file: {exc}") from None


def running_stack(path: Path | None = None) -> StackInfo:
    """The local stack of the state file, checked to answer: a stale file (the stack was killed) is an error."""
    path = path or state_file()
    info = read_state(path)
    try:
        # A path the embedded AWS answers itself (localaws.moto_process.HEALTH_PATH), not an AWS request
        # (its `/` is S3 ListBuckets); any answer means it runs.
        requests.get(f"{info.endpoint_url.rstrip('/')}/_imgops/health", timeout=2)
    except requests.RequestException:
        raise NoLocalStack(
            f"the local stack in {path} is not running (nothing answers at {info.endpoint_url}); "
            "start one with `imgops local up`"
        ) from None
    return info


def local_session(region: str) -> boto3.session.Session:
    """A session for the embedded AWS: its dummy credentials, whatever the shell exports."""
    return new_session(
        region_name=region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


# --- Targets -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A stack's endpoints and physical names, and the only place sessions and clients come from."""

    name: str  # "local" or "aws:<stack name>"
    region: str
    endpoint_url: str | None  # None: the SDK's default (real AWS, or AWS_ENDPOINT_URL)
    local: bool  # the embedded AWS: dummy credentials, no SQS message-move task
    prefix: str
    api_url: str
    upload_bucket: str
    processed_bucket: str
    work_queue_url: str
    dlq_url: str
    images_table: str
    topic_arn: str
    user_pool_id: str
    user_pool_client_id: str
    worker_function: str
    report_log: Path | None = None  # the local runtime's REPORT lines; deployed: CloudWatch Logs

    def handler_environment(self) -> dict[str, str]:
        """What the CDK app sets on the functions, pointed at this stack (plus its endpoint, if any)."""
        environment = {
            Env.UPLOAD_BUCKET: self.upload_bucket,
            Env.PROCESSED_BUCKET: self.processed_bucket,
            Env.IMAGES_TABLE: self.images_table,
            Env.TOPIC_ARN: self.topic_arn,
            "AWS_DEFAULT_REGION": self.region,
        }
        if self.endpoint_url is not None:
            environment["AWS_ENDPOINT_URL"] = self.endpoint_url
        return environment

    def session(self) -> boto3.session.Session:
        if self.local:
            return local_session(self.region)
        return new_session(region_name=self.region)

    def client(self, service: str, *, config: Config | None = None) -> Any:
        return self.session().client(  # type: ignore[call-overload]
            service, endpoint_url=self.endpoint_url, config=config or client_config()
        )

    def table(self) -> Any:
        """The images table as a boto3 resource (what `pipeline.store` takes)."""
        resource = self.session().resource("dynamodb", endpoint_url=self.endpoint_url, config=client_config())
        return resource.Table(self.images_table)

    def sign_in(self, username: str, password: str) -> str:
        """A Cognito access token for the user (USER_PASSWORD_AUTH against the stack's app client)."""
        try:
            result = self.client("cognito-idp").initiate_auth(
                ClientId=self.user_pool_client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
        except ClientError as exc:
            raise TargetError(f"cannot sign in {username!r} on {self.name}: {exc}") from None
        return str(result["AuthenticationResult"]["AccessToken"])


def sdk_client(service: str, region: str = DEFAULT_REGION, *, config: Config | None = None) -> Any:
    """A client for resources named outright (no stack): the normal credential chain and AWS_ENDPOINT_URL."""
    session = new_session(region_name=region)
    return session.client(service, config=config or client_config())  # type: ignore[call-overload]


def for_local(info: StackInfo) -> Target:
    return Target(
        name="local",
        region=info.region,
        endpoint_url=info.endpoint_url,
        local=True,
        prefix=info.prefix,
        api_url=info.api_url,
        upload_bucket=info.upload_bucket,
        processed_bucket=info.processed_bucket,
        work_queue_url=info.queue_url,
        dlq_url=info.dlq_url,
        images_table=info.images_table,
        topic_arn=info.topic_arn,
        user_pool_id=info.user_pool_id,
        user_pool_client_id=info.user_pool_client_id,
        worker_function=ResourceNames(info.prefix).worker_function,
        report_log=report_log(),
    )


def local_target(state: Path | None = None) -> Target:
    """The running local stack (an error if none runs), found the way a deployed one is: by the outputs of its
    CloudFormation stack `<prefix>-pipeline`, on the endpoint the state file names. Its REPORT lines are read
    from the local runtime's file, the quickest way; `--stack-name` reads them from CloudWatch Logs instead."""
    info = running_stack(state)
    target = deployed_target(f"{info.prefix}-pipeline", info.region, endpoint_url=info.endpoint_url)
    return replace(target, name="local", report_log=report_log())


def embedded_endpoint(endpoint_url: str | None) -> bool:
    """Whether `endpoint_url` is the running local stack's embedded AWS (moto): dummy credentials, no
    SQS message-move task, alarms that only imgops evaluates."""
    if not endpoint_url:
        return False
    try:
        return read_state().endpoint_url.rstrip("/") == endpoint_url.rstrip("/")
    except NoLocalStack:
        return False


def deployed_target(stack_name: str, region: str = DEFAULT_REGION, *, endpoint_url: str | None = None) -> Target:
    """A stack by its CloudFormation outputs (see `pipeline.resources.StackOutputs`): on AWS, on
    `AWS_ENDPOINT_URL` (LocalStack, or the local stack's embedded AWS), or on `endpoint_url`."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    local = embedded_endpoint(endpoint)
    session = local_session(region) if local else new_session(region_name=region)
    cloudformation = session.client("cloudformation", endpoint_url=endpoint, config=client_config())
    outputs = stack_outputs(cloudformation, stack_name, region)
    return Target(
        name=f"aws:{stack_name}",
        region=region,
        endpoint_url=endpoint if local else endpoint_url,
        local=local,
        prefix=stack_name.removesuffix("-pipeline"),
        api_url=outputs[StackOutputs.API_URL].rstrip("/"),
        upload_bucket=outputs[StackOutputs.UPLOAD_BUCKET],
        processed_bucket=outputs[StackOutputs.PROCESSED_BUCKET],
        work_queue_url=outputs[StackOutputs.WORK_QUEUE_URL],
        dlq_url=outputs[StackOutputs.DLQ_URL],
        images_table=outputs[StackOutputs.IMAGES_TABLE],
        topic_arn=outputs[StackOutputs.TOPIC_ARN],
        user_pool_id=outputs[StackOutputs.USER_POOL_ID],
        user_pool_client_id=outputs[StackOutputs.USER_POOL_CLIENT_ID],
        worker_function=outputs[StackOutputs.WORKER_FUNCTION],
    )


def resolve_target(*, stack_name: str | None, region: str = DEFAULT_REGION, state: Path | None = None) -> Target:
    """`--stack-name` names a deployed stack; without it, the running local stack."""
    if stack_name:
        return deployed_target(stack_name, region)
    return local_target(state)


_NEEDED_OUTPUTS = (
    StackOutputs.API_URL,
    StackOutputs.UPLOAD_BUCKET,
    StackOutputs.PROCESSED_BUCKET,
    StackOutputs.WORK_QUEUE_URL,
    StackOutputs.DLQ_URL,
    StackOutputs.IMAGES_TABLE,
    StackOutputs.TOPIC_ARN,
    StackOutputs.USER_POOL_ID,
    StackOutputs.USER_POOL_CLIENT_ID,
    StackOutputs.WORKER_FUNCTION,
)


def stack_outputs(cloudformation: CloudFormationClient, stack_name: str, region: str) -> dict[str, str]:
    """The stack's outputs, refusing a stack that lacks any the tools read."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise TargetError(f"cannot read stack {stack_name!r} in {region}: {exc}") from None
    outputs = {o.get("OutputKey", ""): o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    missing = [name for name in _NEEDED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise TargetError(f"stack {stack_name!r} lacks outputs {', '.join(missing)}; is it an imgops stack?")
    return outputs


def fetch_access_token(info: StackInfo, username: str | None = None, password: str | None = None) -> str:
    """An access token on the local stack, for the demo user unless another is named."""
    return for_local(info).sign_in(username or info.demo_username, password or info.demo_password)
