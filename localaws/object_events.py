"""S3's object events as AWS delivers them to EventBridge, made by the local stack.

moto's own S3 events differ from AWS's in ways a consumer can come to rely on (../shared/FACTS.md): they carry no
`sequencer`, a delete carries the object's size, and each is delivered once, in order. A capacity counter tested
on those would pass here and miscount on AWS. So the events made here have what AWS gives and no more:

- `Object Created` with the key, size, eTag and a sequencer; `Object Deleted` with the key and a sequencer only,
  `reason` `DeleteObject` or `Lifecycle Expiration`;
- sequencers that grow for each key (one counter for the whole process, in hex, of varying length as S3's are);
- delivery at least once and out of order on demand (`Mischief`): duplicates, events held back and sent later,
  and (for the reconciler's tests only) events lost.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import ImgopsError

ACCOUNT = "123456789012"
DELETE_REASON = "DeleteObject"
LIFECYCLE_REASON = "Lifecycle Expiration"


class MischiefError(ImgopsError, ValueError):
    pass


class Sequencers:
    """Ever-growing sequencers, in upper-case hex. Their length grows now and then (S3's are 16 to 18 digits and are
    compared after right-padding): a consumer that compares them as plain strings or numbers gets some wrong."""

    def __init__(self, start: int = 0x5F0000000000000) -> None:
        self._next = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            value = next(self._next)
        text = f"{value:X}"
        # Right-padding with zeros leaves the order as it is: add some, as S3 sometimes sends longer ones.
        return text + "0" * (value % 3)


def object_created(
    bucket: str, key: str, size: int, etag: str, sequencer: str, when: datetime, reason: str = "PutObject"
) -> dict[str, Any]:
    return _event(
        "Object Created", bucket, when, {"key": key, "size": size, "etag": etag, "sequencer": sequencer}, reason
    )


def object_deleted(
    bucket: str, key: str, sequencer: str, when: datetime, reason: str = DELETE_REASON
) -> dict[str, Any]:
    detail = _event("Object Deleted", bucket, when, {"key": key, "sequencer": sequencer}, reason)
    detail["detail"]["deletion-type"] = "Permanently Deleted"
    return detail


def _event(detail_type: str, bucket: str, when: datetime, obj: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "reason": reason},
    }


@dataclass(frozen=True)
class Mischief:
    """How delivery misbehaves, each a probability per event: sent twice, held back (sent after later ones), lost."""

    duplicate: float = 0.0
    reorder: float = 0.0
    drop: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Mischief:
        """`duplicate=0.2,reorder=0.3` (any of duplicate, reorder, drop; each from 0 to 1)."""
        values: dict[str, float] = {}
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            name, _, number = part.partition("=")
            if name not in ("duplicate", "reorder", "drop"):
                raise MischiefError(f"{name!r} is not one of duplicate, reorder, drop (in {text!r})")
            try:
                values[name] = float(number)
            except ValueError:
                raise MischiefError(f"{part!r}: {number!r} is not a number") from None
            if not 0.0 <= values[name] <= 1.0:
                raise MischiefError(f"{part!r}: a probability is from 0 to 1")
        return cls(**values)

    def copies(self, rng: random.Random) -> list[bool]:
        """What becomes of one event: a copy per entry (none: lost; two: sent twice), each True if held back."""
        if rng.random() < self.drop:
            return []
        count = 2 if rng.random() < self.duplicate else 1
        return [rng.random() < self.reorder for _ in range(count)]


@dataclass
class Delivery:
    """Passes events on with `mischief`: `send` returns what goes out now, `flush` what was held back."""

    mischief: Mischief = field(default_factory=Mischief)
    rng: random.Random = field(default_factory=random.Random)
    held: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0

    def send(self, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            copies = self.mischief.copies(self.rng)
            self.lost += not copies
            for held in copies:
                (self.held if held else out).append(event)
        if self.held and self.rng.random() < 0.5:  # some of what was held goes out behind newer events
            release = self.rng.randrange(len(self.held) + 1)
            out += self.held[:release]
            del self.held[:release]
        return out

    def flush(self) -> list[dict[str, Any]]:
        out, self.held = self.held, []
        self.rng.shuffle(out)
        return out


def message_body(event: dict[str, Any]) -> str:
    """What EventBridge hands an SQS target: the event, as JSON."""
    return json.dumps(event)


@dataclass(frozen=True)
class Route:
    """Where a bucket's object events go: an SQS queue of the embedded AWS, delivered with `mischief`."""

    queue_name: str
    region: str
    mischief: Mischief = field(default_factory=Mischief)
    max_delay_seconds: int = 5  # a held-back event waits this long at most (SQS DelaySeconds)


