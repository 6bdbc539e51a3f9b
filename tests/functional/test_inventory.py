"""The capacity reconciler's truth at scale, against a real (moto) bucket: an S3 Inventory report written as S3
writes it (localaws.inventory), found by its manifest, read with DuckDB, must give per owner exactly what a listing
gives (monitoring.capacity.truth_from_listing), whatever the keys look like."""

from __future__ import annotations

import json
import random
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localaws.inventory import write_inventory_report
from monitoring.capacity import BUCKET_TOTAL, owner_prefix, truth_from_listing
from monitoring.inventory import (
    DuckDBInventory,
    InventoryError,
    Manifest,
    duckdb_owner_totals,
    inventory_truth,
    latest_manifest,
    parse_manifest,
    read_manifest,
    report_prefix,
)
from monitoring.s3_metrics import Totals

SUBS = [str(uuid.UUID(int=n)) for n in range(1, 5)]
PREFIX = "inventory"
CONFIG = "capacity"
WHEN = datetime(2026, 12, 5, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3")


@pytest.fixture
def buckets(s3: Any) -> tuple[str, str]:
    source, destination = f"inv-src-{uuid.uuid4().hex[:8]}", f"inv-dst-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=source)
    s3.create_bucket(Bucket=destination)
    return source, destination


def random_keys(rng: random.Random, count: int) -> list[str]:
    """Uploads of several owners and the shapes that are not an owner's, processed/ keys, root keys, and characters
    that URL-encoding (CSV inventories, event notifications) would change."""
    odd = ["a b", "a+b", "ünïcødé", "日本語", "%20", "50%_off", "it's", 'q"uote', "tab\tname", "~tilde", "émoji😀"]
    shapes: list[Callable[[], str]] = [
        lambda: f"user-uploads/{rng.choice(SUBS)}/{uuid.uuid4()}.jpg",
        lambda: f"user-uploads/{rng.choice(SUBS)}/{rng.choice(odd)}.png",
        lambda: f"user-uploads/{rng.choice(SUBS)}/nested/{rng.choice(odd)}",
        lambda: f"user-uploads/{rng.choice(SUBS)}/",  # a folder marker: no name, not an owner's
        lambda: f"user-uploads/{rng.choice(SUBS)}/dir/",  # a name ending in '/': not an owner's
        lambda: f"user-uploads/{rng.choice(odd)}/x.jpg",  # not a valid sub
        lambda: f"user-uploads/-{rng.choice(SUBS)}/x.jpg",  # a sub must start with a letter or digit
        lambda: "user-uploads//x.jpg",
        lambda: f"user-uploads/{rng.choice(SUBS)}",  # no second '/'
        lambda: f"user-uploadsX/{rng.choice(SUBS)}/x.jpg",
        lambda: f"processed/{uuid.uuid4()}/{rng.choice([256, 1024])}.jpg",
        lambda: f"{rng.choice(odd)}/{rng.choice(odd)}",
        lambda: rng.choice(odd),  # at the root
        lambda: f"(root)/{rng.choice(odd)}",
        lambda: "(root)",
        lambda: f"/{rng.choice(odd)}",  # an empty first segment
    ]
    return list({rng.choice(shapes)() for _ in range(count)})


def fill(s3: Any, bucket: str, keys: list[str], rng: random.Random) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * rng.randrange(0, 3000))


