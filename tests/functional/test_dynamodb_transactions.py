"""TransactWriteItems in the embedded AWS (localaws.dynamodb_transactions): all or nothing, as on AWS, with the
backup of only the items it names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localaws.moto_process import MotoProcess


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    ranged: list[Any] = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    for name, schema in (("ranged", ranged), ("plain", ranged[:1])):
        client.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": key["AttributeName"], "AttributeType": "S"} for key in schema],
            KeySchema=schema,
            BillingMode="PAY_PER_REQUEST",
        )
    yield client
    moto.stop()


def items(client: Any, table: str) -> list[dict[str, Any]]:
    return sorted(client.scan(TableName=table)["Items"], key=str)


def test_a_cancelled_transaction_leaves_every_item_as_it_was(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="ranged", Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1"}})
    dynamodb.put_item(TableName="plain", Item={"pk": {"S": "x"}, "n": {"N": "1"}})
    before = (items(dynamodb, "ranged"), items(dynamodb, "plain"))
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "ranged", "Item": {"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "2"}}}},
                {"Put": {"TableName": "ranged", "Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},  # a new item
                {
                    "Update": {
                        "TableName": "plain",
                        "Key": {"pk": {"S": "x"}},
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {
                    "Put": {
                        "TableName": "plain",
                        "Item": {"pk": {"S": "y"}},
                        "ConditionExpression": "attribute_exists(pk)",  # fails: y does not exist
                    }
                },
            ]
        )
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert (items(dynamodb, "ranged"), items(dynamodb, "plain")) == before


def test_a_transaction_that_succeeds_writes_every_item(dynamodb: Any) -> None:
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "ranged", "Item": {"pk": {"S": "c"}, "sk": {"S": "1"}}}},
            {
                "Put": {
                    "TableName": "plain",
                    "Item": {"pk": {"S": "z"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )
    assert {"pk": {"S": "z"}} in items(dynamodb, "plain")
    assert any(item["pk"] == {"S": "c"} for item in items(dynamodb, "ranged"))
