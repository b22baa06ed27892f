"""Stopping work the stdlib cannot stop (README.md, "Where gopool differs from the stdlib"):
AsyncResult.cancel(), per-task time limits, a per-worker memory limit,
ThreadPool.terminate()/cancel() that interrupt Python code, and
introspection of workers and queued tasks.

Each test says what the stdlib does in the same situation. Tasks announce
that they started by creating a file (process pools) or setting an Event
(thread pools); tests wait for that, never on a sleep.
"""

import builtins
import concurrent.futures
import functools
import multiprocessing
import os
import threading
import time

import pytest

import gopool
from gopool import CancelledError, Pool, PoolTerminatedError, ThreadPool, TimeoutError

from helpers import process_tasks as pt
from helpers import tasks
from helpers.util import wait_for_path, wait_pids_gone

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
GiB = 1 << 30


def _assert_cancelled(result, timeout=10):
    with pytest.raises(CancelledError) as info:
        result.get(timeout=timeout)
    assert isinstance(info.value, concurrent.futures.CancelledError)
    assert result.ready() and not result.successful()
    assert result.cancelled()


def _only_worker(pool):
    [worker] = pool.workers()
    return worker.pid


# --------------------------------------------------------------------------
# AsyncResult.cancel()


@pytest.mark.timeout(30)
def test_cancel_queued_task_never_runs(pool1, tmp_path):
    # stdlib: AsyncResult has no cancel() (AttributeError); a queued task
    # always runs eventually.
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    trace = tmp_path / "ran"
    blocker = pool1.apply_async(tasks.wait_for_go, (started, go, "blocker"))
    pid = int(wait_for_path(started))
    queued = pool1.apply_async(pt.create_file, (str(trace), "queued"))
    assert not queued.cancelled()
    assert queued.cancel() is True
    assert queued.cancelled()
    _assert_cancelled(queued)
    # The running task was not disturbed.
    open(go, "w").close()
    assert blocker.get(timeout=20) == ("blocker", pid)
    after = pool1.apply_async(pt.create_file, (str(tmp_path / "after"), "after"))
    assert after.get(timeout=20) == "after"
    pool1.close()
    pool1.join()
    assert not trace.exists(), "a cancelled task ran"
    _assert_cancelled(queued, timeout=0)


@pytest.mark.timeout(30)
def test_cancel_running_task_replaces_its_worker(pool1, tmp_path):
    # stdlib: no cancel(); the task runs to its end (here 60 s).
    marker = str(tmp_path / "started")
    r = pool1.apply_async(pt.touch_then_sleep, (marker, 60))
    pid = int(wait_for_path(marker))
    start = time.monotonic()
    assert r.cancel() is True
    _assert_cancelled(r)
    assert time.monotonic() - start < 5
    assert wait_pids_gone([pid]) == [], "the cancelled task's worker still runs"
    new_pid = pool1.apply(tasks.getpid)
    assert new_pid != pid
    assert _only_worker(pool1) == new_pid
    assert pool1.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]


@pytest.mark.timeout(30)
def test_cancel_running_task_spares_other_workers(pool, tmp_path):
    victim = pool.apply_async(pt.touch_then_sleep, (str(tmp_path / "victim"), 60))
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    survivor = pool.apply_async(tasks.wait_for_go, (started, go, "survivor"))
    victim_pid = int(wait_for_path(tmp_path / "victim"))
    survivor_pid = int(wait_for_path(started))
    assert victim.cancel() is True
    _assert_cancelled(victim)
    open(go, "w").close()
    assert survivor.get(timeout=20) == ("survivor", survivor_pid)
    assert wait_pids_gone([victim_pid]) == []
    assert survivor_pid in {w.pid for w in pool.workers()}


def test_cancel_finished_result_returns_false(pool1):
    r = pool1.apply_async(tasks.square, (3,))
    assert r.get(timeout=20) == 9
    assert r.cancel() is False
    assert not r.cancelled()
    assert r.get(timeout=0) == 9 and r.successful()


def test_cancel_failed_result_returns_false(pool1):
    r = pool1.apply_async(tasks.raise_value_error, ("boom",))
    with pytest.raises(ValueError):
        r.get(timeout=20)
    assert r.cancel() is False
    assert not r.cancelled()


@pytest.mark.timeout(30)
def test_cancel_calls_the_error_callback(pool1, tmp_path):
    marker = str(tmp_path / "started")
    got, errors = [], []
    r = pool1.apply_async(pt.touch_then_sleep, (marker, 60), callback=got.append, error_callback=errors.append)
    wait_for_path(marker)
    assert r.cancel() is True
    _assert_cancelled(r)
    assert got == []
    assert len(errors) == 1 and isinstance(errors[0], CancelledError)


