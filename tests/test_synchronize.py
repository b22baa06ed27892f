"""gopool.Lock, RLock, Semaphore, BoundedSemaphore, Condition and Barrier
against the stdlib's contract (multiprocessing.synchronize, CPython 3.11:
its API and messages), shared with gopool.Process children and Pool
workers; and what gopool does beyond it: a process killed while holding a
lock or a permit does not leave it held, a waiter killed in
Condition.wait() does not hang notify(), and a barrier party that dies
breaks the barrier instead of leaving the others waiting forever.

CPython's own test classes run in test_cpython_sync.py. Cross-process
tests synchronise through events, queues and the objects under test, never
through sleeps.
"""

import os
import pickle
import re
import signal
import threading
import time

import multiprocessing
import pytest

import gopool
import gopool.synchronize
from gopool import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    Process,
    Queue,
    RLock,
    Semaphore,
)

from helpers import sync_tasks as st
from helpers.tasks import MAX_WAIT

pytestmark = pytest.mark.timeout(60)

RELEASED_TOO_MANY = "semaphore or lock released too many times"
RECOVERY = 2.0  # the longest a dead holder may block the others (it is ~20 ms)

_spawn = multiprocessing.get_context("spawn")


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


def kill(p):
    """SIGKILL a process and wait until it is gone."""
    os.kill(p.pid, signal.SIGKILL)
    p.join(MAX_WAIT)
    assert p.exitcode == -signal.SIGKILL


def in_thread(target, *args):
    """Run target in a daemon thread; return (thread, results list)."""
    results = []
    t = threading.Thread(target=lambda: results.append(target(*args)), daemon=True)
    t.start()
    return t, results


# -- names -------------------------------------------------------------------------


def test_names():
    for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Barrier", "Event"):
        assert getattr(gopool, name) is getattr(gopool.synchronize, name)
        assert name in gopool.synchronize.__all__
    assert issubclass(BoundedSemaphore, Semaphore)
    assert isinstance(Barrier(2), threading.Barrier)  # as the stdlib's


# -- Lock ------------------------------------------------------------------------------


def test_lock_acquire_release():
    lock = Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(block=False) is False
    assert lock.acquire(blocking=False) is False  # threading's name, accepted too
    assert lock.acquire(True, 0) is False
    assert lock.acquire(timeout=-1) is False  # a negative timeout is 0
    assert lock.release() is None
    with pytest.raises(ValueError, match=f"^{RELEASED_TOO_MANY}$"):
        lock.release()
    assert lock.acquire(True, None) is True
    lock.release()


def test_lock_argument_errors():
    lock = Lock()
    with pytest.raises(TypeError, match="^must be real number, not str$"):
        lock.acquire(True, "1")
    with pytest.raises(TypeError, match="^must be real number, not str$"):
        lock.acquire(False, "1")  # the stdlib checks it even without blocking
    with pytest.raises(TypeError):
        lock.acquire(False, blocking=True)
    assert lock.acquire(False, 0.5) is True  # a timeout without blocking is ignored
    lock.release()


@pytest.mark.timeout(10)
def test_lock_timeout_is_honoured():
    lock = Lock()
    lock.acquire()
    start = time.monotonic()
    assert lock.acquire(timeout=0.3) is False
    assert 0.25 <= time.monotonic() - start < 3


@pytest.mark.timeout(10)
def test_lock_context_manager_and_release_by_another_thread():
    lock = Lock()
    with lock as got:
        assert got is True
        assert lock.acquire(False) is False
    assert lock.acquire(False) is True
    # As the stdlib's (a semaphore of one), any thread may release it.
    t, _ = in_thread(lock.release)
    t.join(MAX_WAIT)
    assert lock.acquire(False) is True
    lock.release()


@pytest.mark.timeout(10)
def test_lock_repr():
    lock = Lock()
    assert repr(lock) == "<Lock(owner=None)>"
    lock.acquire()
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    lock.release()
    t, _ = in_thread(lock.acquire)
    t.join(MAX_WAIT)
    assert repr(lock) == "<Lock(owner=SomeOtherThread)>"
    lock.release()


@pytest.mark.timeout(10)
def test_blocking_acquire_is_interruptible():
    lock = Lock()
    lock.acquire()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    assert time.monotonic() - start < 2
    timer.join()


