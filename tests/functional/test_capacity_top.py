"""`imgops capacity top` against a stack on a real moto server: one runaway user among ordinary ones, counted by the
capacity counters from S3's events (localaws.object_events, applied with CapacityStore as the counter function
applies them), found first without listing anything; the stack reached with --state-file, as on-call reaches
the running local stack."""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from imgops.cli import app
from localaws.object_events import Sequencers, message_body, object_created
from localaws.provision import placeholder_code
from monitoring.capacity import BUCKET_TOTAL, DEFAULT_SHARDS, CapacityStore, create_table, parse_message
from monitoring.s3_metrics import Totals
from monitoring.target import StackInfo
from pipeline.resources import Env, ResourceNames

runner = CliRunner()
MB = 2**20
RUNAWAY = "5f0c6a9e-1111-4c3b-9d1e-00000000dead"
BUSY = "5f0c6a9e-1111-4c3b-9d1e-00000000b05e"  # the most objects, small ones
ORDINARY = [f"5f0c6a9e-1111-4c3b-9d1e-{n:012d}" for n in range(1, 6)]
# (user, objects, bytes each): the runaway has few objects but most of the bytes.
POPULATION = [(RUNAWAY, 6, 900 * MB), (BUSY, 60, 1 * MB)] + [
    (sub, 10 + n, (2 + n) * MB) for n, sub in enumerate(ORDINARY)
]
PROCESSED = [(f"processed/{uuid.UUID(int=n)}/256.jpg", 20_000) for n in range(5)]


class LastShard(random.Random):
    """Every transaction to the highest shard: read with fewer shards, those counts are not seen at all."""

    def randrange(self, stop: int, *_: Any, **__: Any) -> int:  # type: ignore[override]
        return stop - 1


def deploy_counter(stack: StackInfo, shards: int | None) -> str:
    """The counter function as the CDK app deploys it, writing to `shards` shards (None: the function is gone)."""
    lambda_ = boto3.client("lambda")
    name = ResourceNames(stack.prefix).capacity_counter_function
    with contextlib.suppress(lambda_.exceptions.ResourceNotFoundException):
        lambda_.delete_function(FunctionName=name)
    if shards is not None:
        role = lambda_.get_function_configuration(FunctionName=ResourceNames(stack.prefix).worker_function)["Role"]
        lambda_.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="monitoring.capacity_counter.handler",
            Code={"ZipFile": placeholder_code()},
            Environment={"Variables": {Env.CAPACITY_SHARDS: str(shards)}},
        )
    return name


def count(stack: StackInfo, *, shards: int = DEFAULT_SHARDS, rng: random.Random | None = None) -> CapacityStore:
    """The stack's capacity table and counter function, and the counter's work: the population's uploads and some
    thumbnails."""
    dynamodb = boto3.client("dynamodb")
    table = ResourceNames(stack.prefix).capacity_table
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):  # the template's, when it has one
        create_table(dynamodb, table)
    deploy_counter(stack, shards)
    store = CapacityStore(dynamodb, table, shards=shards, rng=rng or random.Random(7))
    sequencers, when = Sequencers(), datetime(2026, 12, 7, 3, tzinfo=UTC)
    events = [
        object_created(
            stack.upload_bucket, f"user-uploads/{sub}/{uuid.uuid4()}.jpg", size, "e", sequencers.next(), when
        )
        for sub, objects, size in POPULATION
        for _ in range(objects)
    ]
    events += [
        object_created(stack.processed_bucket, key, size, "e", sequencers.next(), when) for key, size in PROCESSED
    ]
    random.Random(3).shuffle(events)
    store.apply([event for body in map(message_body, events) for event in parse_message(body)])
    return store


def cli(state_file: Path, *args: str) -> Any:
    """`imgops capacity top --state-file … ARGS` on an 80-column terminal, its output checked to fit it (an error is
    one line on stderr, however long: imgops.errors)."""
    result = runner.invoke(app, ["capacity", "top", "--state-file", str(state_file), *args], env={"COLUMNS": "80"})
    assert max((len(line) for line in result.stdout.splitlines()), default=0) <= 80, result.stdout
    return result


def ranked(lines: list[str]) -> list[list[str]]:
    """The table's ranked rows, split into words: `1  <user>  6  5.3 GB  94.6%`."""
    return [line.split() for line in lines if line[:1].isdigit() and line.rstrip().endswith("%")]


TOTAL_OBJECTS = sum(objects for _, objects, _ in POPULATION)
TOTAL_BYTES = sum(objects * size for _, objects, size in POPULATION)  # 5,710 MB
BY_BYTES = [RUNAWAY, ORDINARY[4], ORDINARY[3], BUSY, ORDINARY[2], ORDINARY[1], ORDINARY[0]]  # 5,400 MB, 84, 65, 60…


def test_the_runaway_user_comes_first(stack: StackInfo, state_file: Path) -> None:
    count(stack)

    result = cli(state_file)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    size = f"{TOTAL_BYTES / 2**30:.1f} GB ({TOTAL_BYTES:,} bytes)"
    assert lines[0] == f"{stack.upload_bucket}: {TOTAL_OBJECTS} objects, {size}, 7 owners"
    rows = ranked(lines)
    assert rows[0] == ["1", RUNAWAY, "6", "5.3", "GB", f"{100 * 6 * 900 * MB / TOTAL_BYTES:.1f}%"]
    assert [row[1] for row in rows] == BY_BYTES  # all 7: the limit is 10
    [total] = [line.split() for line in lines if "bucket total" in line]
    assert total[2:] == [str(TOTAL_OBJECTS), "5.6", "GB", "100.0%"]
    counter = ResourceNames(stack.prefix).capacity_counter_function
    assert lines[-2:] == [
        f"From the capacity counters (table {ResourceNames(stack.prefix).capacity_table}); nothing was listed.",
        f"{DEFAULT_SHARDS} counter shards: {counter}'s {Env.CAPACITY_SHARDS}",
    ]


