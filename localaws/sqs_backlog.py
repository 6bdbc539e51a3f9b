"""SendMessage and ReceiveMessage in the embedded AWS without counting the queue for every message.

moto builds a queue's whole attribute dict to read one setting, and that dict counts the queue's messages three
times over (visible, delayed, in flight: each a pass over every message). SendMessage does it once per message
(for ContentBasedDeduplication), ReceiveMessage once per message it looks at (for MessageRetentionPeriod). So a
send cost time in proportion to the queue's backlog, and a receive in proportion to its square: a work queue of
35,000 messages (workers paused) slowed every upload, and the capacity counter's receives on a backlog of a few
thousand took seconds each, until the embedded AWS spent its time counting (`imgops bench churn`, py-spy: 58-76 %
of the moto process in `Queue.attributes`). Here those two read their setting directly.

GetQueueAttributes for named attributes built that dict three times per name asked for (moto tests each name
against it, then reads it twice): the stack's queue sampler's three counts cost nine builds, 27 passes over the work
queue, and with 24,000 messages waiting took half of the embedded AWS's time again (py-spy, `imgops bench churn`).
Here one call builds it once: its counts are then also one moment's, as SQS's are. Everything else is moto's own.
For the embedded AWS's process only (moto's module is patched for the whole process).
"""

from __future__ import annotations

import threading
from typing import Any

_INSTALLED = "_imgops_backlog_not_counted"


def install() -> None:
    """Patch moto's SQS backend in this process (idempotent)."""
    from moto.core.utils import camelcase_to_underscores, unix_time
    from moto.sqs import models

    queue_type, backend = models.Queue, models.SQSBackend
    if getattr(backend, _INSTALLED, False):
        return
    counted: Any = vars(queue_type)["attributes"]  # the property: every attribute, the message counts included
    sending = threading.local()
    reading = threading.local()  # .built: the attributes built during one GetQueueAttributes, by queue

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(sending, "active", False):
            built: dict[int, dict[str, Any]] | None = getattr(reading, "built", None)
            if built is None:
                return dict(counted.fget(self))
            if id(self) not in built:
                built[id(self)] = dict(counted.fget(self))
            return built[id(self)]
        if not self.fifo_queue:  # what send_message reads is a FIFO attribute: a standard queue has none
            return {}
        values = {name: getattr(self, camelcase_to_underscores(name)) for name in self.FIFO_ATTRIBUTES}
        return {name: str(value).lower() if isinstance(value, bool) else value for name, value in values.items()}

    original_send = backend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return original_send(self, *args, **kwargs)
        finally:
            sending.active = False

    original_get_attributes = backend.get_queue_attributes

    def get_queue_attributes(self: Any, *args: Any, **kwargs: Any) -> Any:
        reading.built = {}
        try:
            return original_get_attributes(self, *args, **kwargs)
        finally:
            reading.built = None

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    setattr(queue_type, "attributes", property(attributes))  # noqa: B010 - a property of moto's class
    setattr(backend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period)  # noqa: B010
    setattr(backend, "send_message", send_message)  # noqa: B010 - a method of moto's class
    setattr(backend, "get_queue_attributes", get_queue_attributes)  # noqa: B010 - a method of moto's class
    setattr(backend, _INSTALLED, True)
