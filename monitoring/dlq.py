"""Dead-letter queue operations for on-call: look without losing, move back without duplicating.

Receiving a message hides it for its visibility timeout; `inspect` hands every message it saw straight back
(visibility 0), so the DLQ is as it was. `redrive` deletes a message from the DLQ only after the work queue has
accepted its copy: a failure half-way leaves the rest where they were.

Message ids are UUIDs; people see and type the shortest prefix that tells the listed messages apart (at least 8
characters, like git's short hashes), and `redrive` takes such a prefix as well as a whole id.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pipeline import store
from pipeline.errors import ImgopsError
from pipeline.worker import MalformedMessage, parse_s3_event

_PEEK_SECONDS = 30  # long enough to list a large DLQ; released at once when done
SHORT_ID_LENGTH = 8


class UnknownMessage(ImgopsError, LookupError):
    pass


class AmbiguousMessage(ImgopsError, ValueError):
    pass


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
    status: str
    reason: str
    attributes: dict[str, Any] = field(default_factory=dict, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sent_at": self.sent_at,
            "first_received_at": self.first_received_at,
            "receive_count": self.receive_count,
            "s3_key": self.s3_key,
            "image_id": self.image_id,
            "status": self.status,
            "reason": self.reason,
        }


def _when(milliseconds: str | None) -> str:
    if not milliseconds:
        return ""
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC).isoformat(timespec="seconds")


def _describe(message: dict[str, Any], table: Any) -> DlqMessage:
    attributes = message.get("Attributes", {})
    s3_key = image_id = status = reason = ""
    try:
        uploads = parse_s3_event(message["Body"])
    except MalformedMessage as exc:
        reason = f"not an S3 event: {exc}"
    else:
        if uploads:
            s3_key, image_id = uploads[0].key, uploads[0].image_id
            item = store.get(table, image_id) if table is not None else None
            if item is not None:
                status, reason = str(item.get("status", "")), str(item.get("reason", ""))
            else:
                status = "no item"
    return DlqMessage(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        sent_at=_when(attributes.get("SentTimestamp")),
        first_received_at=_when(attributes.get("ApproximateFirstReceiveTimestamp")),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        s3_key=s3_key,
        image_id=image_id,
        status=status,
        reason=reason,
        attributes=message.get("MessageAttributes", {}),
    )


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
    """Every message on the DLQ (up to `limit`), with its image's status and failure reason; none consumed."""
    messages = [_describe(m, table) for m in _receive_all(sqs, dlq_url, limit)]
    _release(sqs, dlq_url, messages)
    return messages


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
class RedriveResult:
    moved: list[str] = field(default_factory=list)
    method: str = "copy"
    error: str = ""


def redrive(
    sqs: Any,
    *,
    dlq_url: str,
    queue_url: str,
    ids: set[str] | None = None,
    limit: int | None = None,
    prefer_move_task: bool = True,
    on_move: Callable[[str], None] | None = None,
) -> RedriveResult:
    """Back to the work queue: SQS's own move task where it exists and everything is wanted, else copy+delete.
    `ids` are whole message ids or prefixes of them (see `select`: unknown or ambiguous ones move nothing)."""
    if prefer_move_task and not ids and limit is None:
        task = _start_move_task(sqs, dlq_url, queue_url)
        if task is not None:
            return RedriveResult(moved=[task], method="move-task")
    result = RedriveResult()
    listed = inspect(sqs, dlq_url, None)
    candidates = select(listed, ids) if ids else listed
    if limit is not None:
        candidates = candidates[:limit]
    pending = list(candidates)
    try:
        for message in candidates:
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=message.body,
                **({"MessageAttributes": message.attributes} if message.attributes else {}),
            )
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message.receipt_handle)  # only now: the copy is safe
            pending.remove(message)
            result.moved.append(message.message_id)
            if on_move:
                on_move(message.message_id)
    except ClientError as exc:
        result.error = f"stopped after {len(result.moved)} of {len(candidates)}: {exc}"
    finally:
        with contextlib.suppress(ClientError):  # they reappear after the peek timeout anyway
            _release(sqs, dlq_url, pending)
    return result


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
    for raw in _receive_all(sqs, dlq_url, None):
        described = _describe(raw, table)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=described.receipt_handle)
        removed.append(described)
    return removed


def as_json(messages: list[DlqMessage]) -> str:
    return json.dumps([m.view() for m in messages], indent=2)
