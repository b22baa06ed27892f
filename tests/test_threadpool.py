"""gopool.ThreadPool: the Pool API with worker threads (SEMANTICS.md §11).

Nothing is pickled, exceptions are not wrapped, and terminate() fails every
unfinished result with PoolTerminatedError (the stdlib's never become ready).
"""

import gc
import multiprocessing
import os
import sys
import threading
import time
import warnings

import pytest

from gopool import Pool, PoolTerminatedError, ThreadPool, TimeoutError, WorkerLostError
from gopool.pool import ApplyResult, MapResult

from helpers import tasks

pytestmark = pytest.mark.timeout(60)

NOT_RUNNING = "^Pool not running$"


def _python_loop_until(event, limit=30.0):
    """A task that runs Python code until event is set (terminate() can
    interrupt it at a bytecode boundary)."""
    deadline = time.monotonic() + limit
    while not event.wait(0.02):
        if time.monotonic() > deadline:
            raise RuntimeError("never released")
    return "released"


# --------------------------------------------------------------------------
# Constructor and state


def test_is_a_pool(tpool):
    assert isinstance(tpool, Pool)
    assert repr(tpool) == "<gopool.pool.ThreadPool state=RUN pool_size=2>"


def test_processes_none_is_cpu_count(make_pool):
    p = make_pool(cls=ThreadPool)
    assert repr(p) == f"<gopool.pool.ThreadPool state=RUN pool_size={os.cpu_count()}>"


def test_rejects_maxtasksperchild():
    with pytest.raises(TypeError, match="maxtasksperchild"):
        ThreadPool(1, maxtasksperchild=1)
    with pytest.raises(TypeError):
        ThreadPool(1, None, (), 1)


def test_rejects_context():
    with pytest.raises(TypeError, match="context"):
        ThreadPool(1, context=None)


def test_constructor_validation():
    with pytest.raises(ValueError, match="^Number of processes must be at least 1$"):
        ThreadPool(0)
    with pytest.raises(TypeError, match="^initializer must be a callable$"):
        ThreadPool(1, initializer="not callable")


def test_join_before_close(tpool):
    with pytest.raises(ValueError, match="^Pool is still running$"):
        tpool.join()


@pytest.mark.parametrize("stop", ["close", "terminate"])
@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.apply(tasks.square, (1,)),
        lambda p: p.apply_async(tasks.square, (1,)),
        lambda p: p.map(tasks.square, [1]),
        lambda p: p.map_async(tasks.square, [1]),
        lambda p: p.starmap(tasks.add, [(1, 2)]),
        lambda p: p.starmap_async(tasks.add, [(1, 2)]),
        lambda p: p.imap(tasks.square, [1]),
        lambda p: p.imap_unordered(tasks.square, [1]),
        lambda p: p.__enter__(),
    ],
    ids=["apply", "apply_async", "map", "map_async", "starmap", "starmap_async", "imap", "imap_unordered", "enter"],
)
def test_not_running_after_stop(make_pool, stop, call):
    p = make_pool(1, cls=ThreadPool)
    getattr(p, stop)()
    with pytest.raises(ValueError, match=NOT_RUNNING):
        call(p)


def test_close_and_terminate_idempotent(tpool):
    tpool.close()
    tpool.close()
    tpool.join()
    tpool.terminate()
    tpool.terminate()
    tpool.join()


def test_pickling_raises(tpool):
    import pickle

    with pytest.raises(NotImplementedError, match="^pool objects cannot be passed between processes or pickled$"):
        pickle.dumps(tpool)


# --------------------------------------------------------------------------
# Tasks


