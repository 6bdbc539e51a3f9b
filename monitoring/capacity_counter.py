"""The capacity counter function: SQS batches of S3's object events applied to the counters (monitoring.capacity).

The batch's events are applied together (CapacityStore.apply: idempotent, so a batch that fails after writing is
simply applied again). A message that is not an object event is reported as a failed item and, after the queue's
receive count, lands in its dead-letter queue with the reason in the log; the others are not held up by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from monitoring.capacity import CapacityError, CapacityStore, ObjectEvent, parse_message
from monitoring.capacity_handlers import store_from_env

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="imgops-capacity-counter")


def apply_batch(records: Sequence[Mapping[str, Any]], store: CapacityStore) -> dict[str, list[dict[str, str]]]:
    """Apply an SQS batch; the messages that are not object events come back as `batchItemFailures`."""
    events: list[ObjectEvent] = []
    failures: list[dict[str, str]] = []
    for record in records:
        try:
            events += parse_message(str(record.get("body", "")))
        except CapacityError as exc:
            logger.error("not an object event", extra={"message_id": record.get("messageId"), "reason": str(exc)})
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
    applied = store.apply(events)
    logger.info(
        "events applied",
        extra={
            "messages": len(records),
            "events": applied.events,
            "stale": applied.stale,
            "transactions": applied.transactions,
            "retries": applied.retries,
        },
    )
    return {"batchItemFailures": failures}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    return apply_batch(event.get("Records", []), store_from_env())
