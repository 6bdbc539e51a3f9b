"""Single-image operations for on-call: what happened to an image, and run it through the worker again."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pipeline import store
from pipeline.errors import ImgopsError


class ImageNotFound(ImgopsError, LookupError):
    pass


def status(table: Any, image_id: str) -> dict[str, Any]:
    item = store.get(table, image_id)
    if item is None:
        raise ImageNotFound(f"no image {image_id} in table {table.name}")
    return item


# The worker's idempotency bookkeeping (pipeline/store.py): only `imgops images status --json` shows it.
BOOKKEEPING = frozenset({"sourceVersion", "claimToken", "claimed_at", "lease_expires", "notified_at"})

# Shown by `status_rows` in rows of their own; any other field follows them, alphabetically.
_SHOWN = frozenset(
    {
        "status", "reason", "imageId", "userId", "originalS3Key", "format", "content_type", "mode",
        "has_transparency", "width", "height", "size_bytes", "processed_bytes", "uploaded_at", "processed_at",
        "processing_ms", "processedS3Keys", "attempts", "last_error", "last_attempt_at",
    }
)  # fmt: skip

RETRYING = "RETRYING"
NO_ERROR_RECORDED = "none recorded: the attempt ended without one (a crash or a timeout?); see the worker's logs"


def state(item: Mapping[str, Any], now: datetime | None = None) -> str:
    """The status on-call reads: the item's own, except that a PROCESSING item that has been tried but that no
    attempt works on now (its claim's lease was let go after a failure, or ran out) is RETRYING: its message is
    back on the work queue, waiting for the next delivery, or parked in the DLQ. The item itself stays PROCESSING
    (pipeline.store): that is the API's answer, and a crashed attempt could not have written anything else."""
    status = str(item.get("status", "")) or "unknown"
    tried = bool(item.get("last_error")) or attempts(item) > 0
    if status == "PROCESSING" and tried and not lease_live(item, now or datetime.now(UTC)):
        return RETRYING
    return status


def attempts(item: Mapping[str, Any]) -> int:
    try:
        return int(item.get("attempts", 0) or 0)
    except (TypeError, ValueError):
        return 0


def lease_live(item: Mapping[str, Any], now: datetime) -> bool:
    """Whether a delivery holds the item's claim now (pipeline.store: a lease as long as the function timeout)."""
    try:
        return float(item.get("lease_expires", 0) or 0) > now.timestamp()
    except (TypeError, ValueError):
        return False


def status_rows(item: Mapping[str, Any], now: datetime | None = None) -> list[tuple[str, str]]:
    """The image item as on-call reads it, as (label, value) rows: status (`state`) and reason first, then how
    the attempts went if any failed (count, last error, when), then who and what, when (readable UTC times), how
    long, the thumbnails; the bookkeeping (BOOKKEEPING) is left out."""
    moment = now or datetime.now(UTC)
    shown = state(item, moment)
    rows = [("status", shown)]
    if item.get("reason"):
        rows.append(("reason", str(item["reason"])))
    if item.get("last_error") or shown == RETRYING or attempts(item) > 1:
        rows.append(("attempts", str(attempts(item))))
        rows.append(("last error", str(item.get("last_error") or NO_ERROR_RECORDED)))
        if item.get("last_attempt_at"):
            rows.append(("last attempt", readable_time(item["last_attempt_at"], moment)))
    for label, field in (("image", "imageId"), ("user", "userId"), ("original", "originalS3Key")):
        if item.get(field):
            rows.append((label, str(item[field])))
    if kind := _kind(item):
        rows.append(("format", kind))
    if item.get("width") and item.get("height"):
        rows.append(("dimensions", f"{item['width']} × {item['height']} px"))
    if item.get("size_bytes") is not None:
        rows.append(("size", _sizes(item)))
    for label, field in (("uploaded", "uploaded_at"), ("processed", "processed_at")):
        if item.get(field):
            rows.append((label, readable_time(item[field], moment)))
    if item.get("processing_ms") is not None:
        rows.append(("processing", _milliseconds(item["processing_ms"])))
    for index, (size, key) in enumerate(_by_size(item.get("processedS3Keys") or {})):
        rows.append(("thumbnails" if index == 0 else "", f"{size} → {key}"))
    for name in sorted(set(item) - _SHOWN - BOOKKEEPING):
        rows.append((name, _other(name, item[name], moment)))
    return rows


def _kind(item: Mapping[str, Any]) -> str:
    """`JPEG (image/jpeg), RGB, with transparency` from what the worker recorded."""
    parts = [str(item.get("format") or "")]
    if item.get("content_type"):
        parts[0] = f"{parts[0]} ({item['content_type']})" if parts[0] else str(item["content_type"])
    parts.append(str(item.get("mode") or ""))
    if item.get("has_transparency"):
        parts.append("with transparency")
    return ", ".join(part for part in parts if part)


def _sizes(item: Mapping[str, Any]) -> str:
    """`245.1 KB; thumbnails 30.2 KB`."""
    text = readable_bytes(item["size_bytes"])
    if item.get("processed_bytes"):
        text += f"; thumbnails {readable_bytes(item['processed_bytes'])}"
    return text


def _milliseconds(value: Any) -> str:
    return f"{value:,} ms" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _by_size(keys: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Thumbnail keys, largest first (a DynamoDB map has no order)."""
    return sorted(((str(size), str(key)) for size, key in keys.items()), key=lambda pair: _size_order(pair[0]))


def _size_order(size: str) -> tuple[int, str]:
    return (-int(size), "") if size.isdigit() else (0, size)


def _other(name: str, value: Any, now: datetime) -> str:
    if name.endswith(("_at", "_expires")):
        return readable_time(value, now)
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def readable_time(value: Any, now: datetime) -> str:
    """`2026-11-30 07:02:16 UTC (3 min ago)` from epoch seconds (or milliseconds) or an ISO-8601 string; anything
    else as it is."""
    moment = _parse_time(value)
    if moment is None:
        return str(value)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({relative(moment, now)})"


def ago(value: Any, now: datetime) -> str:
    """`3 min ago` for epoch seconds (or milliseconds) or an ISO-8601 string; "" for anything else."""
    moment = _parse_time(value)
    return "" if moment is None else relative(moment, now)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds since the epoch are 13 digits
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def relative(moment: datetime, now: datetime) -> str:
    """`3 min ago`, `in 40 s`, `2 d ago`: how far `moment` is from `now`, in its largest whole unit."""
    seconds = (now - moment).total_seconds()
    amount = abs(seconds)
    if amount < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if amount >= size * (2 if unit == "d" else 1):
            text = f"{int(amount // size)} {unit}"
            break
    else:
        text = f"{int(amount)} s"
    return f"{text} ago" if seconds > 0 else f"in {text}"


def readable_bytes(value: Any) -> str:
    """`245.1 KB` (1 KB = 1,024 bytes, as the worker's size limit counts); `512 bytes` under a kilobyte."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return str(value)
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if amount >= size:
            return f"{amount / size:.1f} {unit}"
    return f"{amount:.0f} bytes"


def reprocess_event(*, bucket: str, key: str, etag: str, now: datetime | None = None) -> str:
    """The S3 notification S3 itself would send, with a fresh sequencer and time so the worker treats it as
    a newer upload of the key (its idempotency would otherwise skip a replay of the original event)."""
    moment = now or datetime.now(UTC)
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key, "eTag": etag, "sequencer": f"reprocess-{int(moment.timestamp() * 1000):016d}"},
        },
    }
    return json.dumps({"Records": [record]})


def reprocess(*, table: Any, s3: Any, sqs: Any, queue_url: str, upload_bucket: str, image_id: str) -> str:
    """Queue the image's original again; returns the message id."""
    item = status(table, image_id)
    key = str(item.get("originalS3Key", ""))
    try:
        head = s3.head_object(Bucket=upload_bucket, Key=key)
    except ClientError as exc:
        raise ImageNotFound(f"the original s3://{upload_bucket}/{key} is gone ({exc}); nothing to reprocess") from None
    body = reprocess_event(bucket=upload_bucket, key=key, etag=str(head["ETag"]).strip('"'))
    return str(sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"])
