"""The labels stage is off unless `-c imgops:labels=rekognition`: only then the worker has IMGOPS_LABELS and may call
rekognition:DetectLabels (pipeline.labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from dashboards import config
from dashboards.app import build_app
from dashboards.config import AppConfig
from dashboards.constructs.worker import LABELS_ACTION
from dashboards.errors import ConfigError
from pipeline.resources import Env
from tests.infrastructure.conftest import TEST_CONTEXT, Synthesized


def worker_function(template: Template) -> dict[str, Any]:
    functions = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": "pipeline.worker.handler"}})
    [function] = functions.values()
    return dict(function["Properties"])


def statements(template: Template) -> list[dict[str, Any]]:
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_off_by_default_no_variable_and_no_grant(synthesized: Synthesized) -> None:
    variables = worker_function(synthesized.template)["Environment"]["Variables"]
    assert Env.LABELS not in variables
    assert Env.LABELS_MIN_CONFIDENCE not in variables
    assert not [s for s in statements(synthesized.template) if any(a.startswith("rekognition:") for a in actions_of(s))]


@pytest.fixture(scope="module")
def with_labels(tmp_path_factory: pytest.TempPathFactory) -> Template:
    outdir: Path = tmp_path_factory.mktemp("cdk.out.labels")
    context = {**TEST_CONTEXT, config.LABELS: "rekognition", config.LABELS_MIN_CONFIDENCE: "70"}
    app, stack = build_app(context, outdir=str(outdir))
    app.synth()  # cdk-nag too: the one wildcard is acknowledged
    return Template.from_stack(stack)


def test_enabled_sets_the_variables_and_grants_detect_labels_alone(with_labels: Template) -> None:
    with_labels.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "pipeline.worker.handler",
            "Environment": {
                "Variables": Match.object_like({Env.LABELS: "rekognition", Env.LABELS_MIN_CONFIDENCE: "70"})
            },
        },
    )
    with_labels.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Allow", "Action": LABELS_ACTION, "Resource": "*"})]
                )
            }
        },
    )
    granted = {a for s in statements(with_labels) for a in actions_of(s) if a.startswith("rekognition:")}
    assert granted == {LABELS_ACTION}


def test_the_setting_is_checked() -> None:
    def context(values: dict[str, Any]) -> Any:
        return values.get

    assert AppConfig.from_context(context({})).labels == "none"
    enabled = AppConfig.from_context(context({config.LABELS: "Rekognition"}))
    assert (enabled.labels, enabled.labels_min_confidence) == ("rekognition", 80.0)
    assert enabled.as_context()[config.LABELS] == "rekognition"
    with pytest.raises(ConfigError, match="choose one of none, rekognition"):
        AppConfig.from_context(context({config.LABELS: "clip"}))
    with pytest.raises(ConfigError, match="0 to 100"):
        AppConfig.from_context(context({config.LABELS: "rekognition", config.LABELS_MIN_CONFIDENCE: "120"}))
