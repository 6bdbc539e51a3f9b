"""Exact object counts and bytes per bucket and per owner, kept from S3's events instead of from listings.

Listing a bucket costs time and LIST requests in proportion to everything it holds; these counters cost in
proportion to what changes. They must stay exact under what S3 really sends (../shared/FACTS.md, "S3 event
notifications as AWS sends them"):

- events arrive at least once and out of order, and the `sequencer` orders the events of one key only;
- a removal (`Object Deleted`, including a lifecycle expiration) carries no size;
- one key may be written many times (overwrites).

So every key has a record in the capacity table: its size, whether it is present, and the newest sequencer
applied to it. An event is applied only when its sequencer is newer than the record's. The new records and the
counters' changes are written in one DynamoDB transaction, conditional on the records being as they were read: a
retried or duplicated batch finds its events already applied and changes nothing, and two counters racing on a
key retry instead of counting twice. A removal leaves a tombstone (kept `TOMBSTONE_SECONDS`, the longest an event
can wait in SQS), so a create that arrives after its own delete cannot bring the key back.

Counters are sharded: a batch adds its net change to one shard, drawn at random, so no single item takes every
write (DynamoDB allows 1,000 write units per second per partition). Totals are the sum over the shards. Each
transaction also adds the change to a journal by the second of the events' time (kept JOURNAL_SECONDS), which lets
the reconciler take the counters back to the moment of a snapshot (`counters_at`) and correct them once per
snapshot (`correct`).

Owners: `user-uploads/<sub>/` for an upload (pipeline.keys), otherwise the key's top-level prefix (`processed/`).
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from monitoring.s3_metrics import Totals, top_level_prefix
from pipeline.errors import ImgopsError
from pipeline.keys import owner_of
from pipeline.resources import UPLOAD_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, PutTypeDef, TransactWriteItemTypeDef

# The bucket's own counter, beside the owners' ones.
BUCKET_TOTAL = "*"
# Sequencers are hex strings of varying length; S3 says to compare them after right-padding the shorter with zeros.
SEQUENCER_WIDTH = 64
# The longest an event can wait in SQS (its maximum retention): a tombstone outlives every event for its key.
TOMBSTONE_SECONDS = 14 * 24 * 3600
# The journal serves reconciliations of snapshots up to this old (S3 Inventory: daily, first report within 48 h).
JOURNAL_SECONDS = 4 * 24 * 3600
# Events may carry a time slightly ahead of the counter's clock.
JOURNAL_SLACK_SECONDS = 300
DEFAULT_SHARDS = 8
# TransactWriteItems takes at most 100 items: one record per key, plus the counters and journal entries the chunk
# changes (at most two owners' and one bucket's counter per event, and as many journal entries).
MAX_EVENTS_PER_TRANSACTION = 24
MAX_ATTEMPTS = 8

# The table's key schema and TTL attribute (the CDK construct and the tests create it from these).
PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires"

_RECORD = "obj#"
_COUNTER = "count#"
_JOURNAL = "journal#"
_ADJUSTED = "adjusted#"  # the reconciler's corrections, per owner
_RECORD_SK = "-"


def create_table(client: DynamoDBClient, name: str) -> None:
    """The capacity table as the stack has it (on demand; TTL on TTL_ATTRIBUTE is the stack's to set)."""
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


class CapacityError(ImgopsError, ValueError):
    """An event the counter cannot read: its message is named in the error (it goes to the dead-letter queue)."""


class EventKind(StrEnum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectEvent:
    """One object change, as S3 reported it (`size` is None for a removal: S3 does not say)."""

    bucket: str
    key: str
    kind: EventKind
    sequencer: str  # normalized: comparable as a string (normalize_sequencer)
    size: int | None
    time: datetime

    @property
    def owner(self) -> str:
        return owner_prefix(self.key)


@dataclass(frozen=True)
class KeyRecord:
    """What the counters last knew of one key."""

    sequencer: str
    present: bool
    size: int


def owner_prefix(key: str) -> str:
    """The prefix a key is counted under: its uploader's folder, or its top-level prefix."""
    owner = owner_of(key)
    return f"{UPLOAD_PREFIX}{owner}/" if owner is not None else top_level_prefix(key)


def normalize_sequencer(raw: object) -> str:
    """Upper-case hex, right-padded with zeros to SEQUENCER_WIDTH, so string order is S3's order for one key."""
    if not isinstance(raw, str) or not raw or len(raw) > SEQUENCER_WIDTH:
        raise CapacityError(f"sequencer {raw!r} is not a hex string of 1 to {SEQUENCER_WIDTH} digits")
    try:
        int(raw, 16)
    except ValueError:
        raise CapacityError(f"sequencer {raw!r} is not hexadecimal") from None
    return raw.upper().ljust(SEQUENCER_WIDTH, "0")


def parse_message(body: str) -> list[ObjectEvent]:
    """The object events in one SQS message body: an EventBridge event from S3 (`Object Created`/`Object Deleted`)
    or an S3 event notification (`Records`, keys URL-encoded). Test events and other detail types give none."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise CapacityError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise CapacityError("not a JSON object")
    try:
        if "detail-type" in message:
            return _from_eventbridge(message)
        if "Records" in message:
            return [event for record in message["Records"] if (event := _from_record(record)) is not None]
    except CapacityError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CapacityError(f"not an S3 event ({type(exc).__name__}: {exc})") from None
    if message.get("Event") == "s3:TestEvent":
        return []
    raise CapacityError("neither an EventBridge event nor an S3 event notification")


def _from_eventbridge(message: Mapping[str, Any]) -> list[ObjectEvent]:
    kind = {"Object Created": EventKind.CREATED, "Object Deleted": EventKind.REMOVED}.get(message["detail-type"])
    if kind is None:
        return []
    detail = message["detail"]
    obj = detail["object"]
    return [
        ObjectEvent(
            bucket=detail["bucket"]["name"],
            key=obj["key"],
            kind=kind,
            sequencer=normalize_sequencer(obj.get("sequencer")),
            size=_size(obj) if kind is EventKind.CREATED else None,
            time=_timestamp(message["time"]),
        )
    ]


def _from_record(record: Mapping[str, Any]) -> ObjectEvent | None:
    name = str(record["eventName"])
    if name.startswith("ObjectCreated:"):
        kind = EventKind.CREATED
    elif name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        if name.endswith("DeleteMarkerCreated"):
            return None  # a versioned bucket's current object is gone; ours are not versioned
        kind = EventKind.REMOVED
    else:
        return None
    s3 = record["s3"]
    obj = s3["object"]
    return ObjectEvent(
        bucket=s3["bucket"]["name"],
        key=unquote_plus(obj["key"]),
        kind=kind,
        sequencer=normalize_sequencer(obj.get("sequencer")),
        size=_size(obj) if kind is EventKind.CREATED else None,
        time=_timestamp(record["eventTime"]),
    )


def _size(obj: Mapping[str, Any]) -> int:
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CapacityError(f"an object-created event without a size ({size!r})")
    return size


def _timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Plan:
    """What one chunk of events changes: new key records, and counter changes per (bucket, owner)."""

    records: dict[tuple[str, str], KeyRecord] = field(default_factory=dict)
    changes: dict[tuple[str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))
    journal: dict[tuple[str, str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))
    stale: int = 0


def second_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def plan(events: Iterable[ObjectEvent], current: Mapping[tuple[str, str], KeyRecord | None]) -> Plan:
    """Apply `events` to the key records `current` (None: never seen), in memory. Pure: the store writes the result.

    An event whose sequencer is not newer than its key's record is stale (a duplicate, or overtaken) and changes
    nothing."""
    result = Plan()
    state = dict(current)
    for event in events:
        where = (event.bucket, event.key)
        before = state.get(where)
        if before is not None and before.sequencer >= event.sequencer:
            result.stale += 1
            continue
        was = Totals(1, before.size) if before is not None and before.present else Totals()
        if event.kind is EventKind.CREATED:
            after = KeyRecord(event.sequencer, present=True, size=event.size or 0)
            now = Totals(1, after.size)
        else:
            after = KeyRecord(event.sequencer, present=False, size=0)
            now = Totals()
        state[where] = result.records[where] = after
        change = now - was
        if change == Totals():
            continue
        second = second_of(event.time)
        for owner in (BUCKET_TOTAL, event.owner):
            result.changes[(event.bucket, owner)] += change
            result.journal[(event.bucket, owner, second)] += change
    return result


@dataclass(frozen=True)
class Applied:
    events: int
    stale: int
    transactions: int
    retries: int


class CapacityStore:
    """The capacity table: key records, sharded counters, the journal and the reconciler's corrections.

    `pk`/`sk` strings; `expires` is the table's TTL attribute (tombstones and journal entries)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        shards: int = DEFAULT_SHARDS,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if shards < 1:
            raise CapacityError(f"shards must be at least 1, got {shards}")
        self.client = client
        self.table = table
        self.shards = shards
        self._rng = rng or random.Random()
        self._clock = clock

    # -- applying events ------------------------------------------------------------------------------------------

    def apply(self, events: Sequence[ObjectEvent]) -> Applied:
        """Apply a batch of events exactly once, whatever was applied before (idempotent, order-free per key)."""
        stale = transactions = retries = 0
        for start in range(0, len(events), MAX_EVENTS_PER_TRANSACTION):
            chunk = events[start : start + MAX_EVENTS_PER_TRANSACTION]
            chunk_stale, wrote, tries = self._apply_chunk(chunk)
            stale += chunk_stale
            transactions += wrote
            retries += tries
        return Applied(len(events), stale, transactions, retries)

    def _apply_chunk(self, chunk: Sequence[ObjectEvent]) -> tuple[int, int, int]:
        for attempt in range(MAX_ATTEMPTS):
            current = self.records({(event.bucket, event.key) for event in chunk})
            changes = plan(chunk, current)
            if not changes.records:
                return changes.stale, 0, attempt
            try:
                self.client.transact_write_items(TransactItems=self._writes(changes, current))
            except ClientError as exc:
                if not _lost_a_race(exc):
                    raise
                time.sleep(self._rng.uniform(0, 0.05 * 2**attempt))  # another counter changed one of these keys
                continue
            return changes.stale, 1, attempt
        raise CapacityError(f"{len(chunk)} events could not be applied in {MAX_ATTEMPTS} attempts (contention)")

    def _writes(
        self, changes: Plan, current: Mapping[tuple[str, str], KeyRecord | None]
    ) -> list[TransactWriteItemTypeDef]:
        now = int(self._clock())
        writes: list[TransactWriteItemTypeDef] = []
        for (bucket, key), record in changes.records.items():
            item: dict[str, AttributeValueTypeDef] = {
                PARTITION_KEY: {"S": f"{_RECORD}{bucket}#{key}"},
                SORT_KEY: {"S": _RECORD_SK},
                "seq": {"S": record.sequencer},
                "present": {"BOOL": record.present},
                "size": {"N": str(record.size)},
            }
            if not record.present:
                item[TTL_ATTRIBUTE] = {"N": str(now + TOMBSTONE_SECONDS)}
            put: PutTypeDef = {"TableName": self.table, "Item": item}
            before = current.get((bucket, key))
            if before is None:
                put["ConditionExpression"] = f"attribute_not_exists({PARTITION_KEY})"
            else:  # unchanged since it was read: otherwise another counter got there first, and this one reads again
                put["ConditionExpression"] = "seq = :read"
                put["ExpressionAttributeValues"] = {":read": {"S": before.sequencer}}
            writes.append({"Put": put})
        shard = self._rng.randrange(self.shards)
        for (bucket, owner), change in changes.changes.items():
            if change != Totals():
                writes.append(self._add(f"{_COUNTER}{bucket}#{shard:03d}", owner, change))
        for (bucket, owner, second), change in changes.journal.items():
            if change != Totals():
                pk = f"{_JOURNAL}{bucket}#{second[:8]}#{shard:03d}"
                writes.append(self._add(pk, f"{second}#{owner}", change, expires=now + JOURNAL_SECONDS))
        return writes

    def _add(self, pk: str, sk: str, change: Totals, *, expires: int | None = None) -> TransactWriteItemTypeDef:
        values: dict[str, AttributeValueTypeDef] = {
            ":objects": {"N": str(change.objects)},
            ":bytes": {"N": str(change.size_bytes)},
        }
        expression = "ADD objects :objects, #bytes :bytes"
        if expires is not None:
            expression += f" SET {TTL_ATTRIBUTE} = :expires"
            values[":expires"] = {"N": str(expires)}
        return {
            "Update": {
                "TableName": self.table,
                "Key": {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}},
                "UpdateExpression": expression,
                "ExpressionAttributeNames": {"#bytes": "bytes"},
                "ExpressionAttributeValues": values,
            }
        }

    def records(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], KeyRecord | None]:
        """The key records, read consistently (what the condition of the write will check)."""
        wanted = {f"{_RECORD}{bucket}#{key}": (bucket, key) for bucket, key in keys}
        found: dict[tuple[str, str], KeyRecord | None] = dict.fromkeys(wanted.values())
        pending: list[dict[str, AttributeValueTypeDef]] = [
            {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": _RECORD_SK}} for pk in wanted
        ]
        while pending:
            batch, pending = pending[:100], pending[100:]
            request: Any = {self.table: {"Keys": batch, "ConsistentRead": True}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[wanted[item[PARTITION_KEY]["S"]]] = KeyRecord(
                        sequencer=item["seq"]["S"], present=item["present"]["BOOL"], size=int(item["size"]["N"])
                    )
                request = answer.get("UnprocessedKeys") or None
        return found

    # -- reading ----------------------------------------------------------------------------------------------------

    def counters(self, bucket: str) -> dict[str, Totals]:
        """Totals per owner for `bucket` (BUCKET_TOTAL: the whole bucket), corrections included."""
        totals: dict[str, Totals] = defaultdict(Totals)
        for pk in [f"{_COUNTER}{bucket}#{shard:03d}" for shard in range(self.shards)] + [f"{_ADJUSTED}{bucket}"]:
            for item in self._query(pk):
                totals[item[SORT_KEY]["S"]] += _totals(item)
        totals[BUCKET_TOTAL] += Totals()  # an empty bucket has a total too
        return {owner: value for owner, value in totals.items() if owner == BUCKET_TOTAL or value != Totals()}

    def counters_at(self, bucket: str, moment: datetime) -> dict[str, Totals]:
        """The counters as they stood for the events up to `moment`: now, less what the journal holds after it."""
        totals = self.counters(bucket)
        after = second_of(moment)
        day = moment.astimezone(UTC).date()
        last_day = datetime.fromtimestamp(self._clock() + JOURNAL_SLACK_SECONDS, UTC).date()
        while day <= last_day:
            for shard in range(self.shards):
                pk = f"{_JOURNAL}{bucket}#{day:%Y%m%d}#{shard:03d}"
                for item in self._query(pk, after=f"{after}#~"):  # '~' sorts after every owner of that second
                    owner = item[SORT_KEY]["S"].split("#", 1)[1]
                    totals[owner] = totals.get(owner, Totals()) - _totals(item)
            day += timedelta(days=1)
        return totals

    def _query(self, pk: str, *, after: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": f"{PARTITION_KEY} = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        if after is not None:
            kwargs["KeyConditionExpression"] += f" AND {SORT_KEY} > :after"
            kwargs["ExpressionAttributeValues"][":after"] = {"S": after}
        while True:
            page = self.client.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- reconciling ------------------------------------------------------------------------------------------------

    def correct(self, bucket: str, snapshot: str, drift: Mapping[str, Totals]) -> int:
        """Take `drift` (counters minus the truth, per owner) off the counters, once per owner and `snapshot`.

        Snapshot ids sort by time (an ISO timestamp). Each owner's correction records the snapshot it was made for,
        conditionally: running the same reconciliation again, or an older one after a newer, changes nothing.
        Returns how many owners were corrected."""
        corrected = 0
        for owner, change in sorted(drift.items()):
            if change == Totals():
                continue
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key={PARTITION_KEY: {"S": f"{_ADJUSTED}{bucket}"}, SORT_KEY: {"S": owner}},
                    UpdateExpression="ADD objects :objects, #bytes :bytes SET #snapshot = :snapshot",
                    ConditionExpression="attribute_not_exists(#snapshot) OR #snapshot < :snapshot",
                    ExpressionAttributeNames={"#bytes": "bytes", "#snapshot": "snapshot"},
                    ExpressionAttributeValues={
                        ":objects": {"N": str(-change.objects)},
                        ":bytes": {"N": str(-change.size_bytes)},
                        ":snapshot": {"S": snapshot},
                    },
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue
            corrected += 1
        return corrected


def _totals(item: Mapping[str, Any]) -> Totals:
    return Totals(int(item.get("objects", {"N": "0"})["N"]), int(item.get("bytes", {"N": "0"})["N"]))


def _lost_a_race(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    if error.get("Code") in ("ConditionalCheckFailedException", "TransactionConflictException"):
        return True
    if error.get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    codes = {reason.get("Code") for reason in reasons}
    if not codes:  # moto and some SDK paths give the reasons only in the message
        message = str(error.get("Message", ""))
        return "ConditionalCheckFailed" in message or "TransactionConflict" in message
    return bool(codes & {"ConditionalCheckFailed", "TransactionConflict"})


def drift(counters: Mapping[str, Totals], truth: Mapping[str, Totals]) -> dict[str, Totals]:
    """Counters minus the truth, per owner (BUCKET_TOTAL included); owners that agree are left out."""
    owners = set(counters) | set(truth)
    result = {owner: counters.get(owner, Totals()) - truth.get(owner, Totals()) for owner in owners}
    return {owner: value for owner, value in result.items() if value != Totals()}


def truth_from_listing(objects: Iterable[tuple[str, int]]) -> dict[str, Totals]:
    """Totals per owner (and BUCKET_TOTAL) of (key, size) pairs from a listing or an inventory report."""
    totals: dict[str, Totals] = defaultdict(Totals)
    for key, size in objects:
        one = Totals(1, size)
        totals[BUCKET_TOTAL] += one
        totals[owner_prefix(key)] += one
    totals.setdefault(BUCKET_TOTAL, Totals())
    return dict(totals)
