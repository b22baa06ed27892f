"""gopool.Queue, JoinableQueue and SimpleQueue against the stdlib's contract
(SEMANTICS.md §12-14), and what gopool does better: put() of an unpicklable
object raises in the caller, a producer can be joined before its items are
taken, and processes killed in the middle of put() or get() leave the queue
intact and usable.

Cross-process tests use gopool.Process and Pool(initializer=...,
initargs=(q,)); they synchronise through the queues themselves, never
through sleeps.
"""

import os
import pickle
import queue
import random
import signal
import threading
import time

import pytest

import gopool
import gopool.queues
from gopool import JoinableQueue, Process, Queue, SimpleQueue

from helpers import queue_tasks as qt
from helpers.tasks import MAX_WAIT

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_process():
    """Start gopool.Process objects; any still running at the end of the test
    is killed and joined."""
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


# -- names ---------------------------------------------------------------------


def test_names():
    assert gopool.Queue is gopool.queues.Queue
    assert gopool.JoinableQueue is gopool.queues.JoinableQueue
    assert gopool.SimpleQueue is gopool.queues.SimpleQueue
    assert issubclass(JoinableQueue, Queue)
    assert set(gopool.queues.__all__) == {"Queue", "JoinableQueue", "SimpleQueue"}
    assert Queue[int] is not None  # generic alias, as the stdlib's


# -- Queue: put / get ------------------------------------------------------------


def test_fifo_and_sizes():
    q = Queue()
    assert q.empty() and q.qsize() == 0 and not q.full()
    items = [0, -1, 2**100, 1.5, "text", b"bytes", None, (1, 2), [3], {"k": "v"}, {4}]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items) and not q.empty()
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_items_visible_at_once():
    # The stdlib documents an "infinitesimal delay" before empty()/get() see
    # an item; gopool's put() has stored the item when it returns.
    q = Queue()
    q.put("now")
    assert not q.empty() and q.qsize() == 1
    assert q.get_nowait() == "now"


@pytest.mark.timeout(10)
def test_get_empty_raises_empty():
    q = Queue()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get(True, -1)  # a negative timeout does not block (as the stdlib)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert 0.18 <= time.monotonic() - start < 2


@pytest.mark.timeout(10)
def test_long_timeout_is_sliced_and_honoured():
    q = Queue()
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.35)  # several 100 ms slices in the core
    assert 0.33 <= time.monotonic() - start < 2


@pytest.mark.timeout(10)
def test_blocking_get_is_woken_by_put_from_thread():
    q = Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=MAX_WAIT)))
    t.start()
    q.put("wake")
    t.join(MAX_WAIT)
    assert got == ["wake"]


@pytest.mark.timeout(10)
def test_blocking_get_is_interruptible():
    # A signal handler runs within a slice (<= 100 ms) of a blocking get.
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(Interrupted):
            Queue().get()
        assert time.monotonic() - start < 1.5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.timeout(10)
def test_bounded_queue():
    q = Queue(2)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, False)
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.2)
    assert 0.18 <= time.monotonic() - start < 2
    assert q.get() == 1 and not q.full()
    q.put(3)
    assert [q.get(), q.get()] == [2, 3]


@pytest.mark.timeout(10)
def test_bounded_put_waits_for_room():
    q = Queue(1)
    q.put("first")
    taker = threading.Thread(target=lambda: q.get(timeout=MAX_WAIT))
    done = []
    putter = threading.Thread(target=lambda: done.append(q.put("second", timeout=MAX_WAIT)))
    putter.start()
    taker.start()
    putter.join(MAX_WAIT)
    taker.join(MAX_WAIT)
    assert done == [None]
    assert q.get_nowait() == "second"


def test_unbounded_put_never_raises_full():
    q = Queue()  # maxsize <= 0: unbounded, as the stdlib
    for i in range(20000):
        q.put_nowait(i)
    assert q.qsize() == 20000 and not q.full()
    assert Queue(-5).full() is False


def test_maxsize_too_large():
    with pytest.raises(ValueError):
        Queue(2**31)


def test_unpicklable_put_raises_in_caller():
    # The stdlib pickles in its feeder thread: put() returns, the feeder
    # prints a traceback and the item is silently dropped (gh-84376).
    q = Queue()
    with pytest.raises((TypeError, pickle.PicklingError)):
        q.put(threading.Lock())
    assert q.empty()
    q.put("still fine")
    assert q.get() == "still fine"


def test_lambdas_and_local_classes_travel():
    # The stdlib cannot pickle these at all; gopool uses cloudpickle.
    class Local:
        def __init__(self, v):
            self.v = v

    q = Queue()
    q.put(lambda x: x + 1)
    q.put(Local(5))
    assert q.get()(1) == 2
    assert q.get().v == 5


