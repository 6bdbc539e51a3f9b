"""IAM, proven by the functional tests: which AWS calls each Lambda handler makes, and whether the function's role
in the synthesized template allows them.

`CallRecorder` hooks every botocore client created while it is installed (whatever the session: the handlers'
clients come from boto3's default session, the tests' fixtures make their own) and keeps each call made with
pipeline or monitoring code on the stack: the IAM action, the resource ARN derived from the request's parameters,
the request context keys a policy condition may test, and the project and test frames on the stack.

A call is a function's (`RolePolicies.function_for`) when its handler module is on the stack and was entered
either through the handler itself (the test, the local API or the local runtime invoked the Lambda entry point)
or straight from a test (a test exercising the handler's logic with its own clients: `process_message`,
`grant_upload`). Entered from other project code it is not the Lambda: `imgops monitoring publish` runs
`monitoring.capacity_publisher.publish_counters` with an operator's credentials. Test setup and assertions are nobody's.

Besides plain API calls it records what a role must allow although the handler makes no request for it:
* a presigned URL or POST acts with the signer's permissions: `generate_presigned_url('get_object')` is
  `s3:GetObject` on that key, `generate_presigned_post` is `s3:PutObject` on the key it pins;
* S3 answers a GetObject/HeadObject of a missing key with 404 only to callers allowed `s3:ListBucket` (403
  otherwise), so such an answer is also `s3:ListBucket` on the bucket;
* publishing to a topic encrypted with a KMS key is also `kms:GenerateDataKey` and `kms:Decrypt` on that key
  through SNS (`RolePolicies.implied`, from the topic's KmsMasterKeyId in the template).

`RolePolicies` evaluates calls against the template: each function's handler module (its `Handler`) names the
calls that are its own, its role's identity policies (AWS::IAM::Policy and ::ManagedPolicy attached to the role,
the role's inline policies) decide, with tokens resolved by `dashboards.template.Resolver`. The evaluation is
IAM's for identity policies: an explicit Deny wins, else an Allow whose Action/NotAction, Resource/NotResource
(`*` and `?` wildcards) and Condition all match. Resource policies (bucket, topic, key policies) are not
evaluated: same-account principals need only an identity-policy Allow unless a resource policy denies, and the
templates' resource-policy Denies (plain HTTP) do not apply to SDK calls. Key policies must delegate to IAM for
the Allow to count; tests/infrastructure/test_topic_encryption.py checks that.

The tests' resources are named for their own prefix (`ResourceNames(<test prefix>)`); `RolePolicies` maps every
name that is one of a deployment's `ResourceNames` to the template's deployment before evaluating, so a call on
`t1a2b3-uploads` is judged as one on `imgops-uploads`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import botocore.session
from botocore.client import BaseClient

from dashboards.template import LOCAL_ACCOUNT_ID, PhysicalIds, Resolver
from pipeline.resources import ResourceNames

# Only calls with frames of these packages on the stack can be a handler's; others are not recorded.
HANDLER_PACKAGES = ("pipeline", "monitoring")
# Frames kept to attribute a call: the project's and the tests' (libraries, pytest and the stdlib are skipped).
_KEPT_PACKAGES = ("pipeline", "monitoring", "dashboards", "loadtest", "imgops", "tests")
ENTRY_POINT = "handler"  # the function name in every Lambda `Handler` (module.handler)
# botocore's signing name → IAM's service prefix, where they differ.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
# Operations authorized by another action (the Service Authorization Reference's "actions" column).
_ACTION_FOR = {
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:DeleteObjects": "s3:DeleteObject",
    "sns:PublishBatch": "sns:Publish",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
_MISSING_KEY_NEEDS_LIST = "a missing key is a 404 (not a 403) only with s3:ListBucket"
_CONTEXT_KEY = "imgops.iam"


@dataclass(frozen=True)
class Call:
    """One permission a call needs: `action` on `resource`, with the request context keys policies may test."""

    action: str
    resource: str
    frames: tuple[tuple[str, str], ...]  # (module, function) of project and test frames, innermost first
    context: tuple[tuple[str, str], ...] = ()
    via: str = "API call"

    def describe(self) -> str:
        extra = f" [{', '.join(f'{k}={v}' for k, v in self.context)}]" if self.context else ""
        return f"{self.action} on {self.resource}{extra} ({self.via})"


def _stack(skip: int = 2) -> tuple[tuple[str, str], ...]:
    """The project and test frames above the caller, innermost first; empty if none is pipeline/monitoring code."""
    frames: list[tuple[str, str]] = []
    frame = sys._getframe(skip)
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.split(".", 1)[0] in _KEPT_PACKAGES:
            frames.append((name, frame.f_code.co_name))
        frame = frame.f_back  # type: ignore[assignment]
    return tuple(frames) if any(module.split(".", 1)[0] in HANDLER_PACKAGES for module, _ in frames) else ()


def s3_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"


def _queue_arn(url: str, region: str) -> str:
    account, _, name = urlparse(url).path.strip("/").partition("/")
    return f"arn:aws:sqs:{region}:{account or LOCAL_ACCOUNT_ID}:{name}"


def permissions_for(
    prefix: str, operation: str, params: Mapping[str, Any], region: str
) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(action, resource, context) triples one API call needs; `prefix` is IAM's service prefix."""
    action = _ACTION_FOR.get(f"{prefix}:{operation}", f"{prefix}:{operation}")
    if prefix == "s3":
        bucket = str(params.get("Bucket", ""))
        if operation == "CopyObject":
            source = params.get("CopySource")
            source_arn = (
                s3_arn(str(source["Bucket"]), str(source["Key"]))
                if isinstance(source, Mapping)
                else f"arn:aws:s3:::{str(source).lstrip('/').split('?', 1)[0]}"
            )
            return [("s3:PutObject", s3_arn(bucket, str(params["Key"])), ()), ("s3:GetObject", source_arn, ())]
        if operation == "DeleteObjects":
            return [(action, s3_arn(bucket, str(o["Key"])), ()) for o in params.get("Delete", {}).get("Objects", [])]
        if action == "s3:ListBucket":
            context = (("s3:prefix", str(params["Prefix"])),) if "Prefix" in params else ()
            return [(action, s3_arn(bucket), context)]
        key = params.get("Key")
        return [(action, s3_arn(bucket, None if key is None else str(key)) if bucket else "*", ())]
    if prefix == "dynamodb":
        account = LOCAL_ACCOUNT_ID
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [
                (action, f"arn:aws:dynamodb:{region}:{account}:table/{table}", ()) for table in params["RequestItems"]
            ]
        if operation == "TransactWriteItems":  # IAM authorizes each item as the write it is, on its table
            item_actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
            return [
                (
                    f"dynamodb:{item_actions.get(kind, 'ConditionCheckItem')}",
                    f"arn:aws:dynamodb:{region}:{account}:table/{write['TableName']}",
                    (),
                )
                for item in params["TransactItems"]
                for kind, write in item.items()
            ]
        if "TableName" in params:
            return [(action, f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}", ())]
        return [(action, "*", ())]
    if prefix == "sns":
        arn = params.get("TopicArn") or params.get("TargetArn")
        return [(action, str(arn) if arn else "*", ())]
    if prefix == "sqs":
        url = params.get("QueueUrl")
        return [(action, _queue_arn(str(url), region) if url else "*", ())]
    if prefix == "cloudwatch":
        context = (("cloudwatch:namespace", str(params["Namespace"])),) if "Namespace" in params else ()
        return [(action, "*", context)]
    # Anything else: recorded on "*", so only a policy that grants it on every resource allows it. Add the
    # service here when a handler starts using it.
    return [(action, "*", ())]


class CallRecorder:
    """Collects the calls made with a handler module on the stack, from every client created while installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    # --- reading -------------------------------------------------------------------------------------------

    def mark(self) -> int:
        with self._lock:
            return len(self._calls)

    def since(self, mark: int) -> list[Call]:
        with self._lock:
            return list(self._calls[mark:])

    @property
    def calls(self) -> list[Call]:
        return self.since(0)

    # --- installing ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[CallRecorder]:
        """Every client `botocore.session.Session.create_client` makes from now on reports to this recorder.
        Clients made earlier are not hooked: drop cached ones (pipeline.aws.forget_clients) before installing."""
        original = botocore.session.Session.create_client
        recorder = self

        @functools.wraps(original)
        def create_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> BaseClient:
            client = original(session, *args, **kwargs)
            recorder.attach(client)
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original  # type: ignore[method-assign]

    def attach(self, client: BaseClient) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._before_parameter_build)
        events.register("before-sign.s3.PutObject", self._before_presigned_post)
        events.register("after-call.s3.GetObject", self._after_get_object)
        events.register("after-call.s3.HeadObject", self._after_get_object)

    # --- botocore event handlers -----------------------------------------------------------------------------

    def _record(self, calls: Iterable[Call]) -> None:
        with self._lock:
            self._calls.extend(calls)

    def _before_parameter_build(self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        frames = _stack()
        if not frames:
            return
        service = model.service_model
        prefix = _IAM_PREFIX.get(service.signing_name, service.signing_name)
        presign = bool(context.get("is_presign_request"))
        if presign and prefix == "s3" and model.name == "CreateBucket":
            # generate_presigned_post borrows CreateBucket's model for the bucket URL; the key comes at signing.
            context[_CONTEXT_KEY] = {"post_bucket": params.get("Bucket")}
            return
        region = str(context.get("client_region") or "us-east-1")  # presign contexts have none; S3 ARNs need none
        if prefix == "s3" and "Bucket" in params:
            context[_CONTEXT_KEY] = {"bucket": params["Bucket"]}
        via = "presigned URL" if presign else "API call"
        self._record(
            Call(action, resource, frames, condition_keys, via)
            for action, resource, condition_keys in permissions_for(prefix, model.name, params, region)
        )

    def _before_presigned_post(self, request: Any, **_: Any) -> None:
        stash = request.context.get(_CONTEXT_KEY, {})
        fields = request.context.get("s3-presign-post-fields")
        if "post_bucket" not in stash or not isinstance(fields, Mapping):
            return
        frames = _stack()
        if frames:
            arn = s3_arn(str(stash["post_bucket"]), str(fields.get("key", "")))
            self._record([Call("s3:PutObject", arn, frames, via="presigned POST")])

    def _after_get_object(self, http_response: Any, context: Mapping[str, Any], **_: Any) -> None:
        bucket = context.get(_CONTEXT_KEY, {}).get("bucket")
        if http_response is None or http_response.status_code != 404 or bucket is None:
            return
        frames = _stack()
        if frames:
            self._record([Call("s3:ListBucket", s3_arn(str(bucket)), frames, via=_MISSING_KEY_NEEDS_LIST)])


# --- Policy evaluation -----------------------------------------------------------------------------------


@functools.cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in glob)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def iam_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters (slashes included), `?` exactly one."""
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    source: str = ""  # the policy it came from, for reports

    @classmethod
    def parse(cls, raw: Mapping[str, Any], source: str) -> Statement:
        conditions = {
            operator: {key: tuple(_strings(values)) for key, values in keys.items()}
            for operator, keys in raw.get("Condition", {}).items()
        }
        return cls(
            effect=str(raw["Effect"]),
            actions=tuple(_strings(raw.get("Action", []))),
            not_actions=tuple(_strings(raw.get("NotAction", []))),
            resources=tuple(_strings(raw.get("Resource", []))),
            not_resources=tuple(_strings(raw.get("NotResource", []))),
            conditions=conditions,
            source=source,
        )

    def covers_action(self, action: str) -> bool:
        if self.not_actions:
            return not any(iam_match(p, action, ignore_case=True) for p in self.not_actions)
        return any(iam_match(p, action, ignore_case=True) for p in self.actions)

    def covers_resource(self, resource: str) -> bool:
        if self.not_resources:
            return not any(iam_match(p, resource) for p in self.not_resources)
        return any(iam_match(p, resource) for p in self.resources)

    def conditions_hold(self, context: Mapping[str, str]) -> bool:
        """Operators this evaluator does not know never hold: an Allow with one grants nothing here."""
        keys = {key.lower(): value for key, value in context.items()}
        for operator, tests in self.conditions.items():
            base, if_exists = (
                (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
            )
            for key, expected in tests.items():
                actual = keys.get(key.lower())
                if actual is None:
                    if if_exists:
                        continue
                    return False
                if not _condition(base, actual, expected):
                    return False
        return True

    def applies(self, call: Call) -> bool:
        return (
            self.covers_action(call.action)
            and self.covers_resource(call.resource)
            and self.conditions_hold(dict(call.context))
        )


def _condition(operator: str, actual: str, expected: Sequence[str]) -> bool:
    if operator in ("StringEquals", "ArnEquals"):
        return actual in expected
    if operator == "StringEqualsIgnoreCase":
        return actual.lower() in {value.lower() for value in expected}
    if operator in ("StringLike", "ArnLike"):
        return any(iam_match(value, actual) for value in expected)
    if operator in ("StringNotEquals", "ArnNotEquals"):
        return actual not in expected
    if operator in ("StringNotLike", "ArnNotLike"):
        return not any(iam_match(value, actual) for value in expected)
    if operator == "Bool":
        return actual.lower() in {value.lower() for value in expected}
    return False


@dataclass(frozen=True)
class Decision:
    call: Call
    function: str
    allowed: bool
    statement: Statement | None  # the Allow that grants it, or the Deny that refuses it

    def describe(self) -> str:
        verdict = "allowed" if self.allowed else "DENIED"
        by = f" by {self.statement.source}" if self.statement is not None else " (no statement allows it)"
        return f"{self.function}: {self.call.describe()} {verdict}{by}"


@dataclass(frozen=True)
class FunctionRole:
    function: str  # physical function name in the template's deployment
    module: str  # its handler's module (`pipeline.worker` for `pipeline.worker.handler`)
    statements: tuple[Statement, ...]

    def decide(self, call: Call) -> Decision:
        denies = [s for s in self.statements if s.effect == "Deny" and s.applies(call)]
        if denies:
            return Decision(call, self.function, False, denies[0])
        allows = [s for s in self.statements if s.effect == "Allow" and s.applies(call)]
        return Decision(call, self.function, bool(allows), allows[0] if allows else None)

    def grants(self) -> list[tuple[str, str]]:
        """Every (action, resource) pattern pair its Allow statements name (NotAction/NotResource excluded)."""
        return [
            (action, resource)
            for statement in self.statements
            if statement.effect == "Allow"
            for action in statement.actions
            for resource in statement.resources
        ]


def _names_by_suffix() -> list[tuple[str, str]]:
    """(attribute, suffix) for every ResourceNames name, longest suffix first (`-work-dlq` before `-work`)."""
    empty = ResourceNames("")
    attributes = [name for name, value in vars(ResourceNames).items() if isinstance(value, property)]
    return sorted(((name, str(getattr(empty, name))) for name in attributes), key=lambda pair: -len(pair[1]))


class RolePolicies:
    """The synthesized template's Lambda functions, their roles' identity policies, and its encrypted topics."""

    def __init__(self, template: Mapping[str, Any], *, region: str = "us-east-1", prefix: str = "imgops") -> None:
        self.prefix = prefix
        self.region = region
        resources: Mapping[str, Any] = template["Resources"]
        self._resolve = Resolver(template, PhysicalIds(region=region, stack_name=f"{prefix}-pipeline"))
        self.functions: dict[str, FunctionRole] = {}
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            properties = resource["Properties"]
            handler = str(properties.get("Handler", ""))
            if not handler.startswith(("pipeline.", "monitoring.")):
                continue  # CDK's own code (the upload page's BucketDeployment): it never runs locally
            function = str(self._resolve(properties.get("FunctionName", logical_id)))
            role = properties["Role"]
            if not (isinstance(role, Mapping) and "Fn::GetAtt" in role):
                raise ValueError(f"{function}: role {role!r} is not a role of this template")
            role_id = str(role["Fn::GetAtt"][0])
            self.functions[handler.rpartition(".")[0]] = FunctionRole(
                function=function, module=handler.rpartition(".")[0], statements=self._statements(resources, role_id)
            )
        self.topic_keys: dict[str, str] = {
            str(self._resolve({"Ref": logical_id})): str(self._resolve(resource["Properties"]["KmsMasterKeyId"]))
            for logical_id, resource in resources.items()
            if resource["Type"] == "AWS::SNS::Topic" and "KmsMasterKeyId" in resource["Properties"]
        }
        self._suffixes = _names_by_suffix()

    def _statements(self, resources: Mapping[str, Any], role_id: str) -> tuple[Statement, ...]:
        role = resources[role_id]["Properties"]
        if role.get("ManagedPolicyArns") or role.get("PermissionsBoundary"):
            raise ValueError(f"{role_id}: AWS managed policies and boundaries are not evaluated here")
        documents: list[tuple[str, Any]] = [
            (f"{role_id} inline {policy.get('PolicyName', '')}", policy["PolicyDocument"])
            for policy in role.get("Policies", [])
        ]
        for logical_id, resource in resources.items():
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": role_id} in resource[
                "Properties"
            ].get("Roles", []):
                documents.append((logical_id, resource["Properties"]["PolicyDocument"]))
        return tuple(
            Statement.parse(self._resolve(raw), source)
            for source, document in documents
            for raw in _strings_or_list(document["Statement"])
        )

    # --- calls in the template's terms ---------------------------------------------------------------------

    def function_for(self, call: Call) -> FunctionRole | None:
        """The function whose handler made `call` (see the module's docstring), or None."""
        for module in dict.fromkeys(module for module, _ in call.frames):
            if module not in self.functions:
                continue
            outermost = max(index for index, (name, _) in enumerate(call.frames) if name == module)
            entered_by = call.frames[outermost + 1][0] if outermost + 1 < len(call.frames) else "tests"
            if call.frames[outermost][1] == ENTRY_POINT or entered_by.split(".", 1)[0] == "tests":
                return self.functions[module]
        return None

    def rename(self, name: str) -> str:
        """A deployment's resource name as the template's deployment calls it (`t1a2b3-uploads` → `imgops-uploads`)."""
        for attribute, suffix in self._suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                candidate = ResourceNames(name[: -len(suffix)])
                if getattr(candidate, attribute) == name:
                    return str(getattr(ResourceNames(self.prefix), attribute))
        return name

    def in_template_terms(self, call: Call) -> Call:
        arn = call.resource
        if not arn.startswith("arn:"):
            return call
        parts = arn.split(":", 5)
        service, resource = parts[2], parts[5]
        if service == "s3":
            bucket, slash, key = resource.partition("/")
            resource = f"{self.rename(bucket)}{slash}{key}"
        elif service == "dynamodb":
            kind, slash, rest = resource.partition("/")
            table, slash2, tail = rest.partition("/")
            resource = f"{kind}{slash}{self.rename(table)}{slash2}{tail}"
        else:
            resource = self.rename(resource)
        parts[5] = resource
        return Call(call.action, ":".join(parts), call.frames, call.context, call.via)

    def implied(self, call: Call) -> list[Call]:
        """What a call needs besides its own action: publishing to an encrypted topic uses its key through SNS."""
        if call.action.lower() == "sns:publish" and call.resource in self.topic_keys:
            key = self.topic_keys[call.resource]
            via = f"SNS encrypts {call.resource.rsplit(':', 1)[-1]} with its KMS key for the publisher"
            context = (("kms:ViaService", f"sns.{self.region}.amazonaws.com"),)
            return [Call(action, key, call.frames, context, via) for action in ("kms:GenerateDataKey", "kms:Decrypt")]
        return []

    def decide(self, calls: Iterable[Call]) -> list[Decision]:
        """A decision for every handler call (and what it implies); calls no handler made are left out."""
        decisions: list[Decision] = []
        for raw in calls:
            role = self.function_for(raw)
            if role is None:
                continue
            call = self.in_template_terms(raw)
            for needed in (call, *self.implied(call)):
                decisions.append(role.decide(needed))
        return decisions

    def unused(self, decisions: Iterable[Decision]) -> dict[str, list[tuple[str, str]]]:
        """Per function, the (action, resource) grants no allowed call matched."""
        used: dict[str, list[Call]] = {}
        for decision in decisions:
            if decision.allowed:
                used.setdefault(decision.function, []).append(decision.call)
        report: dict[str, list[tuple[str, str]]] = {}
        for role in self.functions.values():
            calls = used.get(role.function, [])
            report[role.function] = [
                (action, resource)
                for action, resource in role.grants()
                if not any(
                    iam_match(action, call.action, ignore_case=True) and iam_match(resource, call.resource)
                    for call in calls
                )
            ]
        return report


def _strings_or_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]
