"""Who fills a bucket: its owners ranked by bytes or objects, from the capacity counters (monitoring.capacity).

Nothing is listed: the counters already hold every owner's totals (`CapacityStore.counters`), so the answer costs
a few DynamoDB queries however big the bucket is. `rank` is the pure part (the CLI's `imgops capacity top` and
the tests call it); `read_top` reads the counters of a stack (`monitoring.target.Target`) and ranks them.

How many counter shards to read. The counter writes each batch's change to one of `IMGOPS_CAPACITY_SHARDS` shards
(DEFAULT_SHARDS when the variable is unset), and the totals are the sum over all of them: a reader that reads fewer
shards than the counter writes undercounts, silently. So there is no `--shards` option (on-call cannot know the
number, and a wrong one gives plausible, wrong numbers): the number is the deployed counter function's own, its
configuration's `IMGOPS_CAPACITY_SHARDS` (Lambda GetFunctionConfiguration on
`ResourceNames.capacity_counter_function`, where the CDK app sets it), else DEFAULT_SHARDS: what that function
uses when the variable is unset, and all a reader can assume when the function cannot be read (the reason is
given). Either way the number and its source are printed beside the counts (`Shards`). Shards are only ever
raised, never lowered, so the function's current number covers every shard ever written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from monitoring.capacity import BUCKET_TOTAL, DEFAULT_SHARDS, CapacityStore
from monitoring.images import readable_bytes
from monitoring.s3_metrics import Totals
from pipeline.auth import SUB_PATTERN
from pipeline.errors import ImgopsError, error_code
from pipeline.resources import UPLOAD_PREFIX, Env, ResourceNames

if TYPE_CHECKING:
    from monitoring.target import Target


class CapacityTableMissing(ImgopsError, LookupError):
    """The stack has no capacity table: it was deployed before the capacity counters."""


class CapacityTopError(ImgopsError, ValueError):
    """A ranking that cannot be made: a limit below 1, or a counter function whose shard count is not a number."""


class By(StrEnum):
    """What owners are ranked by."""

    BYTES = "bytes"
    OBJECTS = "objects"


class Which(StrEnum):
    """Which of the stack's buckets."""

    UPLOADS = "uploads"
    PROCESSED = "processed"


def user_of(owner: str) -> str | None:
    """The Cognito sub of an uploader's owner prefix `user-uploads/<sub>/`; None for any other owner."""
    if not (owner.startswith(UPLOAD_PREFIX) and owner.endswith("/")):
        return None
    sub = owner[len(UPLOAD_PREFIX) : -1]
    return sub if SUB_PATTERN.fullmatch(sub) else None


def share(part: int, whole: int) -> float:
    """`part` as a fraction of `whole` (0 when the whole is empty)."""
    return part / whole if whole > 0 else 0.0


def percent(fraction: float) -> str:
    """`93.1%`; `<0.1%` for a share too small to show but not nothing."""
    if 0 < fraction < 0.0005:
        return "<0.1%"
    return f"{fraction * 100:.1f}%"


@dataclass(frozen=True)
class OwnerTotals:
    """One owner's place in its bucket."""

    rank: int
    owner: str  # `user-uploads/<sub>/` or a top-level prefix (`processed/`, `(root)`)
    totals: Totals
    bucket: Totals  # the bucket's totals, for the owner's shares

    @property
    def user(self) -> str | None:
        return user_of(self.owner)

    @property
    def label(self) -> str:
        """What the table shows: the user id for an uploader (the prefix is `user-uploads/<id>/`), else the prefix
        (it ends in `/`, or is `(root)`, so the two cannot be confused)."""
        return self.user or self.owner

    def view(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "owner": self.owner,
            "user": self.user,
            "objects": self.totals.objects,
            "bytes": self.totals.size_bytes,
            "bytes_readable": readable_bytes(self.totals.size_bytes),
            "share_of_objects": round(share(self.totals.objects, self.bucket.objects), 6),
            "share_of_bytes": round(share(self.totals.size_bytes, self.bucket.size_bytes), 6),
        }


@dataclass(frozen=True)
class Shards:
    """How many counter shards were read, and where that number came from."""

    count: int
    source: str