def test_apply_and_map(tpool):
    assert tpool.apply(tasks.add, (1, 2)) == 3
    assert tpool.apply(tasks.with_kwargs, (1,), {"c": 5}) == (1, 0, 5)
    assert tpool.apply_async(tasks.square, (4,)).get(timeout=20) == 16
    assert tpool.map(tasks.square, range(10)) == [x * x for x in range(10)]
    assert tpool.map_async(tasks.square, range(5)).get(timeout=20) == [0, 1, 4, 9, 16]
    assert tpool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
    assert tpool.starmap_async(tasks.add, [(1, 1)]).get(timeout=20) == [2]


def test_result_types(tpool):
    assert isinstance(tpool.apply_async(tasks.square, (1,)), ApplyResult)
    assert isinstance(tpool.map_async(tasks.square, [1]), MapResult)


def test_imap(tpool):
    assert list(tpool.imap(tasks.square, range(10))) == [x * x for x in range(10)]
    assert sorted(tpool.imap_unordered(tasks.square, range(10))) == [x * x for x in range(10)]
    assert list(tpool.imap(tasks.square, range(10), chunksize=3)) == [x * x for x in range(10)]
    assert list(tpool.imap(tasks.square, iter(range(10)), buffersize=2)) == [x * x for x in range(10)]


def test_empty_inputs(tpool):
    assert tpool.map(tasks.square, []) == []
    assert tpool.starmap(tasks.add, []) == []
    assert list(tpool.imap(tasks.square, [])) == []
    assert list(tpool.imap_unordered(tasks.square, [])) == []


def test_runs_in_other_threads_of_this_process(tpool):
    idents = set(tpool.map(lambda _: (os.getpid(), threading.get_ident()), range(10), chunksize=1))
    assert {pid for pid, _ in idents} == {os.getpid()}
    assert threading.get_ident() not in {ident for _, ident in idents}
    assert {ident for _, ident in idents} <= {w.pid for w in tpool.workers()}


def test_no_pickling(tpool):
    lock = threading.Lock()
    result = tpool.apply(lambda: lock)  # neither pickle nor cloudpickle could send it
    assert result is lock
    shared = []
    tpool.map(shared.append, range(5))
    assert sorted(shared) == list(range(5))  # the argument is the caller's object
    returned = tpool.apply(tasks.return_lock)
    assert isinstance(returned, type(lock))


def test_exception_is_the_raised_instance(tpool):
    exc = ValueError("the very one")

    def raise_it():
        raise exc

    with pytest.raises(ValueError) as info:
        tpool.apply(raise_it)
    assert info.value is exc
    assert info.value.__cause__ is None  # ThreadPool does not wrap (no RemoteTraceback)


def test_imap_item_exceptions_continue(make_pool):
    p = make_pool(1, cls=ThreadPool)
    it = p.imap(tasks.fail_on_odd, range(5))
    out = []
    for _ in range(5):
        try:
            out.append(next(it))
        except ValueError as exc:
            out.append(("exc", exc.args))
    assert out == [0, ("exc", (1,)), 2, ("exc", (3,)), 4]


def test_map_input_generator_raises(tpool):
    with pytest.raises(KeyError):
        tpool.map(tasks.square, tasks.raising_generator(2, KeyError("gen-fail")))


@pytest.mark.parametrize("method", ["map", "imap", "imap_unordered"])
def test_chunksize_below_one(tpool, method):
    with pytest.raises(ValueError, match=r"^Chunksize must be 1\+, not 0$"):
        getattr(tpool, method)(tasks.square, [1, 2], chunksize=0)


def test_get_timeout(tpool):
    release = threading.Event()
    r = tpool.apply_async(_python_loop_until, (release,))
    with pytest.raises(TimeoutError) as info:
        r.get(timeout=0.2)
    assert isinstance(info.value, multiprocessing.TimeoutError)
    with pytest.raises(ValueError, match="not ready$"):
        r.successful()
    assert r.wait(timeout=0.05) is None
    release.set()
    assert r.get(timeout=20) == "released"
    assert r.successful()