def _warm_up(pool):
    """Run short tasks until the pool has measured them as short: it then
    sends queued tasks ahead to busy workers (pipelining)."""
    assert pool.map(tasks.square, range(64), chunksize=1) == [x * x for x in range(64)]


@pytest.mark.timeout(30)
def test_cancel_never_runs_what_it_reports_cancelled(pool1, tmp_path):
    # Tasks waiting in the pool's queue (long tasks are not sent ahead to a
    # busy worker): True means the task never runs, False that it completed.
    head = pool1.apply_async(tasks.sleep_then_return, (0.2, "head"))
    results = [pool1.apply_async(pt.create_file, (str(tmp_path / f"ran-{i}"), i)) for i in range(10)]
    cancelled = {i for i, r in enumerate(results) if i % 2 and r.cancel()}
    assert head.get(timeout=20) == "head"
    pool1.close()
    pool1.join()
    assert cancelled, "no task could be cancelled while the first one ran for 0.2 s"
    for i, r in enumerate(results):
        if i in cancelled:
            _assert_cancelled(r, timeout=0)
            assert not (tmp_path / f"ran-{i}").exists(), f"task {i} ran although cancel() returned True"
        else:
            assert r.get(timeout=0) == i
            assert not r.cancelled()


@pytest.mark.timeout(30)
def test_cancel_of_a_task_sent_ahead_is_exact_and_spares_the_running_task(pool1, tmp_path):
    # A short task sent ahead to a busy worker (pipelining) is cancelled: it
    # must never run (the worker skips it: the core revokes it in the
    # worker's channel), and the task the worker is running belongs to
    # another result and must not be hurt.
    _warm_up(pool1)
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    head = pool1.apply_async(tasks.wait_for_go, (started, go, "head"))
    pid = int(wait_for_path(started))
    behind = pool1.apply_async(pt.create_file, (str(tmp_path / "ran"), 7))
    assert behind.cancel() is True
    _assert_cancelled(behind)
    open(go, "w").close()
    assert head.get(timeout=20) == ("head", pid)
    assert pool1.apply(tasks.getpid) == pid  # the worker was not killed
    assert not (tmp_path / "ran").exists(), "the task ran although cancel() returned True"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stop", ["cancel", "timeout"])
def test_tasks_sent_behind_a_stopped_task_still_run(pool1, tmp_path, stop):
    # Short tasks sent ahead to the worker of a task that is then stopped
    # (its worker killed) belong to other results: they run on the new worker.
    _warm_up(pool1)
    marker = str(tmp_path / "started")
    r = pool1.apply_async(pt.touch_then_sleep, (marker, 30), timeout=1 if stop == "timeout" else None)
    pid = int(wait_for_path(marker))
    behind = [pool1.apply_async(tasks.square, (i,)) for i in range(5)]
    if stop == "cancel":
        assert r.cancel() is True
        _assert_cancelled(r)
    else:
        with pytest.raises(TimeoutError):
            r.get(timeout=20)
    assert [b.get(timeout=20) for b in behind] == [0, 1, 4, 9, 16]
    assert wait_pids_gone([pid]) == []


@pytest.mark.timeout(30)
def test_map_async_cancel_fails_the_whole_map(pool, tmp_path):
    # stdlib: no cancel(); every chunk runs.
    sleeper = functools.partial(tasks.touch_then_sleep, str(tmp_path), seconds=60)
    errors = []
    m = pool.map_async(sleeper, range(6), chunksize=1, error_callback=errors.append)
    pid = int(wait_for_path(tmp_path / "started-0"))
    assert m.cancel() is True
    _assert_cancelled(m)
    assert len(errors) == 1 and isinstance(errors[0], CancelledError)
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]
    pool.close()
    pool.join()
    assert wait_pids_gone([pid]) == []
    started = {p.name for p in tmp_path.iterdir() if p.name.startswith("started-") and ".tmp" not in p.name}
    # At most the two chunks that were running when cancel() came had started.
    assert started <= {"started-0", "started-1"}, started


# --------------------------------------------------------------------------
# Time limits