# -- RLock ---------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_rlock():
    lock = RLock()
    assert repr(lock) == "<RLock(None, 0)>"
    assert lock.acquire() is True
    assert lock.acquire() is True
    assert lock.acquire(False) is True
    assert repr(lock) == "<RLock(MainProcess, 3)>"
    # Another thread: neither acquires nor releases it.
    t, results = in_thread(lambda: lock.acquire(timeout=0.05))
    t.join(MAX_WAIT)
    assert results == [False]
    t, results = in_thread(lambda: _raises(lock.release))
    t.join(MAX_WAIT)
    assert results == ["AssertionError: attempt to release recursive lock not owned by thread"]
    for _ in range(3):
        assert lock.release() is None
    with pytest.raises(AssertionError, match="^attempt to release recursive lock not owned by thread$"):
        lock.release()
    with lock as got:
        assert got is True
    t, _ = in_thread(lock.acquire)
    t.join(MAX_WAIT)
    assert repr(lock) == "<RLock(SomeOtherThread, nonzero)>"


def _raises(func):
    try:
        func()
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- Semaphore, BoundedSemaphore -------------------------------------------------------


@pytest.mark.timeout(10)
def test_semaphore():
    sem = Semaphore(2)
    assert repr(sem) == "<Semaphore(value=2)>"
    assert sem.acquire() is True and sem.get_value() == 1
    assert sem.acquire() is True and sem.get_value() == 0
    assert sem.acquire(False) is False
    start = time.monotonic()
    assert sem.acquire(timeout=0.2) is False
    assert time.monotonic() - start >= 0.15
    for value in (1, 2, 3, 4):  # beyond the initial value: no bound
        assert sem.release() is None
        assert sem.get_value() == value
    with sem as got:
        assert got is True and sem.get_value() == 3
    assert Semaphore().get_value() == 1
    assert Semaphore(0).acquire(False) is False


def test_semaphore_bad_values():
    with pytest.raises(OSError, match=r"^\[Errno 22\] Invalid argument$"):
        Semaphore(-1)
    with pytest.raises(OverflowError, match="^Python int too large to convert to C int$"):
        Semaphore(2**31)
    with pytest.raises(TypeError):
        Semaphore(1.5)
    sem = Semaphore(gopool.synchronize.SEM_VALUE_MAX)
    with pytest.raises(ValueError, match=f"^{RELEASED_TOO_MANY}$"):
        sem.release()


def test_bounded_semaphore():
    sem = BoundedSemaphore(2)
    assert repr(sem) == "<BoundedSemaphore(value=2, maxvalue=2)>"
    with pytest.raises(ValueError, match=f"^{RELEASED_TOO_MANY}$"):
        sem.release()
    assert sem.acquire() and sem.get_value() == 1
    sem.release()
    with pytest.raises(ValueError, match=f"^{RELEASED_TOO_MANY}$"):
        sem.release()
    assert sem.get_value() == 2
    zero = BoundedSemaphore(0)
    assert zero.acquire(False) is False
    with pytest.raises(ValueError, match=f"^{RELEASED_TOO_MANY}$"):
        zero.release()


@pytest.mark.timeout(10)
def test_semaphore_wakes_a_waiting_thread():
    sem = Semaphore(0)
    t, results = in_thread(lambda: sem.acquire(timeout=MAX_WAIT))
    sem.release()
    t.join(MAX_WAIT)
    assert results == [True] and sem.get_value() == 0


# -- Condition -------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_condition_needs_the_lock():
    cond = Condition()
    assert repr(cond) == "<Condition(<RLock(None, 0)>, 0)>"
    with pytest.raises(AssertionError, match=r"^must acquire\(\) condition before using wait\(\)$"):
        cond.wait(0)
    with pytest.raises(AssertionError, match="^lock is not owned$"):
        cond.notify()
    with pytest.raises(AssertionError, match="^lock is not owned$"):
        cond.notify_all()
    with cond:
        start = time.monotonic()
        assert cond.wait(0.2) is False
        assert time.monotonic() - start >= 0.15
        assert cond.wait_for(lambda: 0, timeout=0.05) == 0
        assert cond.wait_for(lambda: "yes") == "yes"
        cond.notify()
        cond.notify_all()
    with pytest.raises(TypeError):
        Condition(threading.Lock())