def test_workers_and_queued(make_pool):
    p = make_pool(1, cls=ThreadPool)
    release = threading.Event()
    r = p.apply_async(_python_loop_until, (release,))
    queued = [p.apply_async(tasks.square, (i,)) for i in range(3)]
    deadline = time.monotonic() + 10
    while not p.workers()[0].busy and time.monotonic() < deadline:
        time.sleep(0.01)
    [info] = p.workers()
    assert info.busy
    assert p.queued() == 3
    release.set()
    assert r.get(timeout=20) == "released"
    assert [q.get(timeout=20) for q in queued] == [0, 1, 4]
    assert p.queued() == 0


# --------------------------------------------------------------------------
# Callbacks and initializer


def test_callbacks(tpool):
    got, errors = [], []
    assert tpool.apply_async(tasks.square, (3,), callback=got.append, error_callback=errors.append).get(timeout=20) == 9
    r = tpool.apply_async(tasks.raise_value_error, ("e",), callback=got.append, error_callback=errors.append)
    with pytest.raises(ValueError):
        r.get(timeout=20)
    m = tpool.map_async(tasks.square, range(4), callback=got.append)
    assert m.get(timeout=20) == [0, 1, 4, 9]
    assert got == [9, [0, 1, 4, 9]]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_raising_callback_does_not_stop_the_pool(tpool, monkeypatch):
    calls = []
    monkeypatch.setattr(threading, "excepthook", lambda args: calls.append(args.exc_type))
    r = tpool.apply_async(tasks.square, (2,), callback=lambda v: 1 / 0)
    assert r.get(timeout=20) == 4
    assert calls == [ZeroDivisionError]
    assert tpool.apply_async(tasks.square, (3,), callback=lambda v: None).get(timeout=20) == 9


def test_initializer_runs_in_each_thread(make_pool):
    ran = []
    lock = threading.Lock()

    def init(tag):
        with lock:
            ran.append((tag, threading.get_ident()))

    p = make_pool(2, initializer=init, initargs=("t",), cls=ThreadPool)
    p.map(tasks.square, range(10), chunksize=1)
    assert sorted(ran) == sorted(("t", w.pid) for w in p.workers())


def test_failing_initializer_fails_tasks(make_pool):
    # stdlib: the ThreadPool respawns failing threads forever and never runs a task.
    p = make_pool(2, initializer=tasks.failing_initializer, initargs=("thread init failed",), cls=ThreadPool)
    with pytest.raises(RuntimeError, match="^thread init failed$"):
        p.apply_async(tasks.square, (1,)).get(timeout=20)
    with pytest.raises(RuntimeError, match="^thread init failed$"):
        p.map(tasks.square, range(3))
    p.close()
    start = time.monotonic()
    p.join()
    assert time.monotonic() - start < 5


# --------------------------------------------------------------------------
# close / terminate / context manager / GC


def test_close_completes_outstanding(make_pool):
    p = make_pool(2, cls=ThreadPool)
    results = [p.apply_async(tasks.sleep_then_return, (0.05, i)) for i in range(6)]
    p.close()
    p.join()
    assert [r.get(timeout=0) for r in results] == list(range(6))


def test_join_returns_after_every_callback_ran(tpool):
    # As with Pool: in the stdlib join() joins the result-handler thread, so
    # every callback has run when it returns.
    got = []

    def slow_callback(value):
        time.sleep(0.01)
        got.append(value)

    for i in range(10):
        tpool.apply_async(tasks.square, (i,), callback=slow_callback)
    tpool.close()
    tpool.join()
    assert sorted(got) == [i * i for i in range(10)], f"{len(got)} of 10 callbacks had run when join() returned"