@pytest.mark.timeout(30)
def test_apply_async_timeout_stops_the_task(pool1, tmp_path):
    # stdlib: apply_async() takes no timeout (TypeError); get(timeout) only
    # stops waiting, the task keeps its worker busy.
    marker = str(tmp_path / "started")
    r = pool1.apply_async(pt.touch_then_sleep, (marker, 30), timeout=1)
    start = time.monotonic()
    pid = int(wait_for_path(marker))
    with pytest.raises(TimeoutError) as info:
        r.get(timeout=20)
    elapsed = time.monotonic() - start
    assert elapsed < 8, f"the task was stopped after {elapsed:.1f} s"
    assert r.ready() and not r.successful()
    assert not r.cancelled()
    exc = info.value
    assert isinstance(exc, multiprocessing.TimeoutError) and isinstance(exc, builtins.TimeoutError)
    assert str(pid) in str(exc), str(exc)
    assert wait_pids_gone([pid]) == [], "the timed-out worker still runs"
    new_pid = pool1.apply(tasks.getpid)
    assert new_pid != pid
    assert _only_worker(pool1) == new_pid



@pytest.mark.timeout(30)
def test_timeout_counts_from_the_start_of_the_task(pool1, tmp_path):
    # A task that waits in the queue longer than its limit still gets its
    # whole limit once it starts.
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    blocker = pool1.apply_async(tasks.wait_for_go, (started, go))
    wait_for_path(started)
    queued = pool1.apply_async(tasks.sleep_then_return, (0.1, "ran"), timeout=1)
    time.sleep(1.5)  # the time under test: longer than the queued task's limit
    open(go, "w").close()
    blocker.get(timeout=20)
    assert queued.get(timeout=20) == "ran"


def test_task_under_its_limit_succeeds(pool1):
    assert pool1.apply_async(tasks.sleep_then_return, (0.05, "fast"), timeout=10).get(timeout=20) == "fast"


@pytest.mark.timeout(30)
def test_pool_task_timeout(make_pool, tmp_path):
    # stdlib: Pool() takes no task_timeout (TypeError).
    p = make_pool(1, task_timeout=1)
    pid = p.apply(tasks.getpid)
    marker = str(tmp_path / "started")
    r = p.apply_async(pt.touch_then_sleep, (marker, 30))
    start = time.monotonic()
    wait_for_path(marker)
    with pytest.raises(TimeoutError):
        r.get(timeout=20)
    assert time.monotonic() - start < 8
    assert wait_pids_gone([pid]) == []
    assert p.apply(tasks.square, (6,)) == 36
    assert p.apply(tasks.getpid) != pid


@pytest.mark.timeout(30)
def test_apply_async_timeout_overrides_pool_default(make_pool):
    p = make_pool(1, task_timeout=0.5)
    assert p.apply_async(tasks.sleep_then_return, (1.5, "longer"), timeout=20).get(timeout=20) == "longer"
    with pytest.raises(TimeoutError):
        p.apply_async(tasks.sleep_then_return, (30, "never")).get(timeout=20)


@pytest.mark.timeout(30)
def test_map_with_a_chunk_over_the_limit_fails(make_pool):
    # stdlib: no time limit; map() waits for the slow chunk.
    p = make_pool(2, task_timeout=1)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        p.starmap(tasks.sleep_then_return, [(0, "a"), (0, "b"), (30, "slow"), (0, "d")], chunksize=1)
    assert time.monotonic() - start < 8
    assert p.map(tasks.square, range(6), chunksize=2) == [0, 1, 4, 9, 16, 25]


@pytest.mark.timeout(30)
def test_map_chunk_limit_applies_to_the_whole_chunk(make_pool):
    # Each item is fast, but a chunk of four takes about 2 s: over a 1 s limit.
    p = make_pool(1, task_timeout=1)
    with pytest.raises(TimeoutError):
        p.starmap(tasks.sleep_then_return, [(0.5, i) for i in range(4)], chunksize=4)


@pytest.mark.timeout(30)
def test_imap_item_over_the_limit_fails_only_that_item(make_pool):
    p = make_pool(1, task_timeout=1)
    it = p.imap(pt.sleep_for, [0, 30, 0])
    out = []
    for _ in range(3):
        try:
            out.append(it.next(timeout=20))
        except TimeoutError as exc:
            out.append(type(exc))
    assert out == [None, TimeoutError, None]
    with pytest.raises(StopIteration):
        it.next(timeout=20)


@pytest.mark.parametrize("value", [0, -1, -0.5, "1"])
def test_task_timeout_validation(value):
    with pytest.raises(ValueError, match="task_timeout"):
        Pool(1, task_timeout=value)


@pytest.mark.parametrize("value", [0, -1])
def test_apply_async_timeout_validation(pool1, value):
    with pytest.raises(ValueError, match="timeout"):
        pool1.apply_async(tasks.square, (2,), timeout=value)
    assert pool1.apply(tasks.square, (2,)) == 4


# --------------------------------------------------------------------------
# Memory limit