@pytest.mark.timeout(20)
@pytest.mark.parametrize("lock", [None, "Lock", "RLock"])
def test_condition_notify_n_wakes_n_oldest(lock):
    cond = Condition(None if lock is None else getattr(gopool, lock)())
    woken = Queue()

    def waiter(k, enlisted):
        with cond:
            if lock != "Lock":
                cond.acquire()  # recursive: wait() releases it fully
            enlisted.set()
            if cond.wait(MAX_WAIT):
                woken.put(k)
            if lock != "Lock":
                cond.release()

    threads = []
    for k in range(5):
        enlisted = threading.Event()
        t = threading.Thread(target=waiter, args=(k, enlisted), daemon=True)
        t.start()
        threads.append(t)
        enlisted.wait(MAX_WAIT)
        with cond:  # free again: the waiter is in wait()
            pass
    with cond:
        assert re.fullmatch(r"<Condition\(<R?Lock\(.*\)>, 5\)>", repr(cond)), repr(cond)
        cond.notify(2)
    assert sorted([woken.get(timeout=MAX_WAIT) for _ in range(2)]) == [0, 1]
    with cond:
        cond.notify_all()
    assert sorted([woken.get(timeout=MAX_WAIT) for _ in range(3)]) == [2, 3, 4]
    for t in threads:
        t.join(MAX_WAIT)
    with cond:
        assert repr(cond).endswith(", 0)>")