def test_large_items():
    q = Queue()
    big = os.urandom(3 << 20)
    q.put(big)
    q.put(b"small")
    assert q.get() == big
    assert q.get() == b"small"


def test_item_larger_than_ring_is_a_value_error():
    q = Queue(_ring_size=1 << 20)
    with pytest.raises(ValueError, match="too large for the queue"):
        q.put(b"x" * (2 << 20))
    q.put(b"fits")
    assert q.get() == b"fits"


def test_full_ring_of_unbounded_queue_is_a_memory_error():
    q = Queue(_ring_size=1 << 20)
    with pytest.raises(MemoryError, match="shared memory is full"):
        for _ in range(100):
            q.put(b"x" * (100 << 10))
    n = q.qsize()
    assert 5 <= n < 11
    for _ in range(n):
        assert q.get() == b"x" * (100 << 10)


@pytest.mark.timeout(10)
def test_bounded_queue_with_full_ring_waits():
    q = Queue(1000, _ring_size=1 << 20)
    with pytest.raises(queue.Full):
        for _ in range(100):
            q.put(b"x" * (100 << 10), timeout=0.05)


def test_threads_share_a_queue():
    q = Queue()
    n, producers = 3000, 4
    got = []
    lock = threading.Lock()

    def consume():
        while True:
            item = q.get(timeout=MAX_WAIT)
            if item is None:
                return
            with lock:
                got.append(item)

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    for t in consumers:
        t.start()
    puts = [threading.Thread(target=qt.put_range, args=(q, n, k * n)) for k in range(producers)]
    for t in puts:
        t.start()
    for t in puts:
        t.join(MAX_WAIT)
    for _ in consumers:
        q.put(None)
    for t in consumers:
        t.join(MAX_WAIT)
    assert sorted(got) == list(range(n * producers))


# -- close / join_thread / cancel_join_thread ------------------------------------


def test_close():
    q = Queue()
    q.put("kept")
    with pytest.raises(AssertionError, match=r"^Queue .* not closed$"):
        q.join_thread()
    q.close()
    q.close()  # idempotent
    message = f"^Queue {repr(q)} is closed$".replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=message):
        q.put(1)
    with pytest.raises(ValueError, match=message):
        q.get()
    with pytest.raises(ValueError, match=message):
        q.put_many([1])
    with pytest.raises(ValueError, match=message):
        q.get_many(1)
    q.join_thread()  # returns: nothing is buffered in the process
    q.cancel_join_thread()  # a no-op
    assert q.qsize() == 1  # the item stays for the other users of the queue


@pytest.mark.parametrize("cls", [Queue, gopool.JoinableQueue])
def test_empty_after_close(cls):
    # Python 3.13's rule (CPython's test_closed_queue_empty_exceptions):
    # a queue closed before any use still answers empty(); once used and
    # closed, empty() raises OSError('... is closed'); qsize() and full()
    # answer either way.
    unused = cls(2)
    unused.close()
    unused.join_thread()
    assert unused.empty()
    used = cls(2)
    used.put("foo")
    used.close()
    used.join_thread()
    with pytest.raises(OSError, match="^handle is closed$"):
        used.empty()
    assert used.qsize() == 1 and not used.full()


def test_close_is_per_object():
    q = Queue()
    q.put(1)
    q.close()
    # Another object on the same queue (as in a child) still works.
    other = gopool.queues._rebuild(Queue, q._handle.fd())
    assert other.get() == 1


@pytest.mark.timeout(30)
def test_closed_queue_items_delivered_to_other_process(make_process):
    q, out = Queue(), Queue()
    for i in range(5):
        q.put(i)
    q.close()
    q.join_thread()
    p = make_process(qt.echo, q, out, 5)
    assert [out.get(timeout=MAX_WAIT) for _ in range(5)] == [0, 2, 4, 6, 8]
    p.join(MAX_WAIT)
    assert p.exitcode == 0


# -- pickling --------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Queue, JoinableQueue, SimpleQueue])
def test_pickling_outside_process_creation(cls):
    q = cls()
    with pytest.raises(
        RuntimeError, match=f"^{cls.__name__} objects should only be shared between processes through inheritance$"
    ):
        pickle.dumps(q)


# -- JoinableQueue ---------------------------------------------------------------


@pytest.mark.timeout(10)
def test_joinable_task_done_and_join():
    q = JoinableQueue()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()
    q.join()  # nothing unfinished: returns at once
    q.put("a")
    q.put("b")
    joined = threading.Event()

    def join():
        q.join()
        joined.set()

    t = threading.Thread(target=join)
    t.start()
    assert q.get() == "a"
    q.task_done()
    assert not joined.wait(0.05)
    assert q.get() == "b"
    q.task_done()
    assert joined.wait(MAX_WAIT)
    t.join(MAX_WAIT)
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


