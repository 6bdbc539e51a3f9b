"""The synthesized CloudFormation template: the one definition of the stack that the tools read.

Rendering the dashboards, `imgops alarms check` and the drills all start here: `stack_template` synthesizes the
CDK app in a child process (no bundling, no cdk-nag: neither changes a resource's properties) once per app source and
context, and keeps the result in a cache folder so later calls take milliseconds; `Resolver` turns the
template's tokens (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, ...) into one deployment's physical names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from monitoring.target import Target
from pipeline.errors import ImgopsError
from pipeline.files import write_atomically
from pipeline.resources import ResourceNames

# moto's default account; CDK writes AWS::AccountId tokens into ARNs and console links.
LOCAL_ACCOUNT_ID = "123456789012"
# The local API's id, as the local stack's HTTP API reports it in events and metrics.
LOCAL_API_ID = "local"
_REPO_ROOT = Path(__file__).resolve().parents[1]
# What the synthesized template depends on: the CDK app and the modules it reads names and numbers from.
_APP_SOURCES = ("dashboards", "pipeline", "monitoring")
# Synthesized in place of the real prefix, then replaced: it occurs nowhere else in a template.
_SENTINEL_PREFIX = "zzprefixsentinelzz"
CACHE_ENV = "IMGOPS_TEMPLATE_CACHE"


class TemplateError(ImgopsError, ValueError):
    """The template cannot be read or resolved: not a template, an unknown intrinsic function, a missing id."""


# --- Load or synthesize (cached) -----------------------------------------------------------------------


def load_template(path: Path) -> dict[str, Any]:
    """A synthesized template from a file (e.g. cdk.out/Imgops.template.json)."""
    return load_template_text(path.read_text(encoding="utf-8"), path)


def load_template_text(text: str, path: Path) -> dict[str, Any]:
    try:
        template = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{path} is not a CloudFormation template: {exc}") from None
    if not isinstance(template, dict) or "Resources" not in template:
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return template


def cache_dir() -> Path:
    """Shared by every local stack and test on this machine (entries are keyed by source and context)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgops" / "templates"


# The app's code, and the upload page's files it deploys (dashboards/web).
_SOURCE_SUFFIXES = frozenset({".py", ".html", ".js", ".css"})