@pytest.mark.timeout(30)
def test_terminate_fails_running_and_queued(make_pool):
    # stdlib hangs here: abandoned results never become ready, and a running
    # task cannot be stopped.
    p = make_pool(1, cls=ThreadPool)
    never = threading.Event()
    running = p.apply_async(_python_loop_until, (never,))
    queued = [p.apply_async(tasks.square, (i,)) for i in range(3)]
    deadline = time.monotonic() + 10
    while not p.workers()[0].busy and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    p.terminate()
    for r in [running] + queued:
        with pytest.raises(PoolTerminatedError):
            r.get(timeout=5)
    p.join()
    assert time.monotonic() - start < 5  # the Python loop was interrupted
    assert not never.is_set()
    assert p.workers() == []


@pytest.mark.timeout(30)
def test_terminate_fails_a_result_blocked_in_c(make_pool):
    # A task inside one long C call (time.sleep) cannot be interrupted before
    # the call returns, but its result fails at once.
    p = make_pool(1, cls=ThreadPool)
    started = threading.Event()

    def sleeper():
        started.set()
        time.sleep(1.0)
        return "slept"

    r = p.apply_async(sleeper)
    assert started.wait(10)
    p.terminate()
    with pytest.raises(PoolTerminatedError):
        r.get(timeout=0.5)
    p.join()


@pytest.mark.timeout(30)
def test_terminate_fails_map_async_and_imap(make_pool):
    p = make_pool(1, cls=ThreadPool)
    never = threading.Event()
    m = p.map_async(lambda _: _python_loop_until(never), range(3), chunksize=1)
    it = p.imap(tasks.square, range(3))
    p.terminate()
    with pytest.raises(PoolTerminatedError):
        m.get(timeout=5)
    with pytest.raises(PoolTerminatedError):
        it.next(timeout=5)
    p.join()


def test_context_manager_terminates(make_pool):
    p = make_pool(1, cls=ThreadPool)
    never = threading.Event()
    with p as entered:
        assert entered is p
        r = p.apply_async(_python_loop_until, (never,))
    assert "state=TERMINATE" in repr(p)
    with pytest.raises(PoolTerminatedError):
        r.get(timeout=5)
    p.join()


def test_gc_of_a_running_thread_pool_warns_and_stops_threads():
    gc.collect()  # what earlier tests left, so that its warnings are not counted here
    p = ThreadPool(1)
    assert p.apply(tasks.square, (2,)) == 4
    [ident] = [w.pid for w in p.workers()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert [m for m in messages if "pool" in m] == [
        "unclosed running multiprocessing pool <gopool.pool.ThreadPool state=RUN pool_size=1>"]
    deadline = time.monotonic() + 5
    while ident in {t.ident for t in threading.enumerate()} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ident not in {t.ident for t in threading.enumerate()}


# --------------------------------------------------------------------------
# A task that ends its thread


@pytest.mark.timeout(30)
def test_system_exit_in_a_task_fails_that_task(make_pool):
    # stdlib hangs here. gopool's Pool reports a worker that dies of
    # SystemExit (WorkerLostError); a ThreadPool must not hang either.
    p = make_pool(1, cls=ThreadPool)
    r = p.apply_async(sys.exit, (3,))
    try:
        r.get(timeout=5)
    except TimeoutError:
        pytest.fail("the result of a task that raised SystemExit never became ready")
    except WorkerLostError as exc:
        assert exc.exitcode == 3
        assert isinstance(exc.__cause__, SystemExit)
    else:
        pytest.fail("get() returned for a task that raised SystemExit")
    assert r.ready() and not r.successful()


@pytest.mark.timeout(30)
def test_system_exit_in_a_task_does_not_kill_the_pool(make_pool):
    # With one thread, a worker thread lost to SystemExit leaves no one to run
    # later tasks: they must still run (or fail), never wait forever.
    p = make_pool(1, cls=ThreadPool)
    p.apply_async(sys.exit, (3,))
    r = p.apply_async(tasks.square, (5,))
    try:
        assert r.get(timeout=5) == 25
    except TimeoutError:
        pytest.fail("a task submitted after a SystemExit task never ran")
    assert len(p.workers()) == 1