def listing(s3: Any, bucket: str) -> Iterator[tuple[str, int]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            yield obj["Key"], obj["Size"]


def test_the_report_read_with_duckdb_is_the_listing(s3: Any, buckets: tuple[str, str], tmp_path: Path) -> None:
    source, destination = buckets
    rng = random.Random(20261205)
    fill(s3, source, random_keys(rng, 150), rng)
    write_inventory_report(s3, source, destination, prefix=PREFIX, config_id=CONFIG, now=WHEN, rows_per_file=17)

    key = latest_manifest(s3, destination, PREFIX, source, CONFIG)
    assert key == f"{PREFIX}/{source}/{CONFIG}/2026-12-05T00-00Z/manifest.json"
    manifest = read_manifest(s3, destination, key)
    assert (manifest.source_bucket, manifest.destination_bucket, manifest.created) == (source, destination, WHEN)
    assert len(manifest.files) > 1  # several data files, as S3 writes a big report
    assert all(file_key.startswith(f"{PREFIX}/{source}/{CONFIG}/data/") for file_key in manifest.file_keys)

    truth = truth_from_listing(listing(s3, source))
    assert len(truth) > 8  # several owners, processed/, the root, the odd prefixes
    assert inventory_truth(DuckDBInventory(s3), manifest) == (WHEN, truth)

    for file_key in manifest.file_keys:  # the same files from a local copy of the destination bucket
        (tmp_path / file_key).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(destination, file_key, str(tmp_path / file_key))
    assert DuckDBInventory(local_root=tmp_path).owner_totals(manifest) == truth

    # The hive partition Athena reads is this report's, and lists exactly its files.
    symlink = s3.get_object(
        Bucket=destination, Key=f"{PREFIX}/{source}/{CONFIG}/hive/dt={manifest.partition}/symlink.txt"
    )
    urls = symlink["Body"].read().decode().splitlines()
    assert urls == [f"s3://{destination}/{file_key}" for file_key in manifest.file_keys]


def test_an_empty_bucket_has_a_total_of_zero(s3: Any, buckets: tuple[str, str]) -> None:
    source, destination = buckets
    key = write_inventory_report(s3, source, destination, prefix=PREFIX, config_id=CONFIG, now=WHEN)
    manifest = read_manifest(s3, destination, key)
    assert DuckDBInventory(s3).owner_totals(manifest) == {BUCKET_TOTAL: Totals()} == truth_from_listing([])


def test_all_versions_reports_count_current_objects_only(s3: Any, buckets: tuple[str, str]) -> None:
    """IncludedObjectVersions=All lists old versions and delete markers too: the query keeps what a listing shows."""
    source, destination = buckets
    s3.put_bucket_versioning(Bucket=source, VersioningConfiguration={"Status": "Enabled"})
    rng = random.Random(7)
    keys = random_keys(rng, 40)
    fill(s3, source, keys, rng)
    fill(s3, source, keys[:15], rng)  # overwritten: an old version each
    for key in keys[10:20]:
        s3.delete_object(Bucket=source, Key=key)  # delete markers
    manifest_key = write_inventory_report(
        s3, source, destination, prefix=PREFIX, config_id=CONFIG, now=WHEN, all_versions=True
    )
    manifest = read_manifest(s3, destination, manifest_key)
    assert manifest.all_versions
    assert {"version_id", "is_latest", "is_delete_marker"} <= set(manifest.columns)
    assert DuckDBInventory(s3).owner_totals(manifest) == truth_from_listing(listing(s3, source))


def test_latest_manifest_is_the_newest_complete_report(s3: Any, buckets: tuple[str, str]) -> None:
    source, destination = buckets
    assert latest_manifest(s3, destination, PREFIX, source, CONFIG) is None
    s3.put_object(Bucket=source, Key="a.jpg", Body=b"a")
    older = write_inventory_report(s3, source, destination, prefix=PREFIX, config_id=CONFIG, now=WHEN)
    s3.put_object(Bucket=source, Key="b.jpg", Body=b"bb")
    newer = datetime(2026, 12, 6, 0, 0, 42, tzinfo=UTC)  # S3 names report folders to the minute
    newest = write_inventory_report(s3, source, destination, prefix=PREFIX, config_id=CONFIG, now=newer)
    # A report S3 is still writing: its folder has no manifest yet.
    base = report_prefix(PREFIX, source, CONFIG)
    s3.put_object(Bucket=destination, Key=f"{base}2026-12-07T00-00Z/manifest.tmp", Body=b"")
    # Another configuration and another source bucket beside it are not this one's.
    write_inventory_report(
        s3, source, destination, prefix=PREFIX, config_id="other", now=datetime(2027, 1, 1, tzinfo=UTC)
    )

    assert latest_manifest(s3, destination, PREFIX, source, CONFIG) == newest != older
    manifest = read_manifest(s3, destination, newest)
    assert manifest.created == newer  # the time its listing began, to the millisecond
    assert manifest.partition == "2026-12-06-00-00"
    assert DuckDBInventory(s3).owner_totals(manifest)[BUCKET_TOTAL] == Totals(2, 3)


def test_a_report_without_a_prefix_is_found_too(s3: Any, buckets: tuple[str, str]) -> None:
    source, destination = buckets
    key = write_inventory_report(s3, source, destination, prefix="", config_id=CONFIG, now=WHEN)
    assert key == f"{source}/{CONFIG}/2026-12-05T00-00Z/manifest.json"
    assert latest_manifest(s3, destination, "", source, CONFIG) == key


def test_a_changed_data_file_or_manifest_is_refused(s3: Any, buckets: tuple[str, str]) -> None:
    source, destination = buckets
    s3.put_object(Bucket=source, Key="processed/a/256.jpg", Body=b"abc")
    key = write_inventory_report(s3, source, destination, prefix=PREFIX, config_id=CONFIG, now=WHEN)
    manifest = read_manifest(s3, destination, key)
    s3.put_object(Bucket=destination, Key=manifest.file_keys[0], Body=b"not the report")
    with pytest.raises(InventoryError, match=r"14 bytes with MD5 [0-9a-f]{32}, the manifest says \d+ bytes"):
        DuckDBInventory(s3).owner_totals(manifest)
    s3.put_object(Bucket=destination, Key=key.replace("manifest.json", "manifest.checksum"), Body=b"0" * 32)
    with pytest.raises(InventoryError, match=r"MD5 [0-9a-f]{32} differs from .*manifest\.checksum"):
        read_manifest(s3, destination, key)
    s3.delete_object(Bucket=destination, Key=key.replace("manifest.json", "manifest.checksum"))
    with pytest.raises(InventoryError, match=r"manifest\.checksum does not exist"):
        read_manifest(s3, destination, key)


# -- manifests S3 would not write for a Parquet report, or not at all ---------------------------------------------

GOOD: dict[str, Any] = {
    "sourceBucket": "src",
    "destinationBucket": "arn:aws:s3:::dst",
    "version": "2016-11-30",
    "creationTimestamp": "1764892800000",
    "fileFormat": "Parquet",
    "fileSchema": "message s3.inventory {  required binary bucket (STRING);  required binary key (STRING);  "
    "optional int64 size;  optional int64 last_modified_date (TIMESTAMP(MILLIS,true));  optional binary e_tag "
    "(STRING);}",
    "files": [{"key": "inventory/src/capacity/data/a.parquet", "size": 10, "MD5checksum": "0" * 32}],
}


def test_a_manifest_as_s3_writes_it() -> None:
    manifest = parse_manifest(json.dumps(GOOD), key="inventory/src/capacity/2025-12-05T00-00Z/manifest.json")
    assert manifest == Manifest(
        source_bucket="src",
        destination_bucket="dst",
        created=datetime(2025, 12, 5, tzinfo=UTC),
        file_format="Parquet",
        columns=("bucket", "key", "size", "last_modified_date", "e_tag"),
        files=manifest.files,
        key="inventory/src/capacity/2025-12-05T00-00Z/manifest.json",
    )
    assert manifest.file_keys == ("inventory/src/capacity/data/a.parquet",)
    assert (manifest.partition, manifest.all_versions) == ("2025-12-05-00-00", False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fileFormat": "CSV"}, r"fileFormat is 'CSV'; only Parquet reports can be read"),
        ({"fileFormat": "ORC"}, r"fileFormat is 'ORC'; only Parquet"),
        ({"version": "2020-01-01"}, r"version is '2020-01-01', not '2016-11-30'"),
        ({"sourceBucket": None}, r"sourceBucket is None, not a non-empty string"),
        ({"destinationBucket": "dst"}, r"destinationBucket 'dst' is not an ARN arn:aws:s3:::<bucket>"),
        ({"creationTimestamp": "2025-12-05"}, r"creationTimestamp '2025-12-05' is not milliseconds since the epoch"),
        ({"creationTimestamp": 1764892800000}, r"creationTimestamp is 1764892800000, not a non-empty string"),
        ({"fileSchema": "struct<bucket:string,key:string>"}, r"fileSchema 'struct<bucket.* is not a Parquet message"),
        (
            {"fileSchema": "message s3.inventory { required binary bucket (STRING); required binary key (STRING);}"},
            r"fileSchema has no size column \(add Size to the configuration's optional fields\)",
        ),
        ({"fileSchema": "message s3.inventory { key; }"}, r"fileSchema field 'key' is not <repetition> <type> <name>"),
        ({"files": {}}, r"files is dict, not a list"),
        ({"files": [{"key": "k", "size": -1, "MD5checksum": "0" * 32}]}, r"files\[0\]\.size is -1, not a byte count"),
        ({"files": [{"key": "k", "size": 1, "MD5checksum": "xyz"}]}, r"files\[0\]\.MD5checksum is 'xyz', not an MD5"),
        ({"files": [{"size": 1, "MD5checksum": "0" * 32}]}, r"files\[0\]\.key is None"),
    ],
)
def test_a_bad_manifest_says_what_is_wrong(change: dict[str, Any], message: str) -> None:
    document = {**GOOD, **change}
    with pytest.raises(InventoryError, match=message):
        parse_manifest(json.dumps(document))