def test_json_has_every_number_for_scripts(stack: StackInfo, state_file: Path) -> None:
    count(stack)

    result = cli(state_file, "--limit", "2", "--json")

    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert (top["bucket"], top["by"]) == (stack.upload_bucket, "bytes")
    assert top["total"] == {"objects": TOTAL_OBJECTS, "bytes": TOTAL_BYTES, "bytes_readable": "5.6 GB"}
    assert top["owner_count"] == 7
    first, second = top["owners"]
    assert first == {
        "rank": 1,
        "owner": f"user-uploads/{RUNAWAY}/",
        "user": RUNAWAY,
        "objects": 6,
        "bytes": 6 * 900 * MB,
        "bytes_readable": "5.3 GB",
        "share_of_objects": round(6 / TOTAL_OBJECTS, 6),
        "share_of_bytes": round(6 * 900 * MB / TOTAL_BYTES, 6),
    }
    assert second["user"] == BY_BYTES[1]
    assert top["others"] == {
        "owners": 5,
        "objects": TOTAL_OBJECTS - 6 - 14,
        "bytes": TOTAL_BYTES - first["bytes"] - second["bytes"],
    }
    assert top["table"] == ResourceNames(stack.prefix).capacity_table
    assert top["shards"] == DEFAULT_SHARDS
    assert top["shards_source"] == f"{ResourceNames(stack.prefix).capacity_counter_function}'s {Env.CAPACITY_SHARDS}"


def test_by_objects_the_busy_user_comes_first(stack: StackInfo, state_file: Path) -> None:
    count(stack)

    shown = cli(state_file, "--by", "objects", "--limit", "3")
    listed = cli(state_file, "--by", "objects", "--limit", "3", "--json")

    assert shown.exit_code == listed.exit_code == 0, shown.output + listed.output
    assert [o["user"] for o in json.loads(listed.stdout)["owners"]] == [BUSY, ORDINARY[4], ORDINARY[3]]
    rows = ranked(shown.stdout.splitlines())
    assert rows[0][:3] == ["1", BUSY, "60"]
    assert rows[0][-1] == f"{100 * 60 / TOTAL_OBJECTS:.1f}%"
    assert "% objects" in shown.stdout
    assert "4 other owners" in shown.stdout


def test_the_processed_bucket(stack: StackInfo, state_file: Path) -> None:
    count(stack)

    result = cli(state_file, "--bucket", "processed", "--json")

    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert top["bucket"] == stack.processed_bucket
    assert [(o["owner"], o["user"], o["objects"]) for o in top["owners"]] == [("processed/", None, 5)]


def test_shards_come_from_the_deployed_counter_function(stack: StackInfo, state_file: Path) -> None:
    """The counter writes to 12 shards, all to the last: read with the default 8, nothing would be seen."""
    store = count(stack, shards=12, rng=LastShard())
    assert DEFAULT_SHARDS < 12
    assert CapacityStore(store.client, store.table).counters(stack.upload_bucket) == {BUCKET_TOTAL: Totals()}

    result = cli(state_file, "--json")

    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert top["shards"] == 12
    assert top["shards_source"] == f"{ResourceNames(stack.prefix).capacity_counter_function}'s {Env.CAPACITY_SHARDS}"
    assert top["owners"][0]["user"] == RUNAWAY
    assert top["total"]["bytes"] == TOTAL_BYTES


def test_without_the_counter_function_the_default_and_why(stack: StackInfo, state_file: Path) -> None:
    count(stack)
    counter = deploy_counter(stack, None)

    result = cli(state_file)

    assert result.exit_code == 0, result.output
    assert ranked(result.stdout.splitlines())[0][:2] == ["1", RUNAWAY]
    assert result.stdout.splitlines()[-1] == f"{DEFAULT_SHARDS} counter shards: default, no function {counter}"


@pytest.mark.parametrize("as_json", [False, True])
def test_a_stack_without_the_capacity_table_is_one_line(stack: StackInfo, state_file: Path, as_json: bool) -> None:
    """A stack deployed before the counters: no table (the provisioned one is deleted when the template has it)."""
    table = ResourceNames(stack.prefix).capacity_table
    dynamodb = boto3.client("dynamodb")
    with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.delete_table(TableName=table)

    result = cli(state_file, *(["--json"] if as_json else []))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: local has no capacity table {table}: the stack predates the capacity counters"
    ]
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_the_stacks_own_counter_function_gives_the_shards(stack: StackInfo, state_file: Path) -> None:
    """As provisioned from the CDK app's template: its counter function sets the shards the CLI reads."""
    lambda_ = boto3.client("lambda")
    counter = ResourceNames(stack.prefix).capacity_counter_function
    variables = lambda_.get_function_configuration(FunctionName=counter)["Environment"]["Variables"]

    result = cli(state_file, "--json")

    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert top["shards"] == int(variables[Env.CAPACITY_SHARDS])
    assert top["shards_source"] == f"{counter}'s {Env.CAPACITY_SHARDS}"
    assert top["owners"] == []  # nothing counted yet
