"""S3 Inventory's daily report, made here: moto has no S3 Inventory, and the capacity reconciler's truth at scale is
read from that report (monitoring.inventory), so the local stack and the tests need one written as S3 writes it.

What S3 delivers for a Parquet configuration (AWS docs, "Locating your inventory list"), under
`<prefix>/<source bucket>/<config id>/` in the destination bucket:

- `data/<uuid>.parquet`: one row per object (per version and delete marker with IncludedObjectVersions=All):
  `bucket`, `key` (as stored, not URL-encoded: only CSV reports encode keys), then the optional fields asked for,
  in S3's column order, `last_modified_date` as int64 TIMESTAMP(MILLIS, UTC);
- `hive/dt=<YYYY-MM-DD-HH-MM>/symlink.txt`: the data files' s3:// URLs, one a line (what an Athena table reads);
- `<YYYY-MM-DDTHH-MMZ>/manifest.json`: source bucket, destination bucket ARN, version 2016-11-30, creationTimestamp
  (milliseconds, a string), fileFormat, fileSchema (the Parquet message schema) and each file's key, size and MD5;
- `<YYYY-MM-DDTHH-MMZ>/manifest.checksum`: the manifest's MD5, written last.

These formats are written out here on their own rather than taken from monitoring.inventory, which reads them: a
mistake in the reader's idea of the layout then fails the tests instead of being copied into the fake.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from monitoring.inventory import InventoryError
from pipeline.resources import INVENTORY_FIELDS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The stack's configuration (the CDK app's inventory configuration takes the same fields).
DEFAULT_FIELDS = INVENTORY_FIELDS
# S3 splits a big report into several data files; small here so the tests read more than one.
DEFAULT_ROWS_PER_FILE = 100_000


@dataclass(frozen=True)
class _Column:
    name: str
    arrow: Any  # a pyarrow DataType
    schema: str  # the manifest's fileSchema declaration


_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_BUCKET = _Column("bucket", pa.string(), "required binary bucket (STRING)")
_KEY = _Column("key", pa.string(), "required binary key (STRING)")
_VERSIONS = (
    _Column("version_id", pa.string(), "optional binary version_id (STRING)"),
    _Column("is_latest", pa.bool_(), "optional boolean is_latest"),
    _Column("is_delete_marker", pa.bool_(), "optional boolean is_delete_marker"),
)
# The optional fields this fake can fill, in S3's column order.
_OPTIONAL = {
    "Size": _Column("size", pa.int64(), "optional int64 size"),
    "LastModifiedDate": _Column(
        "last_modified_date", _TIMESTAMP, "optional int64 last_modified_date (TIMESTAMP(MILLIS,true))"
    ),
    "ETag": _Column("e_tag", pa.string(), "optional binary e_tag (STRING)"),
    "StorageClass": _Column("storage_class", pa.string(), "optional binary storage_class (STRING)"),
    "IsMultipartUploaded": _Column("is_multipart_uploaded", pa.bool_(), "optional boolean is_multipart_uploaded"),
}


def write_inventory_report(
    s3: S3Client,
    source_bucket: str,
    destination_bucket: str,
    *,
    prefix: str,
    config_id: str,
    now: datetime | None = None,
    fields: Sequence[str] = DEFAULT_FIELDS,
    all_versions: bool = False,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> str:
    """List `source_bucket` and write the report S3 Inventory would deliver for it at `now` into
    `destination_bucket`. Returns the manifest's key.

    The report's creationTimestamp is when its listing began, to the millisecond (S3: "the start date and time of
    the inventory report"); only its folders are named to the minute. A report stamped at the start of its minute
    would claim the events of that minute's first seconds did not happen yet while its rows hold them: drift."""
    unknown = [name for name in fields if name not in _OPTIONAL]
    if unknown:
        raise InventoryError(f"optional fields {unknown} are not made here (known: {', '.join(_OPTIONAL)})")
    if rows_per_file < 1:
        raise InventoryError(f"rows_per_file must be at least 1, got {rows_per_file}")
    started = (now or datetime.now(UTC)).astimezone(UTC)
    moment = started.replace(second=0, microsecond=0)
    columns = [_BUCKET, _KEY, *(_VERSIONS if all_versions else ()), *(_OPTIONAL[n] for n in _OPTIONAL if n in fields)]
    schema = pa.schema([pa.field(c.name, c.arrow, nullable=c.schema.startswith("optional")) for c in columns])
    rows = list(_versions(s3, source_bucket) if all_versions else _objects(s3, source_bucket))

    base = "/".join(part for part in (prefix.strip("/"), source_bucket, config_id) if part) + "/"
    files = []
    for start in range(0, max(len(rows), 1), rows_per_file):  # an empty bucket still gets one (empty) file
        chunk = rows[start : start + rows_per_file]
        table = pa.Table.from_pylist([{c.name: row.get(c.name) for c in columns} for row in chunk], schema=schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy")
        body = buffer.getvalue()
        key = f"{base}data/{uuid.uuid4()}.parquet"
        s3.put_object(Bucket=destination_bucket, Key=key, Body=body)
        files.append(
            {"key": key, "size": len(body), "MD5checksum": hashlib.md5(body, usedforsecurity=False).hexdigest()}
        )

    symlink = "".join(f"s3://{destination_bucket}/{file['key']}\n" for file in files)
    s3.put_object(
        Bucket=destination_bucket, Key=f"{base}hive/dt={moment:%Y-%m-%d-%H-%M}/symlink.txt", Body=symlink.encode()
    )
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{destination_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(started.timestamp() * 1000)),
        "fileFormat": "Parquet",
        "fileSchema": "message s3.inventory { " + " ".join(f"{c.schema};" for c in columns) + "}",
        "files": files,
    }
    body = json.dumps(manifest, indent=2).encode()
    manifest_key = f"{base}{moment:%Y-%m-%dT%H-%MZ}/manifest.json"
    s3.put_object(Bucket=destination_bucket, Key=manifest_key, Body=body, ContentType="application/json")
    checksum = hashlib.md5(body, usedforsecurity=False).hexdigest()
    s3.put_object(Bucket=destination_bucket, Key=f"{base}{moment:%Y-%m-%dT%H-%MZ}/manifest.checksum", Body=checksum)
    return manifest_key