def test_joinable_close_and_bounds():
    q = JoinableQueue(1)
    q.put(1)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(3)
    q.task_done()  # task_done still works after close (as the stdlib)


@pytest.mark.timeout(60)
def test_joinable_across_processes(make_process):
    q, results = JoinableQueue(), Queue()
    workers = [make_process(qt.work_joinable, q, results) for _ in range(2)]
    q.put_many(range(20))
    q.join()  # every item was taken and marked done
    assert sorted(results.get(timeout=MAX_WAIT) for _ in range(20)) == [i * 10 for i in range(20)]
    for _ in workers:
        q.put(None)
    q.join()
    for w in workers:
        w.join(MAX_WAIT)
        assert w.exitcode == 0


# -- SimpleQueue -----------------------------------------------------------------


def test_simple_queue():
    q = SimpleQueue()
    assert q.empty()
    q.put("x")
    q.put([1, 2])
    assert not q.empty()
    assert q.get() == "x" and q.get() == [1, 2]
    q.close()
    q.close()  # idempotent
    for call in (lambda: q.put(1), q.get, q.empty):
        with pytest.raises(OSError, match="^handle is closed$"):
            call()


@pytest.mark.timeout(30)
def test_simple_queue_across_processes(make_process):
    q = SimpleQueue()
    p = make_process(qt.put_range, q, 100)
    assert [q.get() for _ in range(100)] == list(range(100))
    p.join(MAX_WAIT)


# -- batches ---------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_put_many_get_many():
    q = Queue()
    q.put_many(range(1000))
    q.put_many([])  # nothing
    assert q.qsize() == 1000
    assert q.get_many(10) == list(range(10))
    got = list(range(10))
    while len(got) < 1000:
        got += q.get_many(300, timeout=1)
    assert got == list(range(1000))
    with pytest.raises(queue.Empty):
        q.get_many(5, timeout=0)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get_many(5, timeout=0.2)
    assert time.monotonic() - start >= 0.18
    with pytest.raises(ValueError):
        q.get_many(0)


def test_get_many_does_not_wait_for_more():
    q = Queue()
    q.put("only")
    assert q.get_many(100, timeout=5) == ["only"]


def test_get_many_large_items():
    q = Queue()
    items = [os.urandom(size) for size in (10, 3 << 20, 100, 2 << 20)]
    q.put_many(items)
    got = []
    while len(got) < len(items):
        got += q.get_many(10)
    assert got == items


@pytest.mark.timeout(10)
def test_put_many_bounded():
    q = Queue(5)
    with pytest.raises(queue.Full):
        q.put_many(range(8), timeout=0.1)
    assert q.qsize() == 5 and q.get_many(10) == [0, 1, 2, 3, 4]  # the first ones went in
    # With a consumer, a batch larger than the bound goes through.
    t = threading.Thread(target=lambda: q.put_many(range(50), timeout=MAX_WAIT))
    t.start()
    got = []
    while len(got) < 50:
        got += q.get_many(7, timeout=MAX_WAIT)
    t.join(MAX_WAIT)
    assert got == list(range(50))


def test_put_many_unpicklable_puts_nothing():
    q = Queue()
    with pytest.raises((TypeError, pickle.PicklingError)):
        q.put_many([1, threading.Lock(), 3])
    assert q.empty()


# -- across processes ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_process_producer_fifo(make_process):
    q = Queue()
    p = make_process(qt.put_range, q, 5000)
    assert [q.get(timeout=MAX_WAIT) for _ in range(5000)] == list(range(5000))
    p.join(MAX_WAIT)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_process_consumer_and_reply(make_process):
    inbox, outbox = Queue(), Queue()
    p = make_process(qt.echo, inbox, outbox, 50)
    inbox.put_many(range(50))
    assert [outbox.get(timeout=MAX_WAIT) for _ in range(50)] == [2 * i for i in range(50)]
    p.join(MAX_WAIT)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_fifo_per_producer_with_several_producers(make_process):
    q = Queue(100)  # bounded: producers wait for the consumer
    n = 3000
    procs = [make_process(qt.put_range, q, n, k * n) for k in range(3)]
    got = [q.get(timeout=MAX_WAIT) for _ in range(3 * n)]
    for k in range(3):
        mine = [x for x in got if k * n <= x < (k + 1) * n]
        assert mine == list(range(k * n, (k + 1) * n))
    for p in procs:
        p.join(MAX_WAIT)
        assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_put_many_from_process(make_process):
    q = Queue()
    p = make_process(qt.put_many_range, q, 10000)
    got = []
    while len(got) < 10000:
        got += q.get_many(1000, timeout=MAX_WAIT)
    assert got == list(range(10000))
    p.join(MAX_WAIT)


