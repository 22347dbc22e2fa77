"""Group commit: the writes of concurrent requests in one process gathered into one
statement and one commit.

A statement with its commit costs Postgres about as much for one small write as for ten:
planning, the round trip and the flush of the write-ahead log are per statement, not
per row. So while one thread's batch is being written, the requests arriving meanwhile
queue up, and the first of them writes all of them in the next batch as soon as the
first is done. A request alone meets no wait at all (it leads a batch of one); under
load, batches grow by themselves with the number of requests in flight.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    __slots__ = ("item", "ready", "leads", "result", "error")

    def __init__(self, item: Item):
        self.item = item
        self.ready = threading.Event()
        self.leads = False  # woken to write the next batch, not with its result
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """`submit(item)` from any thread returns `write(items)`'s result for that item, where
    `write` takes a batch of items and returns one result per item, in order. Batches run
    one at a time, each one transaction.

    When a batch fails, its items are written again one by one if `alone(error)` says the
    error may be one item's doing (a constraint, a value out of range), so that a request
    fails only for itself; an error that concerns them all (the database not answering)
    is raised at once in every request of the batch."""

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Result]], *, max_batch: int = 64,
                 alone: Callable[[BaseException], bool] = lambda error: isinstance(error, Exception)):
        self._write = write
        self._max_batch = max_batch
        self._alone = alone
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._writing = False

    @property
    def queued(self) -> int:
        """Requests waiting for the next batch (for diagnostics and tests)."""
        with self._lock:
            return len(self._waiting)

    def submit(self, item: Item) -> Result:
        slot = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            leads = slot.leads = not self._writing
            self._writing = True
        if not leads:
            slot.ready.wait()
            if not slot.leads:
                return self._outcome(slot)
        with self._lock:
            batch, self._waiting = self._waiting[:self._max_batch], self._waiting[self._max_batch:]
        try:
            self._write_batch(batch)
        finally:  # whatever happened, the batch hears of it and the next one gets its writer
            with self._lock:
                following = self._waiting[0] if self._waiting else None
                if following is None:
                    self._writing = False
                else:
                    following.leads = True
            for s in batch:
                if s is not slot:
                    s.ready.set()
            if following is not None:
                following.ready.set()
        return self._outcome(slot)

    def _write_batch(self, batch: list[_Slot]) -> None:
        try:
            results = self._write([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"group commit: {len(results)} results for {len(batch)} items")
            for s, result in zip(batch, results):
                s.result = result
        except BaseException as exc:  # noqa: BLE001 - every waiting request must hear of it
            try:
                separately = len(batch) > 1 and self._alone(exc)
            except Exception:  # noqa: BLE001 - a broken predicate must not leave the batch unanswered
                separately = False
            if separately:
                for s in batch:
                    self._write_batch([s])
            else:
                for s in batch:
                    s.error = exc

    @staticmethod
    def _outcome(slot: _Slot):
        if slot.error is not None:
            raise slot.error
        return slot.result