def _objects(s3: S3Client, bucket: str) -> Iterator[dict[str, Any]]:
    """The current objects (IncludedObjectVersions=Current)."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            yield _row(bucket, obj)


def _versions(s3: S3Client, bucket: str) -> Iterator[dict[str, Any]]:
    """Every version and delete marker (IncludedObjectVersions=All); an unversioned bucket's objects have `null`."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            row = _row(bucket, version)
            row.update(version_id=version.get("VersionId"), is_latest=version.get("IsLatest"), is_delete_marker=False)
            yield row
        for marker in page.get("DeleteMarkers", []):
            yield {
                "bucket": bucket,
                "key": marker["Key"],
                "version_id": marker.get("VersionId"),
                "is_latest": marker.get("IsLatest"),
                "is_delete_marker": True,
                "last_modified_date": marker["LastModified"],
            }


def _row(bucket: str, listed: Any) -> dict[str, Any]:
    """An object (or object version) as ListObjectsV2 / ListObjectVersions gave it, as an inventory row."""
    etag = str(listed.get("ETag", "")).strip('"')  # S3 Inventory's e_tag has no quotes
    return {
        "bucket": bucket,
        "key": listed["Key"],
        "size": listed.get("Size", 0),
        "last_modified_date": listed["LastModified"],
        "e_tag": etag,
        "storage_class": listed.get("StorageClass", "STANDARD"),
        "is_multipart_uploaded": "-" in etag,
    }