@pytest.mark.timeout(30)
def test_max_memory_per_child(make_pool):
    # stdlib: no memory limit; a runaway task takes the machine's memory and
    # the OOM killer's SIGKILL then hangs the pool.
    p = make_pool(1, max_memory_per_child=512 * MiB)
    assert p.apply(pt.allocate, (16 * MiB,))[0] == 16 * MiB  # a task under the limit
    pid = _only_worker(p)
    with pytest.raises(MemoryError) as info:
        p.apply_async(pt.allocate, (2 * GiB,)).get(timeout=20)
    assert "max_memory_per_child" in str(info.value), str(info.value)
    assert wait_pids_gone([pid]) == [], "the worker over its memory limit was not replaced"
    size, new_pid = p.apply(pt.allocate, (16 * MiB,))
    assert size == 16 * MiB and new_pid != pid
    assert _only_worker(p) == new_pid


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_max_memory_per_child_validation(value):
    with pytest.raises(ValueError, match="max_memory_per_child"):
        Pool(1, max_memory_per_child=value)


# --------------------------------------------------------------------------
# ThreadPool


def _python_loop(started, release, limit=30.0):
    """Run Python bytecode until release is set."""
    started.set()
    deadline = time.monotonic() + limit
    n = 0
    while not release.is_set():
        n += 1
        if time.monotonic() > deadline:
            raise RuntimeError("never interrupted")
    return n


@pytest.mark.timeout(30)
def test_threadpool_terminate_interrupts_python_code(make_pool):
    # stdlib: terminate() cannot stop a running thread; join() waits until
    # the loop ends (here: never).
    p = make_pool(1, cls=ThreadPool)
    started, release = threading.Event(), threading.Event()
    try:
        r = p.apply_async(_python_loop, (started, release))
        queued = p.apply_async(tasks.square, (3,))
        assert started.wait(10)
        start = time.monotonic()
        p.terminate()
        p.join()
        assert time.monotonic() - start < 2
        for result in (r, queued):
            with pytest.raises(PoolTerminatedError):
                result.get(timeout=0)
        assert p.workers() == []
    finally:
        release.set()


@pytest.mark.timeout(30)
def test_threadpool_terminate_waits_for_a_task_blocked_in_c(make_pool):
    # A single C call (time.sleep) cannot be interrupted: the task finishes
    # and join() waits for it, as in the stdlib; its result fails at once.
    p = make_pool(1, cls=ThreadPool)
    started, finished = threading.Event(), threading.Event()

    def sleeper():
        started.set()
        time.sleep(1)
        finished.set()
        return "slept"

    r = p.apply_async(sleeper)
    assert started.wait(10)
    p.terminate()
    with pytest.raises(PoolTerminatedError):
        r.get(timeout=0.5)
    p.join()
    assert finished.is_set(), "join() returned before the blocked task finished"


@pytest.mark.timeout(30)
def test_threadpool_cancel_running_python_task(make_pool):
    # stdlib: no cancel(); the thread is busy until the task ends (never).
    p = make_pool(1, cls=ThreadPool)
    started, release = threading.Event(), threading.Event()
    try:
        [ident] = [w.pid for w in p.workers()]
        r = p.apply_async(_python_loop, (started, release))
        assert started.wait(10)
        assert r.cancel() is True
        _assert_cancelled(r, timeout=5)
        # The only thread was freed from the loop and serves the next task.
        assert p.apply_async(threading.get_ident).get(timeout=5) == ident
        assert p.apply(tasks.square, (5,)) == 25
        assert [w.pid for w in p.workers()] == [ident]
    finally:
        release.set()


@pytest.mark.timeout(30)
def test_threadpool_cancel_queued_task_never_runs(make_pool):
    p = make_pool(1, cls=ThreadPool)
    started, release = threading.Event(), threading.Event()
    ran = []
    try:
        blocker = p.apply_async(_python_loop, (started, release))
        assert started.wait(10)
        queued = p.apply_async(ran.append, ("ran",))
        assert queued.cancel() is True
        _assert_cancelled(queued)
    finally:
        release.set()
    assert isinstance(blocker.get(timeout=10), int)
    p.close()
    p.join()
    assert ran == []


# --------------------------------------------------------------------------
# Introspection


