"""Both SNS topics are encrypted with one customer-managed key that the two publishers can use: CloudWatch alarms
(key policy) and the worker (its role, only through SNS). dashboards/constructs/topic_key.py says why."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from dashboards.constructs.topic_key import CLOUDWATCH_KEY_ACTIONS, PUBLISH_KEY_ACTIONS
from pipeline.resources import ResourceNames
from tests.infrastructure.conftest import Synthesized

NAMES = ResourceNames("imgops")


def key_arn(synthesized: Synthesized) -> Any:
    return synthesized.stack.resolve(synthesized.stack.topic_key.key.key_arn)


def test_the_topic_key_rotates(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True, "KeySpec": Match.absent()}
    )  # KeySpec absent: symmetric, the only kind SNS supports
    synthesized.template.has_resource_properties(
        "AWS::KMS::Alias", {"AliasName": f"alias/{NAMES.prefix}-topics", "TargetKeyId": key_arn(synthesized)}
    )


@pytest.mark.parametrize("topic_name", [NAMES.notifications_topic, f"{NAMES.prefix}-ops-alarms"])
def test_topics_are_encrypted_with_the_topic_key(synthesized: Synthesized, topic_name: str) -> None:
    synthesized.template.has_resource_properties(
        "AWS::SNS::Topic", {"TopicName": topic_name, "KmsMasterKeyId": key_arn(synthesized)}
    )


def test_key_policy_lets_cloudwatch_alarms_publish_and_delegates_to_iam(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        # The account's IAM policies decide for its own principals (the worker's role, operators).
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": Match.object_like({"Fn::Join": Match.any_value()})},
                                "Action": "kms:*",
                            }
                        ),
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": list(CLOUDWATCH_KEY_ACTIONS),
                                "Resource": "*",
                            }
                        ),
                    ]
                )
            }
        },
    )
    [key] = synthesized.resources("AWS::KMS::Key").values()
    principals = [statement["Principal"] for statement in key["Properties"]["KeyPolicy"]["Statement"]]
    root = synthesized.stack.resolve(principals[0]["AWS"])
    assert root["Fn::Join"][1][-1] == ":root", root  # the account, not a wildcard principal
    assert len(principals) == 2


def kms_statements(synthesized: Synthesized, role: Any) -> list[dict[str, Any]]:
    role_ref = synthesized.stack.resolve(role.role_name)
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if role_ref in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(action.startswith("kms:") for action in actions(statement))
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_worker_may_use_the_key_only_to_publish_through_sns(synthesized: Synthesized) -> None:
    [statement] = kms_statements(synthesized, synthesized.stack.worker.function.role)
    assert sorted(statement["Action"]) == sorted(PUBLISH_KEY_ACTIONS)
    assert statement["Resource"] == key_arn(synthesized)
    [(operator, condition)] = statement["Condition"].items()
    assert operator == "StringEquals"
    assert synthesized.stack.resolve(condition["kms:ViaService"]) == {
        "Fn::Join": ["", ["sns.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
    }


def test_no_other_function_may_use_the_key(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    for function in (stack.api.presign_function, stack.api.read_function, stack.bucket_metrics.function):
        assert kms_statements(synthesized, function.role) == []