def test_not_a_manifest_at_all() -> None:
    with pytest.raises(InventoryError, match=r"^manifest is not JSON: Expecting value"):
        parse_manifest("sourceBucket,key,size\n")
    with pytest.raises(InventoryError, match=r"^manifest is not a JSON object"):
        parse_manifest("[]")
    with pytest.raises(InventoryError, match=r"not at <report prefix>/<YYYY-MM-DDTHH-MMZ>/manifest\.json"):
        parse_manifest(json.dumps(GOOD), key="inventory/src/capacity/latest/manifest.json")


# -- the SQL's groups against owner_prefix, over any key shape ---------------------------------------------------

_SEGMENT = st.one_of(
    st.sampled_from(["user-uploads", "processed", "(root)", "", *SUBS, "-x", "a_b", "A" * 129, "a b", "x%", "ü"]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=6),
)
KEYS = st.lists(st.builds("/".join, st.lists(_SEGMENT, min_size=1, max_size=4)).filter(bool), max_size=30)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=KEYS, sizes=st.randoms(use_true_random=False))
def test_the_sql_groups_keys_as_owner_prefix_does(keys: list[str], sizes: random.Random) -> None:
    objects = [(key, sizes.randrange(0, 1 << 40)) for key in keys]
    table = pa.table({"key": [key for key, _ in objects], "size": pa.array([s for _, s in objects], pa.int64())})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.parquet"
        pq.write_table(table, path)
        assert duckdb_owner_totals([path], all_versions=False) == truth_from_listing(objects)


