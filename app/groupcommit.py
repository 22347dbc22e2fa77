"""Group commit: the writes of concurrent requests in one process gathered into one
statement and one commit.

A statement with its commit costs Postgres about as much for one small write as for ten:
planning, the round trip and the flush of the write-ahead log are per statement, not
per row. So while one thread's batch is being written, the requests arriving meanwhile
queue up, and the first of them writes all of them in the next batch as soon as the
first is done. A request alone meets no wait at all (it leads a batch of one); under
load, batches grow by themselves with the number of requests in flight.

GroupCommit gathers threads; AsyncGroupCommit, the same for the coroutines of one event
loop (the web process's submit-listens, app/api/fastpath.py), with the same rules.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

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
            results = _checked(self._write([s.item for s in batch]), len(batch))
            for s, result in zip(batch, results):
                s.result = result
        except BaseException as exc:  # noqa: BLE001 - every waiting request must hear of it
            if _separately(self._alone, exc, len(batch)):
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


def _checked(results: Sequence, expected: int) -> Sequence:
    if len(results) != expected:
        raise RuntimeError(f"group commit: {len(results)} results for {expected} items")
    return results


def _separately(alone: Callable[[BaseException], bool], error: BaseException, size: int) -> bool:
    """Whether a failed batch is written again item by item."""
    try:
        return size > 1 and bool(alone(error))
    except Exception:  # noqa: BLE001 - a broken predicate must not leave the batch unanswered
        return False


class AsyncGroupCommit(Generic[Item, Result]):
    """GroupCommit on one event loop: `await submit(item)` from any coroutine returns
    `await write(items)`'s result for that item. Batches are written by a task of their
    own, one at a time, so a request given up while its batch is written (its client
    gone) takes nothing with it. The same failure rules as GroupCommit's."""

    def __init__(self, write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]], *, max_batch: int = 64,
                 alone: Callable[[BaseException], bool] = lambda error: isinstance(error, Exception)):
        self._write = write
        self._max_batch = max_batch
        self._alone = alone
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for the next batch (for diagnostics and tests)."""
        return len(self._waiting)

    async def submit(self, item: Item) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        batch: list[tuple[Item, asyncio.Future]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max_batch], self._waiting[self._max_batch:]
                await self._write_batch(batch)
        finally:  # cancelled (the process stopping): nobody is left waiting for ever
            self._writer = None
            left, self._waiting = batch + self._waiting, []
            for _, future in left:
                if not future.done():
                    future.set_exception(RuntimeError("group commit: stopped before the write"))

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = _checked(await self._write([item for item, _ in batch]), len(batch))
        except Exception as exc:  # noqa: BLE001 - every waiting request must hear of it
            if _separately(self._alone, exc, len(batch)):
                for entry in batch:
                    await self._write_batch([entry])
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():  # its request was given up
                future.set_result(result)
