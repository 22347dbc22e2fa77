"""Group commit (app/groupcommit.py) on its own: who waits, who writes, and who hears of
a failure. Real threads; the waits are on conditions, with a minute's patience."""

from __future__ import annotations

import threading

import pytest

from app.groupcommit import GroupCommit
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
