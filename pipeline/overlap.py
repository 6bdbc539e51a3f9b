"""What the worker's overlapped batch holds in memory beyond one-record-at-a-time, and the bound on it.

Processing a batch one record at a time holds one original and its thumbnails at once. Overlapping I/O with the
decoding (pipeline.worker.process_batch) holds more: while record i decodes on the handler's thread, record i+1's
original is fetched by one I/O thread and record i-1's thumbnails are written by another. `HeldBytes` counts that
and bounds it:

- at most two originals are held at once: the one being decoded and one prefetched (the pipeline's structure:
  one fetch thread, and no fetch starts before the previous original went to the decoder);
- at most two images' thumbnails: the ones being written and the ones just made, which wait for that write;
- the prefetched original's body is read only while it and the thumbnails still being written fit in the
  budget, `memory_mb / 20` (5 % of the function's memory: the headroom `imgops loadtest sizing` keeps free when it
  sets the pixel cap for a memory size); an original larger than that is read only once nothing else is held,
  i.e. exactly when one-at-a-time processing would read it. So the overlap adds at most 5 % of the function's
  memory to the one-at-a-time peak (plus a set of thumbnails waiting for the writer: ~0.3 MB for a 12 MP photo).
"""

from __future__ import annotations

import threading

BUDGET_SHARE = 20  # memory_mb / BUDGET_SHARE is the budget: 5 %


class Abandoned(RuntimeError):
    """The batch failed while this original waited for memory: it is not read (the batch records the failure)."""


def budget_bytes(memory_mb: int) -> int:
    return memory_mb * 2**20 // BUDGET_SHARE


class HeldBytes:
    """Bytes the overlapped batch holds besides the original being decoded; thread-safe. The fetch thread is the
    only one that waits (in `reserve_original`); the decoder and the writer only release, so nothing deadlocks."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._changed = threading.Condition()
        self._ahead = 0  # prefetched originals' bytes, not yet decoding
        self._behind = 0  # thumbnails (and originals kept for labels) handed to the writer, not yet written
        self._decoding = False
        self._abandoned = False
        self.originals = 0  # originals read and not yet decoded (or dropped)
        self.peak_originals = 0
        self.peak_extra_bytes = 0  # the most held beside an original being decoded: <= budget + one image's thumbnails

    def reserve_original(self, size: int) -> None:
        """Before reading an original's body: wait until it fits in the budget, or until nothing else is held."""
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._abandoned
                    or self._ahead + self._behind + size <= self.budget
                    or (not self._decoding and self._behind == 0)
                )
            )
            if self._abandoned:
                raise Abandoned("the batch failed before this original could be read")
            self._ahead += size
            self.originals += 1
            self.peak_originals = max(self.peak_originals, self.originals)
            self._measure()

    def drop_original(self, size: int) -> None:
        """A reserved original that will not be decoded (its read failed)."""
        with self._changed:
            self._ahead -= size
            self.originals -= 1
            self._changed.notify_all()

    def start_decoding(self, size: int) -> None:
        with self._changed:
            self._ahead -= size
            self._decoding = True
            self._measure()

    def _measure(self) -> None:
        """Only beside an original being decoded is anything extra: otherwise what is held is the next one's."""
        if self._decoding:
            self.peak_extra_bytes = max(self.peak_extra_bytes, self._ahead + self._behind)

    def finish_decoding(self, *, handed_to_writer: int) -> None:
        """The original is decoded (or its decoding failed); `handed_to_writer` bytes now wait for the writer."""
        with self._changed:
            self._decoding = False
            self.originals -= 1
            self._behind += handed_to_writer
            self._changed.notify_all()

    def abandon(self) -> None:
        """The batch failed: the decoder and the writer may never release what they hold, so nothing waits for
        them any more (a waiting or later `reserve_original` raises Abandoned)."""
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()

    def written(self, size: int) -> None:
        with self._changed:
            self._behind -= size
            self._changed.notify_all()
