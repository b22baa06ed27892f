"""Targets for the lock, semaphore, condition and barrier tests
(tests/test_synchronize.py), importable by gopool.Process children and pool
workers (they get the parent's sys.path). Children that must be seen to
reach a point set an Event; children that must stay there wait on an Event
the test never sets, until they are killed."""

import os
import threading

from helpers.tasks import MAX_WAIT

# Set by ``remember`` (a pool initializer), used by tasks of the same worker.
SHARED = None


def remember(*objects):
    """Pool initializer: keep the objects the pool was given."""
    global SHARED
    SHARED = objects


def count_under_lock(lock, counter, n):
    """n times: with lock held, read the shared counter, then write it + 1
    (two steps: without the lock, increments are lost)."""
    for _ in range(n):
        with lock:
            value = counter.value
            counter.value = value + 1


def count_in_worker(n):
    """A pool task: count_under_lock with the initializer's lock and counter."""
    lock, counter = SHARED
    count_under_lock(lock, counter, n)
    return os.getpid()


def hold_and_hang(lock, held, times=1):
    """Acquire lock (times times: an RLock may be taken again), set held,
    then wait until killed."""
    for _ in range(times):
        assert lock.acquire(timeout=MAX_WAIT)
    held.set()
    threading.Event().wait(MAX_WAIT)


def take_permits_and_hang(sem, n, held):
    """Take n permits, set held, then wait until killed."""
    for _ in range(n):
        assert sem.acquire(timeout=MAX_WAIT)
    held.set()
    threading.Event().wait(MAX_WAIT)


def take_permit_and_exit(sem):
    """Take a permit (a signal) and exit normally: the permit is consumed."""
    assert sem.acquire(timeout=MAX_WAIT)


def release_permits(sem, n):
    """Release n permits (signals) without having taken any."""
    for _ in range(n):
        sem.release()


def hold_in_worker(_):
    """A pool task: take the initializer's lock, report the worker's pid on
    the initializer's queue, then wait until killed."""
    lock, pids = SHARED
    assert lock.acquire(timeout=MAX_WAIT)
    pids.put(os.getpid())
    threading.Event().wait(MAX_WAIT)


def wait_for_value(cond, value, want, done):
    """With cond held, wait until value.value == want, then set done."""
    with cond:
        if cond.wait_for(lambda: value.value == want, timeout=MAX_WAIT):
            done.set()


def wait_on_condition_and_hang(cond, waiting):
    """Enter cond.wait() (set waiting just before, with the lock held: the
    test takes the lock after, so the wait has begun), until killed."""
    with cond:
        waiting.set()
        cond.wait(MAX_WAIT)


def pass_rounds(barrier, rounds, indexes):
    """Wait at barrier rounds times; put the indexes on a queue."""
    got = [barrier.wait(MAX_WAIT) for _ in range(rounds)]
    indexes.put(got)


def wait_at_barrier_and_hang(barrier):
    """Wait at barrier (the test kills the process while it waits)."""
    barrier.wait(MAX_WAIT)


def pass_once_then_hang(barrier, passed):
    """Pass the barrier once, set passed, then wait until killed."""
    barrier.wait(MAX_WAIT)
    passed.set()
    threading.Event().wait(MAX_WAIT)


def pass_once_and_exit(barrier):
    """Pass the barrier once and exit normally."""
    barrier.wait(MAX_WAIT)


def meet_at_barrier(barrier):
    """Pool initializer: every worker waits at the barrier, so none starts
    before all have."""
    remember(barrier)
    barrier.wait(MAX_WAIT)


def worker_pid(_):
    return os.getpid()


def try_after_fork(objects):
    """In a child of os.fork(): the number of calls on objects that did not
    raise gopool.ForkedChildError (0 is the expected answer)."""
    import gopool

    lock, rlock, sem, cond, barrier = objects
    calls = [
        lock.acquire, lock.release, rlock.acquire, sem.acquire, sem.release, sem.get_value,
        cond.acquire, barrier.wait, barrier.abort, barrier.reset, lambda: barrier.n_waiting,
    ]
    failures = 0
    for f in calls:
        try:
            f()
        except gopool.ForkedChildError:
            continue
        except BaseException:
            pass
        failures += 1
    return failures
