"""`imgops monitoring publish` and `imgops monitoring reconcile` against a stack on the moto server: the capacity
publisher and the reconciler run once by hand, as their schedules run them, with on-call's credentials; the stack
reached with --state-file (the running local stack) or --stack-name (a deployed one, by its outputs)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from typer.testing import CliRunner

from imgops.cli import app
from localaws.inventory import write_inventory_report
from localaws.object_events import Sequencers, message_body, object_created
from monitoring import reconcile
from monitoring.capacity import DEFAULT_SHARDS, CapacityStore, create_table, parse_message
from monitoring.target import StackInfo
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, ResourceNames, StackOutputs
from tests.functional.conftest import capacity_queues_caught_up, outputs_stack
from tests.iam import CallRecorder

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef

runner = CliRunner()
SUB = "5f0c6a9e-1111-4c3b-9d1e-00000000c0de"
OTHER = "5f0c6a9e-1111-4c3b-9d1e-00000000f00d"


def cli(*args: str) -> Any:
    """`imgops monitoring ARGS` on an 80-column terminal, its output checked to fit it (an error is one line on
    stderr, however long: imgops.errors)."""
    result = runner.invoke(app, ["monitoring", *args], env={"COLUMNS": "80"})
    assert max((len(line) for line in result.stdout.splitlines()), default=0) <= 80, result.stdout
    return result


def store(stack: StackInfo) -> CapacityStore:
    return CapacityStore(boto3.client("dynamodb"), ResourceNames(stack.prefix).capacity_table, shards=DEFAULT_SHARDS)


def put(stack: StackInfo, bucket: str, sizes: dict[str, int], *, lose: str | None = None) -> None:
    """The objects, and their object events applied to the counters as the counter function applies them (the
    event of `lose` never arrives). The events are 5 minutes old: none is newer than a snapshot taken now."""
    s3, sequencers, when = boto3.client("s3"), Sequencers(), datetime.now(UTC) - timedelta(minutes=5)
    events = []
    for key, size in sizes.items():
        etag = s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)["ETag"]
        if key != lose:
            events.append(object_created(bucket, key, size, etag, sequencers.next(), when))
    store(stack).apply([parsed for event in events for parsed in parse_message(message_body(event))])


def customs3(name: str, bucket: str, prefix: str | None = None) -> list[float]:
    dimensions: list[DimensionTypeDef] = [{"Name": "BucketName", "Value": bucket}]
    if prefix is not None:
        dimensions.append({"Name": "Prefix", "Value": prefix})
    answer = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="CustomS3",
        MetricName=name,
        Dimensions=dimensions,
        StartTime=datetime.now(UTC) - timedelta(minutes=10),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )
    return [float(point["Maximum"]) for point in answer["Datapoints"]]


def row(stdout: str, bucket: str) -> list[str]:
    """A bucket's row of `publish`'s table, split into words."""
    [line] = [line for line in stdout.splitlines() if line.split()[:1] == [bucket]]
    return line.split()


def block(stdout: str, bucket: str) -> dict[str, str]:
    """A bucket's indented `label  value` lines in `reconcile`'s output, label → value."""
    lines = stdout.splitlines()
    start = lines.index(bucket) + 1
    end = next((n for n in range(start, len(lines)) if not lines[n].startswith("  ")), len(lines))
    pairs = (line.strip().split("  ", 1) for line in lines[start:end])
    return {label: value.strip() for label, value in pairs}


UPLOADS = {f"user-uploads/{SUB}/a.jpg": 3000, f"user-uploads/{SUB}/b.jpg": 500, f"user-uploads/{OTHER}/c.jpg": 70}


# --- publish ---------------------------------------------------------------------------------------------------


def test_publish_publishes_the_counters_and_lists_nothing(
    stack: StackInfo, state_file: Path, iam_recorder: CallRecorder
) -> None:
    put(stack, stack.upload_bucket, UPLOADS)
    put(stack, stack.processed_bucket, {f"processed/{uuid.uuid4()}/256.jpg": 40})
    mark = iam_recorder.mark()

    result = cli("publish", "--state-file", str(state_file))

    assert result.exit_code == 0, result.output
    assert row(result.stdout, stack.upload_bucket)[1:] == ["3", "3,570", "2"]
    assert row(result.stdout, stack.processed_bucket)[1:] == ["1", "40", "1"]
    lines = result.stdout.splitlines()
    assert lines[0].rstrip() == f"CustomS3 on the local stack ({stack.endpoint_url})"
    # Per bucket: ScanIncomplete, the bucket's count and size, each owner's.
    assert "published 12 datums in 1 PutMetricData call" in lines
    table = ResourceNames(stack.prefix).capacity_table
    assert f"From the capacity counters (table {table}); nothing was listed." in lines
    assert f"{DEFAULT_SHARDS} counter shards: {ResourceNames(stack.prefix).capacity_counter_function}'s" in (
        result.stdout
    )
    assert customs3("BucketSizeBytes", stack.upload_bucket) == [3570.0]
    assert customs3("NumberOfObjects", stack.upload_bucket, f"user-uploads/{SUB}/") == [2.0]
    assert customs3("BucketSizeBytes", stack.processed_bucket, "processed/") == [40.0]
    # The counters only: no bucket listed, no object read.
    actions = {call.action for call in iam_recorder.since(mark)}
    assert {"dynamodb:Query", "cloudwatch:PutMetricData"} <= actions
    assert not [action for action in actions if action.startswith("s3:")]


def test_publish_as_json(stack: StackInfo, state_file: Path) -> None:
    put(stack, stack.upload_bucket, UPLOADS)

    result = cli("publish", "--state-file", str(state_file), "--json")

    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["buckets"] == [
        {"bucket": stack.upload_bucket, "objects": 3, "bytes": 3570, "owners": 2},
        {"bucket": stack.processed_bucket, "objects": 0, "bytes": 0, "owners": 0},
    ]
    assert (view["target"], view["table"], view["shards"]) == (
        "local",
        ResourceNames(stack.prefix).capacity_table,
        DEFAULT_SHARDS,
    )
    assert (view["datums"], view["put_calls"]) == (10, 1)


def test_publish_finds_a_deployed_stack_by_its_outputs(stack: StackInfo, unique_prefix: str) -> None:
    put(stack, stack.processed_bucket, {f"processed/{uuid.uuid4()}/256.jpg": 40})

    result = cli("publish", "--stack-name", f"{unique_prefix}-pipeline")
    missing = cli("publish", "--stack-name", f"{unique_prefix}-nope")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].rstrip() == f"CustomS3 on aws:{unique_prefix}-pipeline"
    assert customs3("NumberOfObjects", stack.processed_bucket) == [1.0]
    assert missing.exit_code == 1
    assert f"cannot read stack '{unique_prefix}-nope'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_stack_without_the_capacity_table_is_one_line(stack: StackInfo, state_file: Path) -> None:
    table = ResourceNames(stack.prefix).capacity_table
    boto3.client("dynamodb").delete_table(TableName=table)

    for command in ("publish", "reconcile"):
        result = cli(command, "--state-file", str(state_file))

        assert result.exit_code == 1, result.output
        assert result.stderr.strip() == (
            f"error: local has no capacity table {table}: the stack predates the capacity counters"
        )


# --- reconcile -------------------------------------------------------------------------------------------------


def test_reconcile_reports_drift_then_corrects_it_when_a_second_run_confirms_it(
    stack: StackInfo, state_file: Path
) -> None:
    put(stack, stack.upload_bucket, UPLOADS, lose=f"user-uploads/{OTHER}/c.jpg")

    first = cli("reconcile", "--state-file", str(state_file))

    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[0].rstrip() == f"Capacity reconciled on the local stack ({stack.endpoint_url})"
    upload = block(first.stdout, stack.upload_bucket)
    assert upload["snapshot"].startswith("listing, ")
    assert upload["snapshot"].endswith(" UTC")
    assert (upload["drift"], upload["corrected"]) == ("-1 objects, -70 bytes, 1 owner drifting", "0")
    assert block(first.stdout, stack.processed_bucket)["drift"] == "+0 objects, +0 bytes, 0 owners drifting"
    assert "published 8 datums in 1 PutMetricData call" in first.stdout
    words = " ".join(first.stdout.split())
    assert "Drift is corrected when two runs in a row see it identical, while the capacity queue's" in words
    assert customs3("DriftBytes", stack.upload_bucket) == [-70.0]
    assert customs3("NumberOfObjects", stack.upload_bucket) == []  # the publisher's metric, not the reconciler's

    capacity_queues_caught_up(stack)
    second = cli("reconcile", "--state-file", str(state_file), "--json")

    assert second.exit_code == 0, second.output
    view = json.loads(second.stdout)
    assert (view["target"], view["inventory_engine"]) == ("local", "duckdb")
    [upload_view, processed_view] = view["buckets"]
    assert (upload_view["source"], upload_view["drift_objects"], upload_view["corrected"]) == ("listing", -1, 2)
    assert (processed_view["drift_objects"], processed_view["corrected"]) == (0, 0)
    third = cli("reconcile", "--state-file", str(state_file))
    assert block(third.stdout, stack.upload_bucket)["drift"].startswith("+0 objects, +0 bytes")  # as listed now


def test_reconcile_reads_the_inventory_report_of_a_bucket_too_large_to_list(
    stack: StackInfo, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = {**UPLOADS, **{f"user-uploads/{OTHER}/{n}.jpg": 10 for n in range(4)}}
    put(stack, stack.upload_bucket, many, lose=f"user-uploads/{OTHER}/c.jpg")
    put(stack, stack.processed_bucket, {f"processed/{uuid.uuid4()}/256.jpg": 40})
    s3 = boto3.client("s3")
    inventory = ResourceNames(stack.prefix).inventory_bucket
    write_inventory_report(s3, stack.upload_bucket, inventory, prefix=INVENTORY_PREFIX, config_id=INVENTORY_ID)
    # Under 5 s to list in (--timeout 15 less the safety margin) at 1 key a second: fewer than 5 keys. The uploads
    # (6 counted) are too many, the processed bucket's 1 is not.
    monkeypatch.setattr(reconcile, "LIST_KEYS_PER_SECOND", 1)

    result = cli("reconcile", "--state-file", str(state_file), "--timeout", "15")

    assert result.exit_code == 0, result.output
    upload = block(result.stdout, stack.upload_bucket)
    assert upload["snapshot"].startswith("inventory, ")
    assert upload["drift"] == "-1 objects, -70 bytes, 1 owner drifting"
    assert block(result.stdout, stack.processed_bucket)["snapshot"].startswith("listing, ")
    assert f"Inventory reports from {inventory}, read with DuckDB." in result.stdout


def test_a_bucket_too_large_to_list_without_a_report_is_not_checked(
    stack: StackInfo, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(stack, stack.upload_bucket, UPLOADS)
    monkeypatch.setattr(reconcile, "LIST_KEYS_PER_SECOND", 0)  # nothing counted is listable: the empty bucket is

    result = cli("reconcile", "--state-file", str(state_file))

    assert result.exit_code == 0, result.output
    assert block(result.stdout, stack.upload_bucket) == {
        "not checked": "too large to list, and no inventory report yet"
    }
    assert block(result.stdout, stack.processed_bucket)["snapshot"].startswith("listing, ")
    assert customs3("ScanIncomplete", stack.upload_bucket) == [1.0]
    assert customs3("DriftObjects", stack.upload_bucket) == []


def test_reconcile_a_deployed_stack_with_its_functions_settings(stack: StackInfo, unique_prefix: str) -> None:
    put(stack, stack.upload_bucket, UPLOADS)
    names = ResourceNames(unique_prefix)

    result = cli("reconcile", "--stack-name", f"{unique_prefix}-pipeline")

    assert result.exit_code == 0, result.output
    upload = block(result.stdout, stack.upload_bucket)
    assert upload["snapshot"].startswith("listing, ")
    assert upload["drift"] == "+0 objects, +0 bytes, 0 owners drifting"
    # On AWS the reports are Athena's to query: the reconciler function's workgroup and Glue database.
    words = " ".join(result.stdout.split())
    assert f"queried with Athena (workgroup {names.athena_workgroup}, database {names.glue_database})" in words


def test_reconcile_a_bucket_it_cannot_read_is_one_line_after_the_others_are_published(
    stack: StackInfo, unique_prefix: str
) -> None:
    """A stack whose upload bucket is gone (its own capacity table, the processed bucket `stack`'s)."""
    broken = ResourceNames(f"{unique_prefix}b")
    missing = broken.upload_bucket
    create_table(boto3.client("dynamodb"), broken.capacity_table)
    outputs_stack(f"{broken.prefix}-pipeline", stack, **{StackOutputs.UPLOAD_BUCKET: missing})

    result = cli("reconcile", "--stack-name", f"{broken.prefix}-pipeline")

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: could not reconcile {missing} (the other bucket's results were published)"
    )
    assert customs3("ScanIncomplete", missing) == [1.0]
    assert customs3("ScanIncomplete", stack.processed_bucket) == [0.0]
