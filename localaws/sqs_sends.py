"""SendMessage in the embedded AWS without counting the queue first.

moto's SendMessage reads `queue.attributes` for one FIFO setting (ContentBasedDeduplication), and building that
dict counts the queue's messages three times over (visible, delayed, in flight: each a pass over every message).
So every send cost time in proportion to the queue's backlog: S3's notifications to a work queue holding 35,000
messages (workers paused) slowed every upload, and the capacity counter's event queue with it, until the embedded
AWS spent its time counting (`imgops bench churn`, py-spy: 76 % of the moto process in `Queue.attributes`). Here a
send sees only the attributes that do not count messages; everything else, GetQueueAttributes included, is
moto's own. For the embedded AWS's process only (moto's module is patched for the whole process).
"""

from __future__ import annotations

import threading
from typing import Any

_INSTALLED = "_imgops_cheap_send_attributes"


def install() -> None:
    """Patch moto's SQS backend in this process (idempotent)."""
    from moto.core.utils import camelcase_to_underscores
    from moto.sqs import models

    queue_type, backend = models.Queue, models.SQSBackend
    if getattr(backend, _INSTALLED, False):
        return
    counted: Any = vars(queue_type)["attributes"]  # the property: every attribute, the message counts included
    sending = threading.local()

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(sending, "active", False):
            return dict(counted.fget(self))
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

    setattr(queue_type, "attributes", property(attributes))  # noqa: B010 - a property of moto's class
    setattr(backend, "send_message", send_message)  # noqa: B010 - a method of moto's class
    setattr(backend, _INSTALLED, True)
