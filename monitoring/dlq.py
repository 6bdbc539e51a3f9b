"""Dead-letter queue operations for on-call: look without losing, move back without duplicating.

Receiving a message hides it for its visibility timeout; `inspect` hands every message it saw straight back
(visibility 0), so the DLQ is as it was, except that SQS counts every receive: each inspection adds one to every
message's receive count (`ApproximateReceiveCount`). `redrive` deletes a message from the DLQ only after the work
queue has accepted its copy: a failure half-way leaves the rest where they were.

Each message is shown with its image item's account of the failure (pipeline.store: `attempts`, `last_error`),
and grouped by error class, the error code the worker recorded (`by_error`); `redrive` can take one class only,
and `canary_redrive` sends a few first and the rest only once those have finished.

Message ids are UUIDs; people see and type the shortest prefix that tells the listed messages apart (at least 8
characters, like git's short hashes), and `redrive` takes such a prefix as well as a whole id.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from monitoring.images import NO_ERROR_RECORDED, ago, attempts, lease_live, state
from pipeline import store
from pipeline.errors import ImgopsError, failure_class
from pipeline.worker import MalformedMessage, parse_s3_event

_PEEK_SECONDS = 30  # long enough to list a large DLQ; released at once when done
SHORT_ID_LENGTH = 8


class UnknownMessage(ImgopsError, LookupError):
    pass


class AmbiguousMessage(ImgopsError, ValueError):
    pass


class NothingToRedrive(ImgopsError, LookupError):
    pass


# Error classes of messages whose item has no `last_error` (every other class is the error code it records).
NOT_AN_S3_EVENT = "not an S3 event"
NOT_AN_UPLOAD = "not an upload"
NO_ITEM = "no item"
NO_ERROR = "no error recorded"


@dataclass(frozen=True)
class DlqMessage:
    message_id: str
    receipt_handle: str
    body: str
    sent_at: str
    first_received_at: str
    receive_count: int
    s3_key: str
    image_id: str
    status: str  # the item's own, or "no item"
    reason: str
    user_id: str = ""
    state: str = ""  # the status on-call reads (monitoring.images.state: RETRYING …)
    attempts: int = 0
    last_error: str = ""
    last_attempt_at: str = ""
    error_class: str = ""
    version: str = ""  # the upload's ETag and sequencer, as the item's sourceVersion
    uploaded_at: str = ""  # the S3 event's time
    attributes: dict[str, Any] = field(default_factory=dict, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sent_at": self.sent_at,
            "first_received_at": self.first_received_at,
            "receive_count": self.receive_count,
            "s3_key": self.s3_key,
            "image_id": self.image_id,
            "user_id": self.user_id,
            "status": self.status,
            "state": self.state,
            "reason": self.reason,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "last_attempt_at": self.last_attempt_at,
            "error_class": self.error_class,
        }


def _when(milliseconds: str | None) -> str:
    if not milliseconds:
        return ""
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC).isoformat(timespec="seconds")


def _describe(message: dict[str, Any], table: Any, now: datetime | None = None) -> DlqMessage:
    attributes = message.get("Attributes", {})
    found: dict[str, Any] = {"status": "", "reason": "", "error_class": ""}
    try:
        uploads = parse_s3_event(message["Body"])
    except MalformedMessage as exc:
        found.update(reason=f"not an S3 event: {exc}", error_class=NOT_AN_S3_EVENT)
    else:
        if uploads:
            upload = uploads[0]
            found.update(
                s3_key=upload.key,
                image_id=upload.image_id,
                user_id=upload.user_id,
                version=upload.version,
                uploaded_at=upload.event_time,
            )
            if table is not None:  # None: only the messages are wanted (a redrive of all or some ids)
                item = store.get(table, upload.image_id)
                found.update(_from_item(item, now or datetime.now(UTC)) if item is not None else {"status": NO_ITEM})
                found["error_class"] = error_class_of(item)
        else:  # S3's test event, or an object outside user-uploads/<sub>/: the worker ignores these
            found["error_class"] = NOT_AN_UPLOAD
    return DlqMessage(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        sent_at=_when(attributes.get("SentTimestamp")),
        first_received_at=_when(attributes.get("ApproximateFirstReceiveTimestamp")),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        s3_key=str(found.pop("s3_key", "")),
        image_id=str(found.pop("image_id", "")),
        attributes=message.get("MessageAttributes", {}),
        **found,
    )


def _from_item(item: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "status": str(item.get("status", "")),
        "reason": str(item.get("reason", "")),
        "user_id": str(item.get("userId", "")),
        "state": state(item, now),
        "attempts": attempts(item),
        "last_error": str(item.get("last_error", "")),
        "last_attempt_at": str(item.get("last_attempt_at", "")),
    }


def error_class_of(item: Mapping[str, Any] | None) -> str:
    """The class `by_error` files a message of an upload under: the error code its item's `last_error` starts
    with, or "no item" (nothing was ever written: the item's own write failed too, or it was never tried), or
    "no error recorded" (an item without one: an attempt that crashed or timed out, or older worker code)."""
    if item is None:
        return NO_ITEM
    return failure_class(str(item.get("last_error") or "")) or NO_ERROR


def _receive_all(sqs: Any, queue_url: str, limit: int | None) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    while limit is None or len(seen) < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10 if limit is None else max(1, min(10, limit - len(seen))),
            VisibilityTimeout=_PEEK_SECONDS,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        fresh = [m for m in batch.get("Messages", []) if m["MessageId"] not in seen]
        if not fresh:
            break
        seen.update({m["MessageId"]: m for m in fresh})
    return list(seen.values())


def _release(sqs: Any, queue_url: str, messages: list[DlqMessage]) -> None:
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
            for i, m in enumerate(messages[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def inspect(sqs: Any, dlq_url: str, table: Any, limit: int | None = None) -> list[DlqMessage]:
    """Every message on the DLQ (up to `limit`), with its image's status, attempts and last error; none consumed,
    but each one's receive count goes up by one (SQS counts every receive)."""
    now = datetime.now(UTC)
    messages = [_describe(m, table, now) for m in _receive_all(sqs, dlq_url, limit)]
    _release(sqs, dlq_url, messages)
    return messages


@dataclass(frozen=True)
class ErrorGroup:
    error_class: str
    messages: list[DlqMessage]

    def view(self) -> dict[str, Any]:
        return {
            "error_class": self.error_class,
            "count": len(self.messages),
            "message_ids": [m.message_id for m in self.messages],
            "image_ids": [m.image_id for m in self.messages if m.image_id],
            "example_error": next((m.last_error or m.reason for m in self.messages if m.last_error or m.reason), ""),
        }


def by_error(messages: list[DlqMessage]) -> list[ErrorGroup]:
    """The messages by error class (`error_class_of`), the largest group first."""
    groups: dict[str, list[DlqMessage]] = {}
    for message in messages:
        groups.setdefault(message.error_class or NO_ERROR, []).append(message)
    return [ErrorGroup(name, found) for name, found in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]


def of_class(messages: list[DlqMessage], error_class: str) -> list[DlqMessage]:
    """The messages of one error class (any letter case); none raises, naming the classes there are."""
    wanted = error_class.strip().casefold()
    chosen = [m for m in messages if m.error_class.casefold() == wanted]
    if not chosen:
        present = ", ".join(f"{g.error_class} ({len(g.messages)})" for g in by_error(messages)) or "none: it is empty"
        raise NothingToRedrive(f"no DLQ message has the error class {error_class!r} (classes on the DLQ: {present})")
    return chosen


def short_ids(message_ids: list[str], minimum: int = SHORT_ID_LENGTH) -> dict[str, str]:
    """Each id's shortest prefix, of one length for all and at least `minimum`, that no other id starts with."""
    distinct = set(message_ids)
    longest = max(map(len, distinct), default=0)
    length = minimum
    while length < longest and len({message_id[:length] for message_id in distinct}) < len(distinct):
        length += 1
    return {message_id: message_id[:length] for message_id in message_ids}


def select(messages: list[DlqMessage], wanted: set[str]) -> list[DlqMessage]:
    """The messages `wanted` names, each by its whole id or a prefix of it, in DLQ order; an id or prefix that
    names no message, or more than one, raises before anything is chosen."""
    chosen: set[str] = set()
    for text in sorted(wanted):
        matches = [m.message_id for m in messages if m.message_id == text] or [
            m.message_id for m in messages if text and m.message_id.startswith(text)
        ]
        if not matches:
            raise UnknownMessage(
                f"no message on the DLQ has the id {text!r} or one starting with it "
                "(`imgops dlq inspect` lists them; it may have been redriven or purged already)"
            )
        if len(matches) > 1:
            shown = ", ".join(sorted(matches)[:3]) + (", …" if len(matches) > 3 else "")
            raise AmbiguousMessage(f"{text!r} starts {len(matches)} message ids ({shown}): give more of the id")
        chosen.add(matches[0])
    return [m for m in messages if m.message_id in chosen]


@dataclass
class Canary:
    """A message sent ahead of the rest, and what became of it on the work queue."""

    message: DlqMessage  # as it was on the DLQ
    copy_id: str  # its copy's id on the work queue (the id it has if it comes back to the DLQ)
    outcome: str = ""  # "" while it runs; one of CANARY_FINISHED, or CANARY_FAILED, CANARY_BACK, CANARY_TIMED_OUT
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.outcome in CANARY_FINISHED

    @property
    def failed(self) -> bool:
        return bool(self.outcome) and not self.finished

    def view(self) -> dict[str, Any]:
        return {
            "message_id": self.message.message_id,
            "copy_id": self.copy_id,
            "image_id": self.message.image_id,
            "outcome": self.outcome or "running",
            "detail": self.detail,
        }


CANARY_FINISHED = ("DONE", "FAILED", "superseded")
CANARY_FAILED = "failed again"
CANARY_BACK = "back on the DLQ"
CANARY_TIMED_OUT = "timed out"


@dataclass
class RedriveResult:
    moved: list[str] = field(default_factory=list)
    method: str = "copy"
    error: str = ""
    canaries: list[Canary] = field(default_factory=list)
    left: int = 0  # chosen but still on the DLQ (a canary failed, or a move stopped half-way)

    def view(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "moved": self.moved,
            "error": self.error,
            "canaries": [c.view() for c in self.canaries],
            "left_on_dlq": self.left,
        }


def choose(
    messages: list[DlqMessage],
    *,
    ids: set[str] | None = None,
    error_class: str | None = None,
    limit: int | None = None,
) -> list[DlqMessage]:
    """What a redrive moves, in DLQ order: the messages `ids` names (see `select`), of `error_class` (see
    `of_class`), at most `limit`."""
    chosen = select(messages, ids) if ids else messages
    if error_class is not None:
        chosen = of_class(chosen, error_class)
    return chosen if limit is None else chosen[:limit]


def redrive(
    sqs: Any,
    *,
    dlq_url: str,
    queue_url: str,
    ids: set[str] | None = None,
    limit: int | None = None,
    prefer_move_task: bool = True,
    on_move: Callable[[str], None] | None = None,
    table: Any = None,
    error_class: str | None = None,
) -> RedriveResult:
    """Back to the work queue: SQS's own move task where it exists and everything is wanted, else copy+delete.
    `ids` are whole message ids or prefixes of them (see `select`: unknown or ambiguous ones move nothing);
    `error_class` (which needs the images `table`) takes only the messages of that class (see `by_error`)."""
    if prefer_move_task and not ids and limit is None and error_class is None:
        task = _start_move_task(sqs, dlq_url, queue_url)
        if task is not None:
            return RedriveResult(moved=[task], method="move-task")
    listed = inspect(sqs, dlq_url, table if error_class is not None else None)
    candidates = choose(listed, ids=ids, error_class=error_class, limit=limit)
    result = RedriveResult()
    _move(sqs, dlq_url, queue_url, candidates, result, on_move)
    return result


def _move(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    messages: list[DlqMessage],
    result: RedriveResult,
    on_move: Callable[[str], None] | None,
) -> dict[str, str]:
    """Copy each message to the work queue, then (only then) delete it from the DLQ; the first error stops it
    (`result.error`) and the messages not moved are handed back on the DLQ. Returns DLQ id → work-queue id."""
    pending = list(messages)
    copies: dict[str, str] = {}
    try:
        for message in messages:
            sent = sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=message.body,
                **({"MessageAttributes": message.attributes} if message.attributes else {}),
            )
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message.receipt_handle)  # only now: the copy is safe
            pending.remove(message)
            copies[message.message_id] = str(sent.get("MessageId", ""))
            result.moved.append(message.message_id)
            if on_move:
                on_move(message.message_id)
    except ClientError as exc:
        result.error = f"stopped after {len(copies)} of {len(messages)}: {exc}"
        result.left += len(pending)
    finally:
        with contextlib.suppress(ClientError):  # they reappear after the peek timeout anyway
            _release(sqs, dlq_url, pending)
    return copies


