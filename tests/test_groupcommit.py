"""Group commit (app/groupcommit.py) on its own: who waits, who writes, and who hears of
a failure. Real threads (and coroutines, for the asynchronous form); the waits are on
conditions, with a minute's patience."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.groupcommit import AsyncGroupCommit, GroupCommit
from conftest import wait_for


class Recorder:
    """A write that records its batches, and can be held until released."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_on = fail_on

    def __call__(self, items):
        self.batches.append(list(items))
        self.entered.set()
        assert self.release.wait(60)
        if self.fail_on in items:
            raise RuntimeError(f"cannot write {self.fail_on}")
        return [item * 10 for item in items]


def behind_a_write(group: GroupCommit, write: Recorder, items) -> tuple[dict, dict, dict]:
    """Submit 0, and `items` while 0 is being written; (0's result, the items' results,
    their errors) once all are done."""
    results, errors = {}, {}

    def one(item):
        try:
            results[item] = group.submit(item)
        except RuntimeError as exc:
            errors[item] = str(exc)

    write.release.clear()
    threads = [threading.Thread(target=one, args=(0,))]
    threads[0].start()
    assert write.entered.wait(60)
    threads += [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: group.queued == len(items), message=f"{len(items)} requests queued behind the write")
    write.release.set()
    for thread in threads:
        thread.join(60)
    first = {0: results.pop(0)} if 0 in results else {}
    return first, results, errors


def test_a_request_alone_is_written_at_once_in_a_batch_of_its_own():
    write = Recorder()
    group = GroupCommit(write)
    assert group.submit(1) == 10 and group.submit(2) == 20
    assert write.batches == [[1], [2]]


def test_requests_arriving_during_a_write_go_together_in_the_next_and_each_gets_its_own_result():
    write = Recorder()
    group = GroupCommit(write)
    first, results, errors = behind_a_write(group, write, range(1, 6))
    assert write.batches[0] == [0] and sorted(write.batches[1]) == [1, 2, 3, 4, 5] and len(write.batches) == 2
    assert first == {0: 0} and results == {n: n * 10 for n in range(1, 6)} and errors == {}
    assert group.queued == 0


def test_batches_are_capped_and_the_rest_follow():
    write = Recorder()
    group = GroupCommit(write, max_batch=2)
    _, results, _ = behind_a_write(group, write, range(1, 6))
    assert [len(batch) for batch in write.batches] == [1, 2, 2, 1]
    assert results == {n: n * 10 for n in range(1, 6)}


def test_a_request_whose_write_fails_fails_alone_and_its_batch_is_written_without_it():
    write = Recorder(fail_on=3)
    group = GroupCommit(write)
    first, results, errors = behind_a_write(group, write, [1, 2, 3])
    assert errors == {3: "cannot write 3"} and results == {1: 10, 2: 20} and first == {0: 0}
    assert sorted(write.batches[1]) == [1, 2, 3] and sorted(write.batches[2:]) == [[1], [2], [3]]
    assert group.submit(4) == 40  # the next batch is written as usual


def test_an_error_that_concerns_the_whole_batch_is_raised_in_every_request_of_it_and_in_no_other():
    write = Recorder(fail_on=3)
    group = GroupCommit(write, alone=lambda error: False)  # as the database not answering
    first, results, errors = behind_a_write(group, write, [1, 2, 3])
    assert errors == {1: "cannot write 3", 2: "cannot write 3", 3: "cannot write 3"} and results == {}
    assert first == {0: 0} and len(write.batches) == 2
    assert group.submit(4) == 40
    with pytest.raises(RuntimeError, match="cannot write 3"):
        group.submit(3)


def test_nothing_that_goes_wrong_while_writing_leaves_the_next_requests_waiting():
    def broken(error):
        raise ValueError("a broken predicate")

    write = Recorder(fail_on=3)
    group = GroupCommit(write, alone=broken)
    _, results, errors = behind_a_write(group, write, [1, 3])
    assert errors == {1: "cannot write 3", 3: "cannot write 3"} and results == {}
    assert group.submit(4) == 40 and group.queued == 0


# --- AsyncGroupCommit: the same rules on one event loop ---------------------------------------