@pytest.mark.timeout(60)
def test_pool_initargs_queue():
    q = Queue()
    with gopool.Pool(2, initializer=qt.init_worker, initargs=(q,)) as pool:
        assert pool.map(qt.put_from_worker, range(20)) == list(range(20))
        got = [q.get(timeout=MAX_WAIT) for _ in range(20)]
    assert sorted(x for x, _ in got) == list(range(20))
    assert all(pid != os.getpid() for _, pid in got)


@pytest.mark.timeout(60)
def test_join_producer_before_draining(make_process):
    # The stdlib deadlocks here: a process that put more than a pipe buffer
    # (~64 KiB) waits in its feeder thread until someone reads, so join()
    # before get() never returns (SEMANTICS.md §12).
    q = Queue()
    p = make_process(qt.put_blob_and_exit, q, 5 << 20)
    p.join(MAX_WAIT)
    assert p.exitcode == 0
    assert q.get(timeout=MAX_WAIT) == b"x" * (5 << 20)
    rest = []
    while len(rest) < 5 << 10:
        rest += q.get_many(1000, timeout=MAX_WAIT)
    assert rest == [bytes([i % 256]) * 1024 for i in range(5 << 10)]


@pytest.mark.timeout(30)
def test_forked_child_gets_a_clear_error():
    q = Queue()
    pid = os.fork()
    if pid == 0:  # the child: the Go runtime did not survive the fork
        os._exit(qt.try_queue_after_fork(q))
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    q.put("parent still fine")
    assert q.get() == "parent still fine"


# -- processes killed in the middle ----------------------------------------------


@pytest.mark.timeout(120)
def test_producers_killed_at_random_moments(make_process):
    # The stdlib: "If a process is killed using Process.terminate() or
    # os.kill() while it is trying to use a Queue, then the data in the
    # queue is likely to become corrupted", and a writer killed while it
    # holds the queue's lock deadlocks every other writer.
    q = Queue()
    received = {}  # tag -> list of seq, in order of arrival
    started = {}  # tag -> threading.Event: its first item arrived
    errors = []
    stop = threading.Event()

    def consume():
        try:
            while not stop.is_set() or not q.empty():
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                tag, seq = qt.check_item(item)
                received.setdefault(tag, []).append(seq)
                started[tag].set()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    rng = random.Random(1234)
    budget = time.monotonic() + 12
    rounds = 0
    try:
        while time.monotonic() < budget and rounds < 100:
            tags = [f"{rounds}-{k}" for k in range(2)]
            procs = []
            for tag in tags:
                started[tag] = threading.Event()
                procs.append(make_process(qt.produce_forever, q, tag))
            for tag in tags:
                assert started[tag].wait(MAX_WAIT), "a producer never put its first item"
            for p in procs:  # at random moments: often in the middle of a put
                time.sleep(rng.random() * 0.01)
                os.kill(p.pid, signal.SIGKILL)
            for p in procs:
                p.join(MAX_WAIT)
                assert p.exitcode == -signal.SIGKILL
            rounds += 1
    finally:
        stop.set()
        consumer.join(MAX_WAIT)
    assert not consumer.is_alive(), "the consumer hung"
    assert not errors, errors
    assert rounds >= 5
    # Every item arrived intact (check_item), once, in order: a killed
    # producer's items are 0..k-1; the item it was putting is absent.
    for tag, seqs in received.items():
        assert seqs == list(range(len(seqs))), f"producer {tag}: {seqs[:20]}..."
    # The queue works afterwards.
    q.put_many(["after", "killing"])
    assert q.get_many(2, timeout=MAX_WAIT) == ["after", "killing"]
    assert q.empty()


@pytest.mark.timeout(120)
def test_consumers_killed_at_random_moments(make_process):
    # The stdlib: a reader killed while holding the queue's read lock
    # deadlocks every other reader; one killed mid-message corrupts the pipe.
    q, reports = Queue(), Queue()
    total = 3000
    rng = random.Random(99)
    for seq in range(total):
        size = rng.randrange(16, 1024) if seq % 16 else rng.randrange(64 << 10, 512 << 10)
        q.put(qt.checked_item("p", seq, size))
    reported = set()
    kills = 0
    while kills < 8:
        p = make_process(qt.consume_and_report, q, reports)
        reported.add(reports.get(timeout=MAX_WAIT)[1])  # it runs
        time.sleep(rng.random() * 0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.join(MAX_WAIT)
        kills += 1
        while True:
            try:
                reported.add(reports.get_nowait()[1])
            except queue.Empty:
                break
    drained = []
    while not q.empty():
        drained.append(qt.check_item(q.get(timeout=MAX_WAIT))[1])
    assert drained == sorted(drained)
    assert not reported & set(drained), "an item was delivered twice"
    lost = total - len(reported) - len(drained)
    assert 0 <= lost <= kills  # at most the item each killed consumer was taking
    q.put("after")
    assert q.get(timeout=MAX_WAIT) == "after"