@dataclass(frozen=True)
class TopOwners:
    """A bucket's largest owners, the rest summed, and the bucket's own totals (its counter)."""

    bucket: str
    by: By
    owners: list[OwnerTotals]
    others: Totals  # the owners beyond the limit, summed
    other_owners: int
    total: Totals
    table: str = ""
    shards: Shards | None = None

    @property
    def owner_count(self) -> int:
        return len(self.owners) + self.other_owners

    def measure(self, totals: Totals) -> int:
        return totals.size_bytes if self.by is By.BYTES else totals.objects

    def share(self, totals: Totals) -> str:
        return percent(share(self.measure(totals), self.measure(self.total)))

    def headline(self) -> str:
        """`imgops-uploads: 1,204 objects, 6.3 GB (6,764,573,081 bytes), 57 owners`."""
        total = self.total
        owners = f"{self.owner_count:,} owner{'s' if self.owner_count != 1 else ''}"
        return (
            f"{self.bucket}: {total.objects:,} object{'s' if total.objects != 1 else ''}, "
            f"{readable_bytes(total.size_bytes)} ({total.size_bytes:,} bytes), {owners}"
        )

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """The table's rows, formatted: rank, user id or prefix, objects, size, share of the bucket; then the
        other owners summed, when there are any."""
        rows = [self._row(str(o.rank), o.label, o.totals) for o in self.owners]
        if self.other_owners:
            others = f"{self.other_owners:,} other owner{'s' if self.other_owners != 1 else ''}"
            rows.append(self._row("", others, self.others))
        return rows

    def total_row(self) -> tuple[str, str, str, str, str]:
        return self._row("", "bucket total", self.total)

    def _row(self, rank: str, label: str, totals: Totals) -> tuple[str, str, str, str, str]:
        return (rank, label, f"{totals.objects:,}", readable_bytes(totals.size_bytes), self.share(totals))

    def notes(self) -> list[str]:
        """Where the numbers come from, a line each (under 80 columns with the usual names)."""
        notes = [f"From the capacity counters (table {self.table}); nothing was listed."] if self.table else []
        if self.shards is not None:
            notes.append(f"{self.shards.count} counter shards: {self.shards.source}")
        return notes

    def view(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "by": str(self.by),
            "total": {
                "objects": self.total.objects,
                "bytes": self.total.size_bytes,
                "bytes_readable": readable_bytes(self.total.size_bytes),
            },
            "owner_count": self.owner_count,
            "owners": [o.view() for o in self.owners],
            "others": {
                "owners": self.other_owners,
                "objects": self.others.objects,
                "bytes": self.others.size_bytes,
            },
            "table": self.table,
            "shards": self.shards.count if self.shards else None,
            "shards_source": self.shards.source if self.shards else None,
        }


def rank(counters: Mapping[str, Totals], bucket: str, *, by: By = By.BYTES, limit: int = 10) -> TopOwners:
    """The `limit` largest owners of `counters` (as `CapacityStore.counters` returns them) by `by`; ties by the
    other measure, then by owner. The bucket's total is its own counter (BUCKET_TOTAL), else the owners' sum."""
    if limit < 1:
        raise CapacityTopError(f"limit must be at least 1, got {limit}")
    owners = {owner: totals for owner, totals in counters.items() if owner != BUCKET_TOTAL}

    def key(item: tuple[str, Totals]) -> tuple[int, int, str]:
        owner, totals = item
        first, second = (totals.size_bytes, totals.objects) if by is By.BYTES else (totals.objects, totals.size_bytes)
        return (-first, -second, owner)

    ordered = sorted(owners.items(), key=key)
    total = counters.get(BUCKET_TOTAL) or sum(owners.values(), Totals())
    top, rest = ordered[:limit], ordered[limit:]
    return TopOwners(
        bucket=bucket,
        by=by,
        owners=[OwnerTotals(n, owner, totals, total) for n, (owner, totals) in enumerate(top, start=1)],
        others=sum((totals for _, totals in rest), Totals()),
        other_owners=len(rest),
        total=total,
    )


def counter_shards(lambda_client: Any, function: str) -> Shards:
    """The shard count the counter function `function` writes with (see the module's docstring)."""
    try:
        configuration = lambda_client.get_function_configuration(FunctionName=function)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return Shards(DEFAULT_SHARDS, f"default, no function {function}")
        return Shards(DEFAULT_SHARDS, f"default, {function} unreadable ({error_code(exc) or exc})")
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    value = str(variables.get(Env.CAPACITY_SHARDS, "")).strip()
    if not value:
        return Shards(DEFAULT_SHARDS, f"default, {function} sets no {Env.CAPACITY_SHARDS}")
    if not value.isdigit() or int(value) < 1:
        raise CapacityTopError(f"{function} has {Env.CAPACITY_SHARDS}={value!r}, not a positive integer")
    return Shards(int(value), f"{function}'s {Env.CAPACITY_SHARDS}")


def read_top(target: Target, *, which: Which = Which.UPLOADS, by: By = By.BYTES, limit: int = 10) -> TopOwners:
    """The top owners of one of the stack's buckets, read from its capacity table."""
    bucket = target.upload_bucket if which is Which.UPLOADS else target.processed_bucket
    names = ResourceNames(target.prefix)
    table = names.capacity_table
    shards = counter_shards(target.client("lambda"), names.capacity_counter_function)
    store = CapacityStore(target.client("dynamodb"), table, shards=shards.count)
    try:
        counters = store.counters(bucket)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        raise CapacityTableMissing(
            f"{target.name} has no capacity table {table}: the stack predates the capacity counters"
        ) from None
    return replace(rank(counters, bucket, by=by, limit=limit), table=table, shards=shards)