def cache_key(context: Mapping[str, Any]) -> str:
    """Changes whenever the app's source, cdk.json, the context or the CDK library version does."""
    digest = hashlib.sha256(str(_REPO_ROOT).encode())  # the default runbook links are this checkout's files
    for package in _APP_SOURCES:
        for path in sorted(p for p in (_REPO_ROOT / package).rglob("*") if p.suffix in _SOURCE_SUFFIXES):
            digest.update(str(path.relative_to(_REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    cdk_json = _REPO_ROOT / "cdk.json"
    if cdk_json.exists():
        digest.update(cdk_json.read_bytes())
    digest.update(json.dumps(dict(context), sort_keys=True, default=str).encode())
    for library in ("aws-cdk-lib", "cdk-monitoring-constructs"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(metadata.version(library).encode())
    return digest.hexdigest()[:24]


def stack_template(prefix: str = "imgops", context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stack's template for `prefix`, synthesized once per app source and context, then read from the cache.

    The prefix only ever appears in physical names, so the app is synthesized once with a sentinel prefix and
    each prefix is a text substitution of it: a test with a unique prefix per case costs no synth."""
    from dashboards import config

    config.AppConfig(prefix=prefix)  # the app's own check of the prefix (raises ConfigError)
    full = {**(context or {}), config.PREFIX: _SENTINEL_PREFIX, config.SKIP_BUNDLING: "true"}
    path = cache_dir() / f"template-{cache_key(full)}.json"
    text: str | None = None
    if path.exists():
        text = path.read_text(encoding="utf-8")
        try:
            load_template_text(text, path)
        except TemplateError:
            text = None  # a damaged cache entry is rebuilt, not reported
    if text is None:
        text = json.dumps(_synthesize(full))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)  # concurrent callers never read half a file
    return load_template_text(text.replace(_SENTINEL_PREFIX, prefix), path)


def _synthesize(context: Mapping[str, Any]) -> dict[str, Any]:
    """Synthesize in a child process: the jsii runtime (Node, ~500 MB) never lives in the caller, so a long-running
    `imgops local up` does not keep it, and Ctrl-C there cannot break a pipe to it."""
    if shutil.which("node") is None:
        raise TemplateError(
            "synthesizing the CDK app needs Node.js (jsii runs on it): install Node 20 or later "
            "(Debian: apt-get install nodejs), or pass --template with a synthesized template"
        )
    result = subprocess.run(  # noqa: S603 - this module, with a context we serialised
        [sys.executable, "-m", "dashboards.template", json.dumps(dict(context))],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise TemplateError(f"synthesizing the CDK app failed: {detail}")
    return dict(json.loads(result.stdout))


def _synthesize_here(context: Mapping[str, Any]) -> dict[str, Any]:
    from dashboards.app import build_app, jsii_quiet

    with tempfile.TemporaryDirectory(prefix="imgops-synth-") as outdir, jsii_quiet():
        app, stack = build_app(dict(context), outdir=outdir, nag=False)
        assembly = app.synth()
        return dict(assembly.get_stack_by_name(stack.stack_name).template)


def template_for(path: Path | None, prefix: str, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The given template file, else the (cached) synthesized one for `prefix`."""
    return load_template(path) if path is not None else stack_template(prefix, context)


# --- Tokens → physical names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PhysicalIds:
    """What a deployment's tokens resolve to; the names the template spells out literally need no entry."""

    region: str
    account: str = LOCAL_ACCOUNT_ID
    stack_name: str = "imgops-pipeline"
    api_id: str = "local"
    queue_urls: Mapping[str, str] = field(default_factory=dict)  # queue name → URL
    topic_arns: Mapping[str, str] = field(default_factory=dict)  # topic name → ARN
    user_pool_id: str = ""
    user_pool_client_id: str = ""
    # Logical id → attribute ("Ref", "Arn", ...) → value, for what only exists once created (KMS keys, roles).
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class Resolver:
    """Ref, Fn::GetAtt, Fn::Join, Fn::Select, Fn::Split and Fn::Sub against one template and `PhysicalIds`."""

    def __init__(self, template: Mapping[str, Any], ids: PhysicalIds) -> None:
        self._resources: Mapping[str, Any] = template.get("Resources", {})
        self._parameters: Mapping[str, Any] = template.get("Parameters", {})
        self._ids = ids
        self.unresolved: set[str] = set()

    def __call__(self, value: Any) -> Any:
        return self.resolve(value)

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > 20:
            raise TemplateError("token nesting too deep (a reference cycle?)")
        if isinstance(value, list):
            return [self.resolve(item, depth + 1) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {key: self.resolve(item, depth + 1) for key, item in value.items()}
        [(function, argument)] = value.items()
        if function == "Ref":
            return self._ref(str(argument), depth)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return self._attribute(str(logical_id), str(attribute), depth)
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(str(self.resolve(part, depth + 1)) for part in parts)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items, depth + 1)[int(self.resolve(index, depth + 1))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text, depth + 1)).split(str(separator))
        if function == "Fn::Sub":
            return self._sub(argument, depth)
        raise TemplateError(f"{function} cannot be resolved locally")

    def _sub(self, argument: Any, depth: int) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name], depth + 1))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self._attribute(logical_id, attribute, depth))
            return str(self._ref(name, depth))

        return re.sub(r"\$\{([^}!]+)\}", replace, str(text))

    def _ref(self, name: str, depth: int) -> str:
        pseudo = {
            "AWS::Region": self._ids.region,
            "AWS::AccountId": self._ids.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self._ids.stack_name,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self._parameters:  # as deployed without overrides: the parameter's default
            return str(self._parameters[name].get("Default", ""))
        return self._attribute(name, "Ref", depth)

    def _attribute(self, logical_id: str, attribute: str, depth: int) -> str:
        resource = self._resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"the template has no resource {logical_id!r}")
        values = {**self._physical(logical_id, resource, depth), **self._ids.resources.get(logical_id, {})}
        if attribute not in values:
            self.unresolved.add(f"{logical_id}.{attribute}")
            return f"<{logical_id}.{attribute}>"
        return values[attribute]

    def _physical(self, logical_id: str, resource: Mapping[str, Any], depth: int) -> dict[str, str]:
        ids, region, account = self._ids, self._ids.region, self._ids.account
        kind = str(resource.get("Type", ""))
        properties: Mapping[str, Any] = resource.get("Properties", {})

        def name(key: str) -> str:
            if key not in properties:
                self.unresolved.add(f"{logical_id} ({kind} without {key})")
                return f"<{logical_id}>"
            return str(self.resolve(properties[key], depth + 1))

        if kind == "AWS::Lambda::Function":
            function = name("FunctionName")
            return {"Ref": function, "Arn": f"arn:aws:lambda:{region}:{account}:function:{function}"}
        if kind == "AWS::SQS::Queue":
            queue = name("QueueName")
            url = ids.queue_urls.get(queue, f"https://sqs.{region}.amazonaws.com/{account}/{queue}")
            return {"Ref": url, "QueueUrl": url, "QueueName": queue, "Arn": f"arn:aws:sqs:{region}:{account}:{queue}"}
        if kind == "AWS::SNS::Topic":
            topic = name("TopicName")
            arn = ids.topic_arns.get(topic, f"arn:aws:sns:{region}:{account}:{topic}")
            return {"Ref": arn, "TopicArn": arn, "TopicName": topic}
        if kind == "AWS::S3::Bucket":
            bucket = name("BucketName")
            return {"Ref": bucket, "Arn": f"arn:aws:s3:::{bucket}", "DomainName": f"{bucket}.s3.amazonaws.com"}
        if kind == "AWS::DynamoDB::Table":
            table = name("TableName")
            return {"Ref": table, "Arn": f"arn:aws:dynamodb:{region}:{account}:table/{table}"}
        if kind == "AWS::CloudWatch::Alarm":
            alarm = name("AlarmName")
            return {"Ref": alarm, "Arn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}"}
        if kind == "AWS::ApiGatewayV2::Api":
            return {"Ref": ids.api_id, "ApiId": ids.api_id}
        if kind == "AWS::Cognito::UserPool":
            return {"Ref": ids.user_pool_id, "UserPoolId": ids.user_pool_id}
        if kind == "AWS::Cognito::UserPoolClient":
            return {"Ref": ids.user_pool_client_id, "ClientId": ids.user_pool_client_id}
        self.unresolved.add(f"{logical_id} ({kind})")
        return {"Ref": logical_id}


def physical_ids(target: Target, account: str = LOCAL_ACCOUNT_ID) -> PhysicalIds:
    """What the template's tokens are on `target` (its names come from the template; URLs and ids do not)."""
    names = ResourceNames(target.prefix)
    api_host = urlparse(target.api_url).hostname or ""
    return PhysicalIds(
        region=target.region,
        account=account,
        stack_name=f"{target.prefix}-pipeline",
        api_id=LOCAL_API_ID if target.local else api_host.split(".", 1)[0],
        queue_urls={names.work_queue: target.work_queue_url, names.dead_letter_queue: target.dlq_url},
        topic_arns={names.notifications_topic: target.topic_arn},
        user_pool_id=target.user_pool_id,
        user_pool_client_id=target.user_pool_client_id,
    )


if __name__ == "__main__":  # `_synthesize`'s child: the template as JSON on stdout
    print(json.dumps(_synthesize_here(json.loads(sys.argv[1]))))
