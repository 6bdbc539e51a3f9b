"""The truth at a snapshot for the capacity reconciler at scale: a bucket's daily S3 Inventory report (Parquet),
totalled per owner by one SQL query that Athena runs on AWS and DuckDB runs here over the same files.

A listing (`monitoring.capacity.truth_from_listing`) costs LIST requests in proportion to the bucket and stops
completing past what one run can list; an inventory report is written by S3 once a day and read by one query.

S3's layout in the destination bucket (`report_prefix`: `<destination prefix>/<source bucket>/<config id>/`):

- `<YYYY-MM-DDTHH-MMZ>/manifest.json` (+ `manifest.checksum`, the manifest's MD5): the report's files and schema;
- `data/<uuid>.parquet`: the rows (`bucket`, `key`, the optional fields; keys as stored, not URL-encoded);
- `hive/dt=<YYYY-MM-DD-HH-MM>/symlink.txt`: the data files of one report, the partition an Athena table reads.

Owners must be exactly the counters' (`monitoring.capacity.owner_prefix`), and that rests on `pipeline.keys.owner_of`,
which checks the Cognito sub against a regular expression that SQL engines do not all read alike. So the SQL
(`owner_totals_sql`, the one definition both engines run) groups keys only as finely as it can decide with plain
string operations, and each group's owner is `owner_prefix` of one of its keys, in Python (`totals_from_groups`).
The groups are built so that all keys of one group have the same owner (proof in `owner_totals_sql`).

Only the standard library and boto3 at import: the metrics Lambda bundle copies this package and has neither duckdb
nor pyarrow (on AWS the query runs in Athena), so duckdb is imported where the DuckDB engine runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from monitoring.capacity import BUCKET_TOTAL, owner_prefix
from monitoring.s3_metrics import ROOT_PREFIX, Totals
from pipeline.errors import ImgopsError
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, UPLOAD_PREFIX, Env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MANIFEST_NAME = "manifest.json"
CHECKSUM_NAME = "manifest.checksum"
MANIFEST_VERSION = "2016-11-30"
PARQUET = "Parquet"
# The columns the query reads; S3 writes `size` only when the configuration lists Size among its optional fields.
QUERY_COLUMNS = ("key", "size")
# With IncludedObjectVersions=All every version and delete marker is a row; these say which rows are current objects.
VERSION_COLUMNS = ("is_latest", "is_delete_marker")
# The report's folder (`2016-11-06T21-32Z`) and its hive partition value (`2016-11-06-21-32`).
REPORT_FOLDER = re.compile(r"(?P<day>\d{4}-\d{2}-\d{2})T(?P<hour>\d{2})-(?P<minute>\d{2})Z")
PARTITION_FORMAT = "%Y-%m-%d-%H-%M"
# What each result row of owner_totals_sql holds, in order (Athena's first result row repeats these names).
RESULT_COLUMNS = ("owner_group", "sample_key", "objects", "size_bytes")

_DESTINATION_ARN = "arn:aws:s3:::"
_SCHEMA = re.compile(r"\s*message\s+\S+\s*\{(?P<body>.*)\}\s*", re.DOTALL)
_SCHEMA_FIELD = re.compile(r"\s*(?:required|optional|repeated)\s+\w+\s+(?P<name>[A-Za-z_]\w*)\b.*", re.DOTALL)
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_ATHENA_NAME = re.compile(r"[A-Za-z0-9_]{1,255}")
_DOWNLOAD_CHUNK = 1 << 20


class InventoryError(ImgopsError, ValueError):
    """An inventory report that cannot serve as the truth (malformed, not Parquet, incomplete), or a failed query."""


@dataclass(frozen=True)
class InventoryFile:
    """One data file of a report, as the manifest lists it."""

    key: str
    size: int
    md5: str  # hex, lower case


@dataclass(frozen=True)
class Manifest:
    """What one report holds: where its files are, what they hold, and the moment it stands for."""

    source_bucket: str
    destination_bucket: str  # the bucket's name (the manifest gives its ARN)
    created: datetime  # aware, UTC: the snapshot's time
    file_format: str
    columns: tuple[str, ...]
    files: tuple[InventoryFile, ...]
    key: str | None = None  # where the manifest was read from, when known

    @property
    def file_keys(self) -> tuple[str, ...]:
        return tuple(file.key for file in self.files)

    @property
    def all_versions(self) -> bool:
        """True for an IncludedObjectVersions=All report: rows of old versions and delete markers to leave out."""
        return "is_latest" in self.columns

    @property
    def partition(self) -> str:
        """The report's hive partition (`dt`): its folder's time when the manifest's key is known, else its own."""
        parts = (self.key or "").rsplit("/", 2)
        if len(parts) >= 2:
            match = REPORT_FOLDER.fullmatch(parts[-2])
            if match is not None:
                return f"{match['day']}-{match['hour']}-{match['minute']}"
        return self.created.strftime(PARTITION_FORMAT)