def run_async(coroutine):
    """asyncio.run() in a thread of its own: in a test process that has used the browser,
    the session's Playwright (its sync API) keeps an event loop running in the main
    thread, where asyncio.run() refuses to start."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result(timeout=120)


class AsyncRecorder:
    """Recorder's coroutine form: a write that records its batches, and can be held."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.fail_on = fail_on

    async def __call__(self, items):
        self.batches.append(list(items))
        self.entered.set()
        await asyncio.wait_for(self.release.wait(), 60)
        if self.fail_on in items:
            raise RuntimeError(f"cannot write {self.fail_on}")
        return [item * 10 for item in items]


async def async_behind_a_write(group: AsyncGroupCommit, write: AsyncRecorder, items):
    """behind_a_write() for coroutines: 0 first, `items` while 0 is being written."""
    async def one(item):
        try:
            return "ok", await group.submit(item)
        except RuntimeError as exc:
            return "error", str(exc)

    write.release.clear()
    first = asyncio.create_task(one(0))
    await asyncio.wait_for(write.entered.wait(), 60)
    rest = [asyncio.create_task(one(item)) for item in items]
    while group.queued < len(items):  # each task queues at its first step
        await asyncio.sleep(0)
    write.release.set()
    outcomes = dict(zip([0, *items], await asyncio.gather(first, *rest)))
    return ({n: v for n, (kind, v) in outcomes.items() if kind == "ok"},
            {n: v for n, (kind, v) in outcomes.items() if kind == "error"})


def test_async_a_request_alone_is_written_in_a_batch_of_its_own():
    async def run():
        write = AsyncRecorder()
        group = AsyncGroupCommit(write)
        assert await group.submit(1) == 10 and await group.submit(2) == 20
        return write.batches
    assert run_async(run()) == [[1], [2]]


def test_async_requests_arriving_during_a_write_go_together_capped_and_each_gets_its_own_result():
    async def run(max_batch):
        write = AsyncRecorder()
        group = AsyncGroupCommit(write, max_batch=max_batch)
        results, errors = await async_behind_a_write(group, write, range(1, 6))
        assert results == {n: n * 10 for n in range(6)} and errors == {} and group.queued == 0
        return write.batches
    assert run_async(run(64)) == [[0], [1, 2, 3, 4, 5]]
    assert run_async(run(2)) == [[0], [1, 2], [3, 4], [5]]


def test_async_a_failing_request_fails_alone_and_an_error_of_the_whole_batch_reaches_all_of_it():
    async def run(alone):
        write = AsyncRecorder(fail_on=3)
        group = AsyncGroupCommit(write, alone=alone)
        results, errors = await async_behind_a_write(group, write, [1, 2, 3])
        assert await group.submit(4) == 40  # the next batch is written as usual
        return results, errors, write.batches

    results, errors, batches = run_async(run(lambda error: True))
    assert results == {0: 0, 1: 10, 2: 20} and errors == {3: "cannot write 3"}
    assert batches == [[0], [1, 2, 3], [1], [2], [3], [4]]

    for whole_batch in (lambda error: False, lambda error: 1 / 0):  # the database not answering; a broken predicate
        results, errors, batches = run_async(run(whole_batch))
        assert results == {0: 0} and errors == {n: "cannot write 3" for n in (1, 2, 3)}
        assert batches == [[0], [1, 2, 3], [4]]


async def one_held_one_queued():
    """(write, group, 1's task, 2's task): 1 being written (held), 2 queued behind it."""
    write = AsyncRecorder()
    group = AsyncGroupCommit(write)
    write.release.clear()
    first = asyncio.create_task(group.submit(1))
    await asyncio.wait_for(write.entered.wait(), 60)
    second = asyncio.create_task(group.submit(2))
    while group.queued < 1:
        await asyncio.sleep(0)
    return write, group, first, second


def test_async_a_request_given_up_during_its_write_takes_nothing_with_it():
    async def run():
        write, group, gone, stays = await one_held_one_queued()
        gone.cancel()  # its client disconnected
        write.release.set()
        assert await stays == 20 and await group.submit(3) == 30
        assert gone.cancelled()
        return write.batches
    assert run_async(run()) == [[1], [2], [3]]


def test_async_requests_waiting_when_the_writer_is_stopped_hear_of_it_and_the_next_one_is_written():
    async def run():
        write, group, first, second = await one_held_one_queued()
        group._writer.cancel()  # as the event loop's shutdown does
        for task in (first, second):
            with pytest.raises(RuntimeError, match="stopped before the write"):
                await task
        write.release.set()
        assert await group.submit(3) == 30 and group.queued == 0
    run_async(run())