class ObjectEventTap:
    """In the embedded AWS's process: every object change moto's S3 makes becomes an AWS-shaped event on a queue.

    It wraps moto's own notification hook (`moto.s3.notifications.send_event`, called for every put, POST, copy,
    completed multipart upload and delete, whatever the request), so nothing is inferred from HTTP requests. One
    difference stays: moto reports a completed multipart upload as a Put and then a CompleteMultipartUpload (AWS
    sends the second only); counted from events, that is an overwrite with the same size.
    Only the buckets routed here are watched; moto's own notifications (the worker's queue) go on as before.
    Reordering is SQS's own: a held-back event is sent with a delay."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.sequencers = Sequencers()
        self._routes: dict[str, Route] = {}
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._expiring = threading.local()  # expire() is deleting: the events say Lifecycle Expiration
        self._original: Any = None

    def route(self, buckets: Iterable[str], route: Route) -> None:
        with self._lock:
            self._routes.update(dict.fromkeys(buckets, route))

    def install(self) -> None:
        from moto.s3 import notifications

        if self._original is not None:
            return
        self._original = notifications.send_event

        def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
            self._original(account_id, event_name, bucket, key)
            self.observe(account_id, str(getattr(event_name, "value", event_name)), bucket.name, key)

        notifications.send_event = send_event

    def uninstall(self) -> None:
        from moto.s3 import notifications

        if self._original is not None:
            notifications.send_event = self._original
            self._original = None

    def observe(self, account_id: str, event_name: str, bucket: str, key: Any) -> None:
        route = self._routes.get(bucket)
        if route is None or key is None:
            return
        now = datetime.now(UTC)
        if event_name.startswith("s3:ObjectCreated:"):
            created_by = _REASONS.get(event_name.rsplit(":", 1)[-1], "PutObject")
            etag = str(getattr(key, "etag", "")).strip('"')
            event = object_created(bucket, key.name, int(key.size), etag, self.sequencers.next(), now, created_by)
        elif event_name.startswith("s3:ObjectRemoved:Delete") and not event_name.endswith("MarkerCreated"):
            removed_by = LIFECYCLE_REASON if getattr(self._expiring, "active", False) else DELETE_REASON
            event = object_deleted(bucket, key.name, self.sequencers.next(), now, removed_by)
        else:
            return  # tagging, restores, ACLs: no change to what the bucket holds
        self._send(account_id, route, event)

    def expire(self, account_id: str, bucket: str, keys: Iterable[str]) -> int:
        """What a lifecycle rule does when its day comes: the objects go, and their events say `Lifecycle
        Expiration` (moto runs no lifecycle rules). Returns how many of `keys` existed."""
        from moto.s3.models import s3_backends

        backend = s3_backends[account_id]["global"]
        expired = 0
        self._expiring.active = True
        try:
            for name in keys:
                if backend.get_bucket(bucket).keys.get(name) is None:
                    continue
                backend.delete_object(bucket, name)
                expired += 1
        finally:
            self._expiring.active = False
        return expired

    def _send(self, account_id: str, route: Route, event: dict[str, Any]) -> None:
        from moto.sqs.models import sqs_backends

        with self._lock:
            delays = [
                self._rng.randint(1, route.max_delay_seconds) if held else 0
                for held in route.mischief.copies(self._rng)
            ]
        queues = sqs_backends[account_id][route.region]
        for delay in delays:
            queues.send_message(route.queue_name, message_body(event), delay_seconds=delay)


# How S3 names the request that created an object (EventBridge's `reason`), by moto's event verb.
_REASONS = {
    "Put": "PutObject",
    "Post": "PostObject",
    "Copy": "CopyObject",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}