class InventoryEngine(Protocol):
    """Runs owner_totals_sql over one report."""

    def owner_totals(self, manifest: Manifest) -> dict[str, Totals]: ...


# -- the report's layout and manifest -------------------------------------------------------------------------------


def report_prefix(prefix: str, source_bucket: str, config_id: str) -> str:
    """`<prefix>/<source bucket>/<config id>/`, as S3 lays a configuration's reports out (no prefix: no first part)."""
    parts = [part for part in (prefix.strip("/"), source_bucket, config_id) if part]
    return "/".join(parts) + "/"


def parse_manifest(text: str | bytes, *, key: str | None = None) -> Manifest:
    """A manifest.json as S3 writes it for a Parquet report; anything else raises InventoryError saying what is wrong.

    `key` (where it was read) gives the report's partition; it must be `.../<YYYY-MM-DDTHH-MMZ>/manifest.json`."""
    where = f"manifest {key}" if key else "manifest"
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{where} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InventoryError(f"{where} is not a JSON object")
    if key is not None:
        parts = key.rsplit("/", 2)
        if len(parts) < 2 or parts[-1] != MANIFEST_NAME or REPORT_FOLDER.fullmatch(parts[-2]) is None:
            raise InventoryError(f"{where}: not at <report prefix>/<YYYY-MM-DDTHH-MMZ>/{MANIFEST_NAME}")

    def text_field(name: str) -> str:
        value = document.get(name)
        if not isinstance(value, str) or not value:
            raise InventoryError(f"{where}: {name} is {value!r}, not a non-empty string")
        return value

    file_format = text_field("fileFormat")
    if file_format != PARQUET:
        raise InventoryError(
            f"{where}: fileFormat is {file_format!r}; only {PARQUET} reports can be read (set the inventory "
            f"configuration's format to {PARQUET})"
        )
    version = text_field("version")
    if version != MANIFEST_VERSION:
        raise InventoryError(f"{where}: version is {version!r}, not {MANIFEST_VERSION!r}")
    source_bucket = text_field("sourceBucket")
    destination = text_field("destinationBucket")
    if not destination.startswith(_DESTINATION_ARN) or len(destination) == len(_DESTINATION_ARN):
        raise InventoryError(f"{where}: destinationBucket {destination!r} is not an ARN {_DESTINATION_ARN}<bucket>")
    stamp = text_field("creationTimestamp")
    if not stamp.isdigit():
        raise InventoryError(f"{where}: creationTimestamp {stamp!r} is not milliseconds since the epoch")
    created = datetime.fromtimestamp(int(stamp) / 1000, UTC)
    columns = _schema_columns(text_field("fileSchema"), where)
    missing = [column for column in QUERY_COLUMNS if column not in columns]
    if missing:
        raise InventoryError(
            f"{where}: fileSchema has no {', '.join(missing)} column (add Size to the configuration's optional fields)"
        )
    return Manifest(
        source_bucket=source_bucket,
        destination_bucket=destination[len(_DESTINATION_ARN) :],
        created=created,
        file_format=file_format,
        columns=columns,
        files=_files(document.get("files"), where),
        key=key,
    )