# -- Barrier ---------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_barrier_threads_action_and_indexes():
    actions = []
    barrier = Barrier(3, action=lambda: actions.append(1))
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    assert re.fullmatch(r"<gopool\.synchronize\.Barrier at 0x[0-9a-f]+: waiters=0/3>", repr(barrier))
    results = []
    threads = [threading.Thread(target=lambda: results.append(barrier.wait(MAX_WAIT))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(MAX_WAIT)
    assert sorted(results) == [0, 1, 2] and actions == [1]
    assert Barrier(1).wait() == 0


@pytest.mark.timeout(20)
def test_barrier_timeout_abort_reset():
    barrier = Barrier(2, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()  # the default timeout
    assert time.monotonic() - start >= 0.15
    assert barrier.broken
    assert re.fullmatch(r"<gopool\.synchronize\.Barrier at 0x[0-9a-f]+: broken>", repr(barrier))
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(MAX_WAIT)
    barrier.reset()
    assert not barrier.broken
    # reset() frees a waiter with BrokenBarrierError.
    t, results = in_thread(lambda: _raises(lambda: barrier.wait(MAX_WAIT)))
    while barrier.n_waiting < 1:
        time.sleep(0.005)
    barrier.reset()
    t.join(MAX_WAIT)
    assert results == ["BrokenBarrierError: "]
    barrier.abort()
    assert barrier.broken
    with pytest.raises(ValueError, match=r"^parties must be >= 1$"):
        Barrier(0)


@pytest.mark.timeout(20)
def test_barrier_failing_action_breaks_it():
    def action():
        raise KeyError("in the action")

    barrier = Barrier(2, action=action)
    t, results = in_thread(lambda: _raises(lambda: barrier.wait(MAX_WAIT)))
    while barrier.n_waiting < 1:
        time.sleep(0.005)
    with pytest.raises(KeyError):
        barrier.wait(MAX_WAIT)  # the last to come runs the action
    t.join(MAX_WAIT)
    assert results == ["BrokenBarrierError: "] and barrier.broken


# -- pickling, fork --------------------------------------------------------------------


@pytest.mark.parametrize("make", [Lock, RLock, Semaphore, BoundedSemaphore, Condition, lambda: Barrier(2)])
def test_pickling_outside_process_creation(make):
    obj = make()
    name = type(obj).__name__
    with pytest.raises(RuntimeError, match=f"^{name} objects should only be shared between processes through inheritance$"):
        pickle.dumps(obj)


@pytest.mark.timeout(30)
def test_forked_child_gets_a_clear_error():
    objects = (Lock(), RLock(), Semaphore(), Condition(), Barrier(1))
    pid = os.fork()
    if pid == 0:  # the Go runtime did not survive the fork
        os._exit(st.try_after_fork(objects))
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert objects[0].acquire(False)


# -- across processes ------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_lock_excludes_across_processes(make_process):
    lock, counter = Lock(), _spawn.RawValue("i", 0)
    procs = [make_process(st.count_under_lock, lock, counter, 2000) for _ in range(3)]
    st.count_under_lock(lock, counter, 2000)
    for p in procs:
        p.join(MAX_WAIT)
        assert p.exitcode == 0
    assert counter.value == 8000


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [Lock, RLock])
def test_lock_in_pool_initargs(make_pool, make):
    lock, counter = make(), _spawn.RawValue("i", 0)
    pool = make_pool(2, initializer=st.remember, initargs=(lock, counter))
    pids = pool.map(st.count_in_worker, [500] * 6, chunksize=1)
    assert counter.value == 3000
    assert os.getpid() not in pids


@pytest.mark.timeout(60)
def test_semaphore_signals_across_processes(make_process):
    sem = Semaphore(0)
    p = make_process(st.release_permits, sem, 5)
    for _ in range(5):
        assert sem.acquire(timeout=MAX_WAIT)
    p.join(MAX_WAIT)
    assert p.exitcode == 0 and sem.get_value() == 0


@pytest.mark.timeout(60)
def test_condition_across_processes(make_process):
    cond, value, done = Condition(), _spawn.RawValue("i", 0), Event()
    p = make_process(st.wait_for_value, cond, value, 3, done)
    for _ in range(3):
        with cond:
            value.value += 1
            cond.notify_all()
    assert done.wait(MAX_WAIT)
    p.join(MAX_WAIT)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_barrier_across_processes(make_process):
    barrier, indexes = Barrier(3), Queue()
    procs = [make_process(st.pass_rounds, barrier, 30, indexes) for _ in range(2)]
    mine = [barrier.wait(MAX_WAIT) for _ in range(30)]
    theirs = [indexes.get(timeout=MAX_WAIT) for _ in procs]
    for p in procs:
        p.join(MAX_WAIT)
        assert p.exitcode == 0
    for r in range(30):
        assert sorted([mine[r], theirs[0][r], theirs[1][r]]) == [0, 1, 2]
    assert not barrier.broken


@pytest.mark.timeout(60)
def test_barrier_in_pool_initializer(make_pool):
    # Each worker's initializer waits at the barrier: it passes only once
    # both workers run.
    pool = make_pool(2, initializer=st.meet_at_barrier, initargs=(Barrier(2),))
    assert len(pool.map(st.worker_pid, range(4))) == 4


# -- a process killed while holding --------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make,times", [(Lock, 1), (RLock, 3)])
def test_lock_of_a_killed_holder_is_taken_over(make_process, make, times):
    # The stdlib: the lock stays held forever.
    lock, held = make(), Event()
    p = make_process(st.hold_and_hang, lock, held, times)
    assert held.wait(MAX_WAIT)
    assert lock.acquire(False) is False
    assert re.fullmatch(r"<R?Lock\((owner=)?SomeOtherProcess(, nonzero)?\)>", repr(lock)), repr(lock)
    kill(p)
    start = time.monotonic()
    assert lock.acquire(timeout=MAX_WAIT) is True
    assert time.monotonic() - start < RECOVERY
    assert lock.recovered is True  # what it protected may be half updated
    lock.release()
    assert lock.recovered is False
    assert lock.acquire(False) is True and lock.recovered is False
    lock.release()


@pytest.mark.timeout(60)
def test_lock_of_a_killed_holder_is_taken_over_without_waiting(make_process):
    lock, held = Lock(), Event()
    p = make_process(st.hold_and_hang, lock, held)
    assert held.wait(MAX_WAIT)
    kill(p)
    assert lock.acquire(False) is True and lock.recovered


@pytest.mark.timeout(60)
def test_lock_of_a_killed_pool_worker_is_taken_over(make_pool):
    lock, pids = Lock(), Queue()
    pool = make_pool(1, initializer=st.remember, initargs=(lock, pids))
    result = pool.apply_async(st.hold_in_worker, (0,))
    pid = pids.get(timeout=MAX_WAIT)
    assert lock.acquire(False) is False
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(gopool.WorkerLostError):
        result.get(MAX_WAIT)
    start = time.monotonic()
    assert lock.acquire(timeout=MAX_WAIT) and lock.recovered
    assert time.monotonic() - start < RECOVERY


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [Semaphore, BoundedSemaphore])
def test_permits_of_a_killed_holder_come_back(make_process, make):
    # The stdlib: the permits are lost for good.
    sem, held = make(3), Event()
    p = make_process(st.take_permits_and_hang, sem, 2, held)
    assert held.wait(MAX_WAIT)
    assert sem.get_value() == 1
    assert sem.acquire(False)
    kill(p)
    start = time.monotonic()
    assert sem.acquire(timeout=MAX_WAIT) and sem.acquire(timeout=MAX_WAIT)
    assert time.monotonic() - start < RECOVERY
    assert sem.get_value() == 0
    for _ in range(3):
        sem.release()
    if make is BoundedSemaphore:
        with pytest.raises(ValueError, match=f"^{RELEASED_TOO_MANY}$"):
            sem.release()


@pytest.mark.timeout(60)
def test_permit_taken_by_a_process_that_exits_normally_is_consumed(make_process):
    # A semaphore used to signal: the process that took the signal owns it.
    sem = Semaphore(1)
    p = make_process(st.take_permit_and_exit, sem)
    p.join(MAX_WAIT)
    assert p.exitcode == 0
    assert sem.acquire(timeout=0.3) is False
    assert sem.get_value() == 0


@pytest.mark.timeout(60)
def test_waiter_killed_in_condition_wait_does_not_hang_notify(make_process):
    # The stdlib: notify() waits for the woken waiter to say it woke, and a
    # killed one never does: notify() hangs.
    cond, waiting = Condition(Lock()), Event()
    p = make_process(st.wait_on_condition_and_hang, cond, waiting)
    assert waiting.wait(MAX_WAIT)
    with cond:  # the child released the lock: it is in wait()
        pass
    kill(p)

    def notify():
        with cond:
            cond.notify()
        return "returned"

    t, results = in_thread(notify)
    t.join(RECOVERY)
    assert results == ["returned"], "notify() hangs on a killed waiter"
    enlisted = threading.Event()

    def live_waiter():
        with cond:
            enlisted.set()
            return cond.wait(MAX_WAIT)

    t, results = in_thread(live_waiter)
    assert enlisted.wait(MAX_WAIT)
    with cond:  # the thread is in wait()
        start = time.monotonic()
        cond.notify()  # to the live waiter, not the dead one
        assert time.monotonic() - start < RECOVERY
    t.join(MAX_WAIT)
    assert results == [True]


@pytest.mark.timeout(60)
def test_barrier_party_killed_while_waiting_breaks_it(make_process):
    # The stdlib: the others wait forever (or until their timeout). Here
    # the two live parties are one short even with the dead one counted.
    barrier = Barrier(4)
    p = make_process(st.wait_at_barrier_and_hang, barrier)
    deadline = time.monotonic() + MAX_WAIT
    while barrier.n_waiting < 1:  # no event can say "inside wait()"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    kill(p)
    t, results = in_thread(lambda: _raises(barrier.wait))
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()  # no timeout: it would hang
    assert time.monotonic() - start < RECOVERY
    t.join(MAX_WAIT)
    assert results == ["BrokenBarrierError: "] and barrier.broken
    barrier.reset()
    assert barrier.n_waiting == 0 and not barrier.broken


@pytest.mark.timeout(60)
def test_barrier_party_killed_between_waits_breaks_it(make_process):
    barrier, passed = Barrier(2), Event()
    p = make_process(st.pass_once_then_hang, barrier, passed)
    assert barrier.wait(MAX_WAIT) in (0, 1)
    assert passed.wait(MAX_WAIT)
    kill(p)  # it will never come to the second round
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    assert time.monotonic() - start < RECOVERY


@pytest.mark.timeout(60)
def test_barrier_party_that_exits_normally_is_not_dead(make_process):
    barrier = Barrier(2)
    p = make_process(st.pass_once_and_exit, barrier)
    barrier.wait(MAX_WAIT)
    p.join(MAX_WAIT)
    assert p.exitcode == 0
    # Its exit did not break the barrier: a lone waiter breaks it by its
    # timeout only, not after the ~20 ms in which a dead party is noticed.
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.5)
    assert time.monotonic() - start >= 0.45
    barrier.reset()
    t, results = in_thread(lambda: barrier.wait(MAX_WAIT))
    barrier.wait(MAX_WAIT)
    t.join(MAX_WAIT)
    assert len(results) == 1 and not barrier.broken
