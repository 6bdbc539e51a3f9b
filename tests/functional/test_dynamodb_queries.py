"""Query in the embedded AWS (localaws.dynamodb_queries: only the partition it names is read) answers as moto's
own does: the partition's items, in sort-key order either way, through range conditions, filters, paging and
projections; queries on an index and on a table without a sort key are moto's as they were."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localaws.moto_process import MotoProcess

PARTITIONS = 12
PER_PARTITION = 25


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    client.create_table(
        TableName="ranged",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "colour", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-colour",
                "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName="plain",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for p in range(PARTITIONS):
        for n in reversed(range(PER_PARTITION)):  # written out of order: the answer must be sorted anyway
            item = {"pk": {"S": f"p{p:02d}"}, "sk": {"S": f"k{n:03d}"}, "n": {"N": str(n)}}
            item["colour"] = {"S": "red" if n % 5 == 0 else "blue"}
            client.put_item(TableName="ranged", Item=item)
        client.put_item(TableName="plain", Item={"pk": {"S": f"p{p:02d}"}, "n": {"N": str(p)}})
    yield client
    moto.stop()


def keys(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["pk"]["S"], item["sk"]["S"]) for item in items]


def query(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = client.query(**kwargs)
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_partition_is_its_items_in_sort_key_order_either_way_and_over_pages(dynamodb: Any) -> None:
    ask = {
        "TableName": "ranged",
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "p03"}},
    }
    expected = [("p03", f"k{n:03d}") for n in range(PER_PARTITION)]
    assert keys(query(dynamodb, **ask)) == expected
    assert keys(query(dynamodb, **ask, Limit=7)) == expected  # four pages
    assert keys(query(dynamodb, **ask, ScanIndexForward=False, Limit=10)) == expected[::-1]


def test_range_conditions_filters_and_projections_apply_within_the_partition(dynamodb: Any) -> None:
    after = query(
        dynamodb,
        TableName="ranged",
        KeyConditionExpression="pk = :pk AND sk > :after",
        ExpressionAttributeValues={":pk": {"S": "p07"}, ":after": {"S": "k019"}, ":big": {"N": "21"}},
        FilterExpression="n > :big",
        ProjectionExpression="sk, n",
    )
    assert after == [{"sk": {"S": f"k{n:03d}"}, "n": {"N": str(n)}} for n in range(22, PER_PARTITION)]
    between = query(
        dynamodb,
        TableName="ranged",
        KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
        ExpressionAttributeValues={":pk": {"S": "p11"}, ":low": {"S": "k003"}, ":high": {"S": "k005"}},
    )
    assert keys(between) == [("p11", "k003"), ("p11", "k004"), ("p11", "k005")]


def test_a_partition_with_no_items_is_empty_and_adds_none(dynamodb: Any) -> None:
    ask = {
        "TableName": "ranged",
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "none"}},
    }
    assert query(dynamodb, **ask) == []
    assert dynamodb.scan(TableName="ranged", Select="COUNT")["Count"] == PARTITIONS * PER_PARTITION


def test_an_index_and_a_table_without_a_sort_key_are_queried_as_before(dynamodb: Any) -> None:
    red = query(
        dynamodb,
        TableName="ranged",
        IndexName="by-colour",
        KeyConditionExpression="colour = :c",
        ExpressionAttributeValues={":c": {"S": "red"}},
    )
    assert len(red) == PARTITIONS * len(range(0, PER_PARTITION, 5))  # every partition's, through the index
    plain = query(
        dynamodb, TableName="plain", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "p05"}}
    )
    assert plain == [{"pk": {"S": "p05"}, "n": {"N": "5"}}]
    with pytest.raises(ClientError):  # moto's own validation is untouched
        dynamodb.query(
            TableName="ranged", KeyConditionExpression="sk = :sk", ExpressionAttributeValues={":sk": {"S": "k001"}}
        )