def _schema_columns(schema: str, where: str) -> tuple[str, ...]:
    """The top-level column names of a Parquet message schema (`message s3.inventory { required binary key …; }`)."""
    match = _SCHEMA.fullmatch(schema)
    if match is None:
        raise InventoryError(f"{where}: fileSchema {schema[:80]!r} is not a Parquet message schema")
    columns = []
    for declaration in match["body"].split(";"):
        if not declaration.strip():
            continue
        field = _SCHEMA_FIELD.fullmatch(declaration)
        if field is None:
            raise InventoryError(f"{where}: fileSchema field {declaration.strip()!r} is not <repetition> <type> <name>")
        columns.append(field["name"])
    return tuple(columns)


def _files(raw: object, where: str) -> tuple[InventoryFile, ...]:
    if not isinstance(raw, list):
        raise InventoryError(f"{where}: files is {type(raw).__name__}, not a list")
    files = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InventoryError(f"{where}: files[{index}] is not an object")
        key, size, md5 = entry.get("key"), entry.get("size"), entry.get("MD5checksum")
        if not isinstance(key, str) or not key:
            raise InventoryError(f"{where}: files[{index}].key is {key!r}, not a non-empty string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InventoryError(f"{where}: files[{index}].size is {size!r}, not a byte count")
        if not isinstance(md5, str) or _MD5.fullmatch(md5) is None:
            raise InventoryError(f"{where}: files[{index}].MD5checksum is {md5!r}, not an MD5 in hex")
        files.append(InventoryFile(key, size, md5.lower()))
    return tuple(files)


def latest_manifest(
    s3: S3Client, destination_bucket: str, prefix: str, source_bucket: str, config_id: str
) -> str | None:
    """The key of the newest report's manifest.json, or None when there is none yet.

    Lists only the configuration's top level with Delimiter="/" (one entry per report kept, plus `data/` and `hive/`),
    so the cost does not grow with the bucket or the reports' data. A report folder without its manifest (S3 is still
    writing it) is passed over for the one before."""
    base = report_prefix(prefix, source_bucket, config_id)
    folders: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=destination_bucket, Prefix=base, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common.get("Prefix", "")[len(base) :].rstrip("/")
            if REPORT_FOLDER.fullmatch(name):
                folders.append(name)
    for folder in sorted(folders, reverse=True):  # the timestamps sort as text
        key = f"{base}{folder}/{MANIFEST_NAME}"
        try:
            s3.head_object(Bucket=destination_bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                continue
            raise
        return key
    return None


def read_manifest(s3: S3Client, destination_bucket: str, key: str) -> Manifest:
    """The manifest at `key`, checked against its manifest.checksum (both written by S3 once the report is done)."""
    if not key.endswith(f"/{MANIFEST_NAME}"):
        raise InventoryError(f"{key} is not a report's {MANIFEST_NAME}")
    body = _get(s3, destination_bucket, key)
    checksum_key = key[: -len(MANIFEST_NAME)] + CHECKSUM_NAME
    checksum = _get(s3, destination_bucket, checksum_key).decode("ascii", errors="replace").strip().lower()
    actual = hashlib.md5(body, usedforsecurity=False).hexdigest()
    if checksum != actual:
        raise InventoryError(f"manifest {key}: MD5 {actual} differs from {checksum_key} ({checksum!r})")
    return parse_manifest(body, key=key)


def _get(s3: S3Client, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise InventoryError(f"s3://{bucket}/{key} does not exist (is the report still being written?)") from None
        raise


# -- the query ------------------------------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def owner_totals_sql(source: str, *, all_versions: bool, conditions: Sequence[str] = ()) -> str:
    """Objects and bytes per key group of the inventory rows in `source` (a table or table function), for both engines.

    Only functions Athena (Trino) and DuckDB read alike: LIKE without escapes, split_part on '/', ||, min, count, sum.
    Groups, for a key k (P = UPLOAD_PREFIX, `user-uploads/`):

    1. k LIKE 'P%/%' AND k NOT LIKE '%/' → 'P<s>/', s = k's segment after P: k is P<s>/<name>, with a non-empty name
       not ending in '/', so owner_of(k) is s if s is a valid sub, else None; the same for every key with this s.
    2. else k LIKE '%/%' → '<h>/', h = k's first segment: owner_of(k) is None (h ≠ 'user-uploads', or no name, or a
       name ending in '/'), so owner_prefix(k) = top_level_prefix(k) = '<h>/'.
    3. else → '(root)': no '/', owner_prefix(k) = '(root)'.

    Every key of a group has one owner_prefix; totals_from_groups takes it from the group's `sample_key`."""
    if not re.fullmatch(r"[a-z0-9.-]+/", UPLOAD_PREFIX):  # LIKE and split_part('/', 2) below rely on this shape
        raise InventoryError(f"UPLOAD_PREFIX {UPLOAD_PREFIX!r} is not one plain path segment")
    upload = _sql_text(UPLOAD_PREFIX)
    where = list(conditions)
    if all_versions:  # current objects only, as a listing has them
        where.append('"is_latest" AND NOT coalesce("is_delete_marker", false)')
    filters = "\nWHERE " + "\n  AND ".join(f"({condition})" for condition in where) if where else ""
    owner_group, sample_key, objects, size_bytes = RESULT_COLUMNS
    return (
        "SELECT\n"
        "  CASE\n"
        f"""    WHEN "key" LIKE {_sql_text(UPLOAD_PREFIX + "%/%")} AND "key" NOT LIKE '%/'\n"""
        f"""      THEN {upload} || split_part("key", '/', 2) || '/'\n"""
        """    WHEN "key" LIKE '%/%' THEN split_part("key", '/', 1) || '/'\n"""
        f"    ELSE {_sql_text(ROOT_PREFIX)}\n"
        f"  END AS {owner_group},\n"
        f'  min("key") AS {sample_key},\n'
        f"  count(*) AS {objects},\n"
        f'  sum(coalesce("size", 0)) AS {size_bytes}\n'
        f"FROM {source}{filters}\n"
        "GROUP BY 1\n"
        "ORDER BY 1"
    )


def totals_from_groups(rows: Iterable[tuple[str, str, int, int]]) -> dict[str, Totals]:
    """Totals per owner and BUCKET_TOTAL, as truth_from_listing gives them, from owner_totals_sql's rows.

    A group's owner is owner_prefix of its sample key; a group whose sample's owner is neither the group itself nor
    P (an upload folder of an invalid sub) means an engine split keys otherwise than owner_totals_sql says: raise."""
    totals: dict[str, Totals] = defaultdict(Totals)
    for group, sample, objects, size_bytes in rows:
        owner = owner_prefix(sample)
        if owner != group and not (owner == UPLOAD_PREFIX and group.startswith(UPLOAD_PREFIX)):
            raise InventoryError(f"the query grouped {sample!r} (owner {owner!r}) under {group!r}")
        one = Totals(int(objects), int(size_bytes))
        totals[owner] += one
        totals[BUCKET_TOTAL] += one
    totals.setdefault(BUCKET_TOTAL, Totals())
    return dict(totals)


def inventory_truth(engine: InventoryEngine, manifest: Manifest) -> tuple[datetime, dict[str, Totals]]:
    """The reconciler's snapshot: the report's time (its manifest's creationTimestamp) and its totals per owner."""
    return manifest.created, engine.owner_totals(manifest)


# -- DuckDB: the same Parquet files, read here ----------------------------------------------------------------------


def duckdb_owner_totals(paths: Sequence[Path], *, all_versions: bool) -> dict[str, Totals]:
    """owner_totals_sql over local Parquet files, in an in-memory DuckDB."""
    if not paths:
        return {BUCKET_TOTAL: Totals()}
    import duckdb  # here, not at the top: the Lambda bundles have no duckdb (Athena runs the query there)

    files = ", ".join(_sql_text(str(path)) for path in paths)
    sql = owner_totals_sql(f"read_parquet([{files}], binary_as_string = true)", all_versions=all_versions)
    with duckdb.connect(":memory:") as connection:
        try:
            rows = connection.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise InventoryError(f"DuckDB could not read the report: {exc}") from None
    return totals_from_groups((str(g), str(s), int(n), int(b)) for g, s, n, b in rows)


class DuckDBInventory:
    """Runs owner_totals_sql with DuckDB over a report's Parquet files: downloaded through `s3` into a temporary
    folder, or read where they lie under `local_root` (a copy of the destination bucket: `local_root/<file key>`).
    Each file is checked against the manifest's MD5 before it is read, so a truncated copy cannot pass for the truth."""

    def __init__(self, s3: S3Client | None = None, *, local_root: Path | None = None) -> None:
        if (s3 is None) == (local_root is None):
            raise InventoryError("DuckDBInventory reads from S3 or from a local folder: give exactly one")
        self.s3 = s3
        self.local_root = local_root

    def owner_totals(self, manifest: Manifest) -> dict[str, Totals]:
        if self.local_root is not None:
            paths = [self.local_root / file.key for file in manifest.files]
            for file, path in zip(manifest.files, paths, strict=True):
                _check(file, path)
            return duckdb_owner_totals(paths, all_versions=manifest.all_versions)
        assert self.s3 is not None
        with tempfile.TemporaryDirectory(prefix="imgops-inventory-") as folder:
            paths = [
                self._download(manifest.destination_bucket, file, Path(folder) / f"{index}.parquet")
                for index, file in enumerate(manifest.files)
            ]
            return duckdb_owner_totals(paths, all_versions=manifest.all_versions)

    def _download(self, bucket: str, file: InventoryFile, path: Path) -> Path:
        assert self.s3 is not None
        digest = hashlib.md5(usedforsecurity=False)
        body = self.s3.get_object(Bucket=bucket, Key=file.key)["Body"]
        with path.open("wb") as out:
            for chunk in body.iter_chunks(_DOWNLOAD_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        _verify(file, digest.hexdigest(), path.stat().st_size, f"s3://{bucket}/{file.key}")
        return path


def _check(file: InventoryFile, path: Path) -> None:
    if not path.is_file():
        raise InventoryError(f"{path}: the report's data file {file.key} is missing")
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_DOWNLOAD_CHUNK):
            digest.update(chunk)
    _verify(file, digest.hexdigest(), path.stat().st_size, str(path))


def _verify(file: InventoryFile, md5: str, size: int, where: str) -> None:
    if md5 != file.md5 or size != file.size:
        raise InventoryError(
            f"{where}: {size} bytes with MD5 {md5}, the manifest says {file.size} bytes with MD5 {file.md5}"
        )


# -- Athena: the same SQL on AWS ------------------------------------------------------------------------------------


class AthenaClient(Protocol):
    """The calls AthenaInventory makes (boto3's athena client; no stubs for it are installed here)."""

    def start_query_execution(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def get_query_execution(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def get_query_results(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def stop_query_execution(self, **kwargs: Any) -> Mapping[str, Any]: ...


class AthenaInventory:
    """Runs owner_totals_sql in Athena over the inventory table `database.table`, restricted to the report's partition.

    The table is the one AWS documents for Parquet inventory (Hive SymlinkTextInputFormat over
    `s3://<destination>/<report prefix>/hive/`, partitioned by `dt` string, with the report's columns); its partitions
    must be known to the catalog (partition projection on `dt`, or MSCK REPAIR after each report). The workgroup says
    where results go and caps what a query may scan."""

    def __init__(
        self,
        athena: AthenaClient,
        *,
        workgroup: str,
        database: str,
        table: str,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for what, name in (("database", database), ("table", table)):
            if _ATHENA_NAME.fullmatch(name) is None:
                raise InventoryError(f"Athena {what} name {name!r}: letters, digits and underscores only")
        self.athena = athena
        self.workgroup = workgroup
        self.database = database
        self.table = table
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._clock = clock

    def sql(self, manifest: Manifest) -> str:
        partition = f'"dt" = {_sql_text(manifest.partition)}'
        source = f'"{self.database}"."{self.table}"'
        return owner_totals_sql(source, all_versions=manifest.all_versions, conditions=[partition])

    def owner_totals(self, manifest: Manifest) -> dict[str, Totals]:
        started = self.athena.start_query_execution(
            QueryString=self.sql(manifest),
            QueryExecutionContext={"Database": self.database},
            WorkGroup=self.workgroup,
        )
        execution_id = str(started["QueryExecutionId"])
        self._wait(execution_id)
        return totals_from_groups(self._rows(execution_id))

    def _wait(self, execution_id: str) -> None:
        deadline = self._clock() + self.timeout_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
            status = execution.get("Status", {})
            state = status.get("State")
            if state == "SUCCEEDED":
                return
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage", "")
                raise InventoryError(f"Athena query {execution_id} {state}: {reason}")
            if self._clock() >= deadline:
                self.athena.stop_query_execution(QueryExecutionId=execution_id)
                raise InventoryError(f"Athena query {execution_id} still {state} after {self.timeout_seconds:g} s")
            self._sleep(self.poll_seconds)

    def _rows(self, execution_id: str) -> Iterable[tuple[str, str, int, int]]:
        """The result rows, every page; the first page's first row is Athena's header (the column names)."""
        kwargs: dict[str, Any] = {"QueryExecutionId": execution_id, "MaxResults": 1000}
        first = True
        while True:
            page = self.athena.get_query_results(**kwargs)
            rows = page["ResultSet"]["Rows"]
            if first:
                header = tuple(_cells(rows[0])) if rows else ()
                if header != RESULT_COLUMNS:
                    raise InventoryError(f"Athena query {execution_id}: header {header}, expected {RESULT_COLUMNS}")
                rows, first = rows[1:], False
            for row in rows:
                cells = _cells(row)
                if len(cells) != len(RESULT_COLUMNS):
                    raise InventoryError(f"Athena query {execution_id}: row {cells} is not {RESULT_COLUMNS}")
                group, sample, objects, size_bytes = cells
                if group is None or sample is None or objects is None:
                    raise InventoryError(f"Athena query {execution_id}: row {cells} has NULLs")
                yield group, sample, int(objects), int(size_bytes or 0)
            token = page.get("NextToken")
            if not token:
                return
            kwargs["NextToken"] = token


def _cells(row: Mapping[str, Any]) -> list[str | None]:
    """A result row's values (VarCharValue; absent for NULL)."""
    return [datum.get("VarCharValue") for datum in row.get("Data", [])]


def athena_table_name(source_bucket: str) -> str:
    """The inventory table of one source bucket in the stack's Glue database (the CDK app creates it)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", source_bucket)


def inventory_source(
    s3: S3Client,
    destination_bucket: str,
    *,
    engine: str,
    prefix: str = INVENTORY_PREFIX,
    config_id: str = INVENTORY_ID,
    environ: Mapping[str, str] | None = None,
) -> Callable[[str], tuple[datetime, Callable[[], dict[str, Totals]]] | None]:
    """For a source bucket: its newest report's time and a function that totals it (the query runs only if called).

    `engine`: `athena` (AWS: the stack's workgroup and Glue database, from Env.ATHENA_WORKGROUP and
    Env.ATHENA_DATABASE) or `duckdb` (the local stack: the Parquet files through `s3`)."""
    if engine not in ("athena", "duckdb"):
        raise InventoryError(f"inventory engine {engine!r}: choose athena or duckdb")
    env = os.environ if environ is None else environ

    def reader(bucket: str) -> InventoryEngine:
        if engine == "duckdb":
            return DuckDBInventory(s3)
        import boto3

        workgroup, database = env.get(Env.ATHENA_WORKGROUP, ""), env.get(Env.ATHENA_DATABASE, "")
        if not workgroup or not database:
            raise InventoryError(f"{Env.ATHENA_WORKGROUP} and {Env.ATHENA_DATABASE} must be set for Athena")
        return AthenaInventory(
            boto3.client("athena"), workgroup=workgroup, database=database, table=athena_table_name(bucket)
        )

    def newest(bucket: str) -> tuple[datetime, Callable[[], dict[str, Totals]]] | None:
        key = latest_manifest(s3, destination_bucket, prefix, bucket, config_id)
        if key is None:
            return None
        manifest = read_manifest(s3, destination_bucket, key)
        return manifest.created, lambda: inventory_truth(reader(bucket), manifest)[1]

    return newest
