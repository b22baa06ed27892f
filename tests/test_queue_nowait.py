"""put_nowait() and get_nowait() under contention (issue 8, item 1).

A non-blocking put may fail only because a bounded queue is full, and a
non-blocking get only because the queue is empty: waiting for a queue lock
that another live process holds (for microseconds, or for as long as it
copies a huge item) is neither. logging.handlers.QueueHandler uses
put_nowait(), so a spurious queue.Full drops log records.

Cross-process tests synchronise through events and queues, never sleeps.
"""

import queue

import pytest

from gopool import Event, Process, Queue
from gopool import _queue_handle
from gopool._binding import _wire

from helpers import nowait_tasks as nt
from helpers.tasks import MAX_WAIT

pytestmark = pytest.mark.timeout(120)

HUGE = 64 << 20  # copying this into or out of the ring takes tens of ms


@pytest.fixture
def make_process():
    made = []

    def make(target, *args):
        p = Process(target=target, args=args)
        p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        if p.exitcode is None:
            p.kill()
        p.join(10)


def test_put_nowait_from_several_processes_loses_nothing(make_process):
    q = Queue()
    producers, n = 4, 20000
    procs = [make_process(nt.put_nowait_range, q, tag, n) for tag in range(producers)]
    got = set()
    while len(got) < producers * n:
        got.update(q.get_many(10000, timeout=MAX_WAIT))
    for p in procs:
        p.join(MAX_WAIT)
        assert p.exitcode == 0, "a put_nowait() raised queue.Full on an unbounded queue"
    assert got == {(tag, i) for tag in range(producers) for i in range(n)}
    assert q.empty()


def test_put_nowait_while_another_process_puts_a_huge_item(make_process):
    q, ready = Queue(), Event()
    p = make_process(nt.put_huge, q, ready, HUGE)
    assert ready.wait(MAX_WAIT)
    mine = 0
    while p.exitcode is None:  # all through the other process's put
        q.put_nowait(mine)  # never queue.Full: the queue is unbounded
        mine += 1
        if mine % 1000 == 0:
            p.join(0)
    assert p.exitcode == 0
    items = []
    while len(items) < mine + 1:
        items += q.get_many(100000, timeout=MAX_WAIT)
    assert sorted(x for x in items if isinstance(x, int)) == list(range(mine))
    assert [len(x) for x in items if isinstance(x, bytes)] == [HUGE]


def test_get_nowait_contended_by_other_consumers(make_process):
    q, out = Queue(), Queue()
    consumers, n = 3, 10000
    q.put_many(range(consumers * n))
    # Each takes exactly its share: every get_nowait() happens while items
    # remain.
    procs = [make_process(nt.get_nowait_n, q, n, out) for _ in range(consumers)]
    got = []
    while len(got) < consumers * n:
        got += out.get_many(100000, timeout=MAX_WAIT)
    for p in procs:
        p.join(MAX_WAIT)
        assert p.exitcode == 0, "a get_nowait() raised queue.Empty on a queue with items"
    assert sorted(got) == list(range(consumers * n))
    assert q.empty()


def test_get_nowait_while_another_process_takes_a_huge_item(make_process):
    q, out, ready = Queue(), Queue(), Event()
    small = 2000
    q.put(b"h" * HUGE)
    q.put_many(range(small))
    p = make_process(nt.get_one, q, ready, out)
    assert ready.wait(MAX_WAIT)
    # The other process takes one item, this one takes the rest without
    # waiting: there is always one left for each call.
    mine = [q.get_nowait() for _ in range(small)]
    theirs = out.get(timeout=MAX_WAIT)
    p.join(MAX_WAIT)
    assert p.exitcode == 0
    sizes = [len(x) for x in mine if isinstance(x, bytes)] + ([theirs] if theirs == HUGE else [])
    ints = sorted([x for x in mine if isinstance(x, int)] + ([theirs] if theirs != HUGE else []))
    assert sizes == [HUGE] and ints == list(range(small))
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_full_and_empty_still_raised():
    q = Queue(2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put_nowait(1)
    q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put_many([3], block=False)
    assert [q.get_nowait(), q.get_nowait()] == [1, 2]


class _Busy:
    """A core call that reports a busy lock a few times, then answers."""

    def __init__(self, times, answer):
        self.times, self.answer, self.calls = times, answer, []

    def __call__(self, *args):
        self.calls.append(args)
        if len(self.calls) <= self.times:
            raise RuntimeError(f"E{_wire.CODE_LOCK_BUSY}: queue: lock held by a live process for too long")
        return self.answer


def test_busy_lock_is_retried_without_waiting_for_room():
    # A lock held by a live process longer than the core waits for it (a
    # stopped process, a huge copy) is retried, with timeout 0, not
    # reported as full or empty.
    busy = _Busy(3, 1)
    assert _queue_handle._unbusy(busy, 7, 8, 100) == 1
    assert busy.calls == [(7, 8, 100), (7, 8, 0), (7, 8, 0), (7, 8, 0)]
    with pytest.raises(RuntimeError, match="E1: boom"):
        _queue_handle._unbusy(_raise_internal, 1, 0)


def _raise_internal(*args):
    raise RuntimeError("E1: boom")