@pytest.mark.timeout(30)
def test_workers_show_the_busy_one(pool, tmp_path):
    # stdlib: nothing public; pool._pool lists Process objects, with no busy
    # state or task count.
    idle = pool.workers()
    assert len(idle) == 2 and not any(w.busy for w in idle)
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    r = pool.apply_async(tasks.wait_for_go, (started, go))
    pid = int(wait_for_path(started))
    workers = pool.workers()
    assert len(workers) == 2
    assert [w.pid for w in workers if w.busy] == [pid]
    assert {w.pid for w in workers} == {w.pid for w in idle}
    [busy] = [w for w in workers if w.busy]
    assert (busy.function, busy.index, busy.result) == ("wait_for_go", 0, r)
    assert repr(busy).startswith(f"<WorkerInfo pid={pid} busy with wait_for_go[0]")
    open(go, "w").close()
    assert r.get(timeout=20)[1] == pid
    deadline = time.monotonic() + 10
    while any(w.busy for w in pool.workers()) and time.monotonic() < deadline:
        time.sleep(0.01)
    after = {w.pid: w for w in pool.workers()}
    assert not any(w.busy for w in after.values())
    assert after[pid].tasks_done >= 1


@pytest.mark.timeout(30)
def test_queued_counts_waiting_tasks(pool1, tmp_path):
    # stdlib: nothing public (pool._taskqueue.qsize() misses tasks already
    # taken by the task handler).
    assert pool1.queued() == 0
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    blocker = pool1.apply_async(tasks.wait_for_go, (started, go))
    wait_for_path(started)
    waiting = [pool1.apply_async(tasks.square, (i,)) for i in range(3)]
    assert pool1.queued() == 3
    assert waiting[1].cancel() is True
    assert pool1.queued() == 2
    open(go, "w").close()
    blocker.get(timeout=20)
    assert [waiting[i].get(timeout=20) for i in (0, 2)] == [0, 4]
    assert pool1.queued() == 0


@pytest.mark.timeout(30)
def test_threadpool_introspection(make_pool):
    p = make_pool(1, cls=ThreadPool)
    started, release = threading.Event(), threading.Event()
    try:
        r = p.apply_async(_python_loop, (started, release))
        assert started.wait(10)
        queued = [p.apply_async(tasks.square, (i,)) for i in range(2)]
        [worker] = p.workers()
        assert worker.busy
        assert (worker.function, worker.index, worker.result) == ("_python_loop", 0, r)
        assert worker.pid in {t.ident for t in threading.enumerate()}
        assert p.queued() == 2
    finally:
        release.set()
    r.get(timeout=10)
    assert [q.get(timeout=10) for q in queued] == [0, 1]
    assert p.queued() == 0


# --------------------------------------------------------------------------
# Soft time limits: the task is told first, then stopped


@pytest.mark.timeout(30)
def test_soft_limit_raises_inside_the_task(make_pool):
    p = make_pool(1, soft_timeout=0.3)
    start = time.monotonic()
    assert p.apply(tasks.sleep_or_clean_up, (20,)) == "cleaned up"
    assert time.monotonic() - start < 5
    assert p.apply(tasks.sleep_or_clean_up, (0.01,)) == "finished"


@pytest.mark.timeout(30)
def test_soft_limit_not_caught_fails_the_task_with_it(make_pool):
    p = make_pool(1)
    r = p.apply_async(time.sleep, (20,), soft_timeout=0.2, timeout=10)
    with pytest.raises(gopool.SoftTimeLimitExceeded):
        r.get(timeout=20)
    assert p.apply(tasks.square, (3,)) == 9  # the same worker goes on


@pytest.mark.timeout(30)
def test_soft_limit_ignored_then_the_hard_limit_stops_the_task(make_pool):
    p = make_pool(1)
    start = time.monotonic()
    r = p.apply_async(tasks.ignore_soft_limit, (20,), soft_timeout=0.2)  # hard: soft + SOFT_LIMIT_GRACE
    with pytest.raises(gopool.TimeoutError):
        r.get(timeout=20)
    assert 0.2 + gopool.pool.SOFT_LIMIT_GRACE <= time.monotonic() - start < 10


@pytest.mark.timeout(30)
def test_pool_soft_limit_applies_to_map_chunks(make_pool):
    p = make_pool(2, soft_timeout=0.3)
    assert p.map(tasks.sleep_or_clean_up, [0.01, 20, 0.01, 20], chunksize=1) == [
        "finished", "cleaned up", "finished", "cleaned up"]


def test_soft_limit_arguments_are_checked(make_pool):
    with pytest.raises(ValueError):
        make_pool(1, soft_timeout=2, task_timeout=1)
    with pytest.raises(ValueError):
        make_pool(1, soft_timeout=-1)
    p = make_pool(1)
    with pytest.raises(ValueError):
        p.apply_async(tasks.square, (1,), soft_timeout=5, timeout=5)
    with pytest.raises(ValueError):
        make_pool(1, cls=gopool.ThreadPool).apply_async(tasks.square, (1,), soft_timeout=1)
