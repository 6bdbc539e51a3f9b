"""The local stack's fault switch: rules in a file, read live by a botocore hook, real AWS error responses."""

from __future__ import annotations

import random
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localaws.faults import FaultInjector, FaultSpecError, parse_rules, write_rules
from monitoring.target import StackInfo


def test_parse_rules() -> None:
    rules = parse_rules("dynamodb:PutItem=0.2:ProvisionedThroughputExceededException, s3:*=1:SIGKILL")
    assert [(r.service, r.operation, r.rate, r.code) for r in rules] == [
        ("dynamodb", "PutItem", 0.2, "ProvisionedThroughputExceededException"),
        ("s3", "*", 1.0, "SIGKILL"),
    ]
    for bad in ("dynamodb=1:X", "s3:PutObject=2:SlowDown", "s3:PutObject=x:SlowDown", "s3:PutObject=1"):
        with pytest.raises(FaultSpecError):
            parse_rules(bad)


def test_rules_switch_on_and_off_live(stack: StackInfo, tmp_path: Path) -> None:
    rules_file = tmp_path / "faults.json"
    session = boto3.session.Session()
    injector = FaultInjector(rules_file, random.Random(1)).install(session.events)
    dynamodb = session.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    sns = session.client("sns", config=Config(retries={"total_max_attempts": 1}))
    item = {"imageId": {"S": "a"}}

    dynamodb.put_item(TableName=stack.images_table, Item=item)  # no rules yet
    write_rules(rules_file, parse_rules("dynamodb:PutItem=1:ProvisionedThroughputExceededException,sns:*=1:Throttling"))
    with pytest.raises(ClientError) as throttled:
        dynamodb.put_item(TableName=stack.images_table, Item=item)
    assert throttled.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    with pytest.raises(ClientError) as sns_throttled:
        sns.publish(TopicArn=stack.topic_arn, Message="x")
    assert sns_throttled.value.response["Error"]["Code"] == "Throttling"
    dynamodb.get_item(TableName=stack.images_table, Key=item)  # other operations pass

    write_rules(rules_file, [])
    dynamodb.put_item(TableName=stack.images_table, Item=item)
    assert injector.injected == 2


def test_rate_is_a_share_of_calls(stack: StackInfo, tmp_path: Path) -> None:
    rules_file = tmp_path / "faults.json"
    write_rules(rules_file, parse_rules("dynamodb:GetItem=0.3:InternalServerError"))
    session = boto3.session.Session()
    FaultInjector(rules_file, random.Random(7)).install(session.events)
    dynamodb = session.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    statuses = []
    for _ in range(200):
        try:
            dynamodb.get_item(TableName=stack.images_table, Key={"imageId": {"S": "x"}})
        except ClientError as exc:
            statuses.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    assert set(statuses) == {500}
    assert 40 <= len(statuses) <= 80