def visibility_timeout(sqs: Any, queue_url: str) -> int:
    """The queue's visibility timeout in seconds: how long a delivery has before SQS hands the message out again."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    return int(attributes.get("VisibilityTimeout", 30))


def default_canary_timeout(visibility_seconds: int) -> int:
    """Long enough for a canary's first delivery to end either way: it starts within seconds of the move, runs at
    most the function timeout (a sixth of the visibility timeout, as deployed), and a crashed one's lease runs out
    after that; a minute more for a busy queue. A delivery that found the image busy is retried only after the
    visibility timeout: that canary needs a longer --canary-timeout."""
    return visibility_seconds + 60


def judge(message: DlqMessage, item: Mapping[str, Any] | None, now: datetime) -> tuple[str, str]:
    """What became of a canary, from its image item: ("", "") while nothing is known yet; DONE or FAILED (and
    notified: the work is over); superseded (a newer upload of the key owns the item: the worker drops this one);
    or failed again: an attempt made since it was moved (the item counts more attempts than it did on the DLQ)
    ended without finishing, as `last_error` says (or it crashed: its lease ran out)."""
    if item is None:
        return "", ""
    if item.get("sourceVersion") != message.version and str(item.get("uploaded_at", "")) > message.uploaded_at:
        return "superseded", "a newer upload of the key replaced it"
    status = str(item.get("status", ""))
    if status in ("DONE", "FAILED") and item.get("notified_at"):
        return status, str(item.get("reason", ""))
    if attempts(item) > message.attempts and not lease_live(item, now):
        last_error = str(item.get("last_error", ""))
        if not last_error:
            return CANARY_FAILED, NO_ERROR_RECORDED
        same = last_error == message.last_error
        return CANARY_FAILED, f"{last_error} (as before the redrive)" if same else last_error
    return "", ""


def canary_redrive(
    sqs: Any,
    table: Any,
    *,
    dlq_url: str,
    queue_url: str,
    count: int,
    timeout: float,
    ids: set[str] | None = None,
    error_class: str | None = None,
    limit: int | None = None,
    poll_seconds: float = 2.0,
    dlq_check_seconds: float = 10.0,
    on_move: Callable[[str], None] | None = None,
    on_poll: Callable[[list[Canary], float], None] | None = None,
    before_rest: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RedriveResult:
    """Redrive `count` messages first (copy+delete, as `redrive`), wait until each has finished (its item DONE or
    FAILED and notified) or failed again (an attempt since the move ended in an error, or its copy is back on the
    DLQ), for at most `timeout` seconds; only if every one finished, redrive the rest of the chosen messages.
    Canaries are messages that name an image (an item to watch). `on_poll(canaries, elapsed)` is called after
    every look, `before_rest(n)` before the rest are moved; `sleep` waits between looks (a test runs the worker
    there)."""
    listed = inspect(sqs, dlq_url, table)
    candidates = choose(listed, ids=ids, error_class=error_class, limit=limit)
    watchable = [m for m in candidates if m.image_id][:count]
    if not watchable:
        raise NothingToRedrive(
            "none of the chosen messages names an image, so no canary can be watched; redrive without --canary"
        )
    result = RedriveResult(method="canary")
    copies = _move(sqs, dlq_url, queue_url, watchable, result, on_move)
    result.canaries = [Canary(m, copies[m.message_id]) for m in watchable if m.message_id in copies]
    rest = {m.message_id for m in candidates} - {m.message_id for m in watchable}
    if result.error:
        result.left += len(rest)
        return result
    _watch(sqs, table, dlq_url, result.canaries, timeout, poll_seconds, dlq_check_seconds, on_poll, sleep, clock)
    failed = [c for c in result.canaries if c.failed]
    if failed:
        first = failed[0]
        result.error = (
            f"canary {first.message.message_id} (image {first.message.image_id}) {first.outcome}: {first.detail}"
        )
        result.left += len(rest)
        return result
    if rest:
        if before_rest:
            before_rest(len(rest))
        fresh = [m for m in inspect(sqs, dlq_url, None) if m.message_id in rest]  # fresh receipt handles
        result.left += len(rest) - len(fresh)  # gone meanwhile (purged, redriven by someone else): not moved
        _move(sqs, dlq_url, queue_url, fresh, result, on_move)
    return result


def _watch(
    sqs: Any,
    table: Any,
    dlq_url: str,
    canaries: list[Canary],
    timeout: float,
    poll_seconds: float,
    dlq_check_seconds: float,
    on_poll: Callable[[list[Canary], float], None] | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    """Look at the canaries' items every `poll_seconds` (and at the DLQ every `dlq_check_seconds`) until every
    one finished, one failed, or `timeout` ran out (the ones still running are then marked timed out)."""
    started = clock()
    last_dlq_check: float | None = None
    while True:
        now = datetime.now(UTC)
        running = [c for c in canaries if not c.outcome]
        for canary in running:
            canary.outcome, canary.detail = judge(canary.message, store.get(table, canary.message.image_id), now)
        running = [c for c in canaries if not c.outcome]
        if running and (last_dlq_check is None or clock() - last_dlq_check >= dlq_check_seconds):
            last_dlq_check = clock()
            back = {m["MessageId"]: m for m in _peek(sqs, dlq_url)}
            for canary in running:
                if canary.copy_id in back:
                    item = store.get(table, canary.message.image_id) or {}
                    canary.outcome = CANARY_BACK
                    canary.detail = str(item.get("last_error") or NO_ERROR_RECORDED)
        elapsed = clock() - started
        if on_poll:
            on_poll(canaries, elapsed)
        if any(c.failed for c in canaries) or all(c.finished for c in canaries):
            return
        if elapsed >= timeout:
            for canary in canaries:
                if not canary.outcome:
                    canary.outcome = CANARY_TIMED_OUT
                    canary.detail = f"not finished after {timeout:.0f} s; it is still on the work queue"
            return
        sleep(poll_seconds)


def _peek(sqs: Any, dlq_url: str) -> list[dict[str, Any]]:
    """Every message on the DLQ, handed straight back."""
    raw = _receive_all(sqs, dlq_url, None)
    with contextlib.suppress(ClientError):
        for start in range(0, len(raw), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(raw[start : start + 10])
            ]
            sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=entries)
    return raw


def _start_move_task(sqs: Any, dlq_url: str, queue_url: str) -> str | None:
    """The message-move task's handle, or None where it cannot start (another task running, no permission)."""
    arn = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for url in (dlq_url, queue_url)
    }
    try:
        response = sqs.start_message_move_task(SourceArn=arn[dlq_url], DestinationArn=arn[queue_url])
    except ClientError:
        return None
    return str(response.get("TaskHandle", "move task started"))


def purge(sqs: Any, dlq_url: str, table: Any) -> list[DlqMessage]:
    """Delete every message on the DLQ, returning exactly what was removed."""
    removed = []
    now = datetime.now(UTC)
    for raw in _receive_all(sqs, dlq_url, None):
        described = _describe(raw, table, now)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=described.receipt_handle)
        removed.append(described)
    return removed


def as_json(messages: list[DlqMessage]) -> str:
    return json.dumps([m.view() for m in messages], indent=2)


def age(message: DlqMessage, now: datetime) -> str:
    """How long ago the upload's message was first sent (SQS keeps that time when it moves a message to the DLQ)."""
    return ago(message.sent_at, now)
