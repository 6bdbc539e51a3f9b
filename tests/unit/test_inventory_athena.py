"""The Athena engine of the inventory truth: the SQL it sends and how it reads Athena's result pages.

Athena cannot run here. moto's Athena returns canned results without paging, and its in-process mock (mock_aws)
resets every moto backend when it starts and stops, including the session's ThreadedMotoServer's that other tests in
the same process use. So this one engine is tested with botocore's Stubber, which checks each request and each
response against Athena's own API model: the answers below are shaped as Athena shapes them (strings in
VarCharValue, a header row first on the first page only, NextToken between pages)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from monitoring.capacity import BUCKET_TOTAL
from monitoring.inventory import (
    RESULT_COLUMNS,
    AthenaInventory,
    InventoryError,
    Manifest,
    inventory_truth,
    totals_from_groups,
)
from monitoring.s3_metrics import Totals

SUB = "0f9e8d7c-6b5a-4321-9876-543210fedcba"
MANIFEST = Manifest(
    source_bucket="imgops-uploads",
    destination_bucket="imgops-inventory",
    created=datetime(2026, 12, 5, 0, 0, tzinfo=UTC),
    file_format="Parquet",
    columns=("bucket", "key", "size", "last_modified_date", "e_tag"),
    files=(),
    key="inventory/imgops-uploads/capacity/2026-12-05T00-00Z/manifest.json",
)
SQL = """SELECT
  CASE
    WHEN "key" LIKE 'user-uploads/%/%' AND "key" NOT LIKE '%/'
      THEN 'user-uploads/' || split_part("key", '/', 2) || '/'
    WHEN "key" LIKE '%/%' THEN split_part("key", '/', 1) || '/'
    ELSE '(root)'
  END AS owner_group,
  min("key") AS sample_key,
  count(*) AS objects,
  sum(coalesce("size", 0)) AS size_bytes