def test_the_edge_cases_by_name(tmp_path: Path) -> None:
    """The shapes owner_of turns away, each beside a valid upload of the same sub."""
    sub = SUBS[0]
    expected = {
        f"user-uploads/{sub}/a.jpg": f"user-uploads/{sub}/",
        f"user-uploads/{sub}/a/b/c.jpg": f"user-uploads/{sub}/",
        f"user-uploads/{sub}/": "user-uploads/",
        f"user-uploads/{sub}/dir/": "user-uploads/",
        f"user-uploads/{sub}": "user-uploads/",
        "user-uploads/": "user-uploads/",
        "user-uploads//a.jpg": "user-uploads/",
        "user-uploads/not a sub/a.jpg": "user-uploads/",
        f"user-uploads/{'a' * 129}/a.jpg": "user-uploads/",
        "user-uploads/_x/a.jpg": "user-uploads/",
        "processed/a/256.jpg": "processed/",
        "/leading": "/",
        "(root)/a": "(root)/",
        "(root)": "(root)",
        "README": "(root)",
    }
    assert {key: owner_prefix(key) for key in expected} == expected  # what the counters say
    table = pa.table({"key": list(expected), "size": pa.array([1] * len(expected), pa.int64())})
    pq.write_table(table, tmp_path / "report.parquet")
    totals = duckdb_owner_totals([tmp_path / "report.parquet"], all_versions=False)
    assert totals == truth_from_listing((key, 1) for key in expected)
    assert totals["user-uploads/"] == Totals(8, 8)