FROM "imgops_inventory"."uploads_capacity"
WHERE ("dt" = '2026-12-05-00-00')
GROUP BY 1
ORDER BY 1"""
COLUMN_INFO = [
    {"Name": "owner_group", "Type": "varchar"},
    {"Name": "sample_key", "Type": "varchar"},
    {"Name": "objects", "Type": "bigint"},
    {"Name": "size_bytes", "Type": "bigint"},
]


def row(*values: str | None) -> dict[str, Any]:
    return {"Data": [{} if value is None else {"VarCharValue": value} for value in values]}


def page(rows: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"ResultSet": {"Rows": rows, "ResultSetMetadata": {"ColumnInfo": COLUMN_INFO}}}
    if token:
        answer["NextToken"] = token
    return answer


def execution(state: str, reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    return {"QueryExecution": {"QueryExecutionId": "q-1", "Status": status}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def athena() -> Iterator[tuple[Any, Stubber]]:
    # An explicit endpoint: never the session's moto server (AWS_ENDPOINT_URL), never AWS; the Stubber answers first.
    client = boto3.client("athena", region_name="us-east-1", endpoint_url="https://athena.us-east-1.amazonaws.com")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def engine(client: Any, clock: Clock, **kwargs: Any) -> AthenaInventory:
    return AthenaInventory(
        client,
        workgroup="imgops",
        database="imgops_inventory",
        table="uploads_capacity",
        poll_seconds=2.0,
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )


def started(stubber: Stubber, sql: str = SQL) -> None:
    stubber.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {"QueryString": sql, "QueryExecutionContext": {"Database": "imgops_inventory"}, "WorkGroup": "imgops"},
    )


def test_the_query_its_partition_and_every_results_page(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    clock = Clock()
    started(stubber)
    for state in ("QUEUED", "RUNNING", "SUCCEEDED"):
        stubber.add_response("get_query_execution", execution(state), {"QueryExecutionId": "q-1"})
    first = [
        row(*RESULT_COLUMNS),  # Athena's header row: first page only
        row("(root)", "README", "2", "30"),
        row("processed/", "processed/0/256.jpg", "5", "5000"),
    ]
    stubber.add_response("get_query_results", page(first, "t-1"), {"QueryExecutionId": "q-1", "MaxResults": 1000})
    second = [
        row("user-uploads/", "user-uploads/x", "1", "7"),  # no name: not an owner's
        row("user-uploads/not a sub/", "user-uploads/not a sub/a.jpg", "2", "20"),  # not a valid sub
        row(f"user-uploads/{SUB}/", f"user-uploads/{SUB}/a.jpg", "3", "3000000000000"),
    ]
    stubber.add_response(
        "get_query_results", page(second), {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "t-1"}
    )

    moment, totals = inventory_truth(engine(client, clock), MANIFEST)

    assert moment == MANIFEST.created
    assert totals == {
        BUCKET_TOTAL: Totals(13, 3_000_000_005_057),
        "(root)": Totals(2, 30),
        "processed/": Totals(5, 5000),
        "user-uploads/": Totals(3, 27),
        f"user-uploads/{SUB}/": Totals(3, 3_000_000_000_000),
    }
    assert clock.sleeps == [2.0, 2.0]


def test_an_all_versions_report_counts_current_objects_only(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    versions = replace(MANIFEST, columns=(*MANIFEST.columns, "is_latest", "is_delete_marker"))
    sql = SQL.replace(
        """WHERE ("dt" = '2026-12-05-00-00')""",
        """WHERE ("dt" = '2026-12-05-00-00')\n  AND ("is_latest" AND NOT coalesce("is_delete_marker", false))""",
    )
    assert engine(client, Clock()).sql(versions) == sql
    started(stubber, sql)
    stubber.add_response("get_query_execution", execution("SUCCEEDED"), {"QueryExecutionId": "q-1"})
    stubber.add_response(
        "get_query_results", page([row(*RESULT_COLUMNS)]), {"QueryExecutionId": "q-1", "MaxResults": 1000}
    )
    assert engine(client, Clock()).owner_totals(versions) == {BUCKET_TOTAL: Totals()}


def test_a_failed_query_says_why(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    started(stubber)
    reason = "HIVE_PARTITION_SCHEMA_MISMATCH: There is a mismatch between the table and partition schemas."
    stubber.add_response("get_query_execution", execution("FAILED", reason), {"QueryExecutionId": "q-1"})
    with pytest.raises(InventoryError, match=r"^Athena query q-1 FAILED: HIVE_PARTITION_SCHEMA_MISMATCH"):
        engine(client, Clock()).owner_totals(MANIFEST)


def test_a_query_past_its_time_is_stopped(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    clock = Clock()
    started(stubber)
    for _ in range(3):  # at 0, 2 and 4 s; the third is past the 4 s allowed
        stubber.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": "q-1"})
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})
    with pytest.raises(InventoryError, match=r"^Athena query q-1 still RUNNING after 4 s"):
        engine(client, clock, timeout_seconds=4.0).owner_totals(MANIFEST)


def test_results_not_shaped_as_the_query_are_refused(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    started(stubber)
    stubber.add_response("get_query_execution", execution("SUCCEEDED"), {"QueryExecutionId": "q-1"})
    header = row("owner", "key", "n", "bytes")
    stubber.add_response("get_query_results", page([header]), {"QueryExecutionId": "q-1", "MaxResults": 1000})
    with pytest.raises(InventoryError, match=r"header \('owner', 'key', 'n', 'bytes'\), expected \('owner_group'"):
        engine(client, Clock()).owner_totals(MANIFEST)


def test_names_are_checked_before_they_go_into_sql() -> None:
    with pytest.raises(InventoryError, match=r"Athena table name 'x\"; DROP TABLE y': letters, digits and underscores"):
        AthenaInventory(object(), workgroup="w", database="d", table='x"; DROP TABLE y')  # type: ignore[arg-type]


def test_a_group_split_otherwise_than_the_sql_says_is_an_error() -> None:
    """The guard against an engine that splits strings otherwise: a key whose owner is not its group's."""
    assert totals_from_groups([("user-uploads/", f"user-uploads/{SUB}/", 1, 1)]) == {
        BUCKET_TOTAL: Totals(1, 1),
        "user-uploads/": Totals(1, 1),
    }
    with pytest.raises(InventoryError, match=r"grouped 'processed/a\.jpg' \(owner 'processed/'\) under '\(root\)'"):
        totals_from_groups([("(root)", "processed/a.jpg", 1, 1)])
    with pytest.raises(InventoryError, match=r"under 'user-uploads/'"):
        totals_from_groups([("user-uploads/", f"user-uploads/{SUB}/a.jpg", 1, 1)])
