"""Libraries that check ``isinstance(pool, multiprocessing.pool.Pool)`` or
read the stdlib pool's semi-private attributes (issue 8, item 7): dask
(``len(pool._pool)``), parmap (``len(pool._pool)``,
``MapResult._number_left``). These attributes are gopool's documented
compatibility surface: read-only views, kept meaningful.
"""

import multiprocessing.pool
import threading
import time

import pytest

import gopool

from helpers import compat_tasks as ct
from helpers.util import check_map_async_of_one_item_with_callbacks

pytestmark = pytest.mark.timeout(60)


def _wait_for(predicate, timeout=30.0):
    """Poll predicate (an attribute with no event to wait on) until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_pool_is_a_multiprocessing_pool(pool):
    assert isinstance(pool, multiprocessing.pool.Pool)
    assert not isinstance(pool, multiprocessing.pool.ThreadPool)
    assert issubclass(gopool.Pool, multiprocessing.pool.Pool)


def test_thread_pool_is_a_multiprocessing_thread_pool(tpool):
    assert isinstance(tpool, multiprocessing.pool.ThreadPool)
    assert isinstance(tpool, multiprocessing.pool.Pool)
    assert isinstance(tpool, gopool.Pool)
    assert issubclass(gopool.ThreadPool, multiprocessing.pool.ThreadPool)


def test_stdlib_machinery_is_not_run(pool):
    """gopool's pools have none of the stdlib pool's queues and threads."""
    for name in ("_inqueue", "_outqueue", "_taskqueue", "_cache", "_worker_handler",
                 "_task_handler", "_result_handler"):
        assert not hasattr(pool, name), name
    assert not any(t.name.startswith("Thread") and "handle" in t.name for t in threading.enumerate())


@pytest.mark.parametrize("cls", [gopool.Pool, gopool.ThreadPool])
def test_len_of_pool_is_the_number_of_workers(make_pool, cls):
    p = make_pool(3, cls=cls)
    workers = p._pool
    assert len(workers) == 3
    assert len({w.pid for w in workers}) == 3
    assert {w.pid for w in workers} == {info.pid for info in p.workers()}
    for w in workers:
        assert w.ident == w.pid
        assert w.daemon is True
        assert w.is_alive()
        assert str(w.pid) in w.name
    p.terminate()
    p.join()
    assert p._pool == []
    assert not workers[0].is_alive()


def test_pool_worker_views_are_read_only(pool):
    with pytest.raises(AttributeError):
        pool._pool = []
    w = pool._pool[0]
    with pytest.raises(AttributeError):
        w.pid = 1


def test_worker_view_is_alive_follows_the_worker(make_pool):
    p = make_pool(1)
    (w,) = p._pool
    assert p.apply(ct.getpid) == w.pid
    import os
    import signal

    os.kill(w.pid, signal.SIGKILL)
    _wait_for(lambda: not w.is_alive())
    _wait_for(lambda: len(p._pool) == 1 and p._pool[0].pid != w.pid)  # replaced


@pytest.mark.parametrize("cls", [gopool.Pool, gopool.ThreadPool])
def test_map_result_number_left_counts_down(make_pool, cls):
    tokens = gopool.Queue() if cls is gopool.Pool else __import__("queue").Queue()
    p = make_pool(1, cls=cls, initializer=ct.keep, initargs=(tokens,))
    if cls is gopool.ThreadPool:
        ct.keep(tokens)
    result = p.map_async(ct.take_token, range(6), chunksize=2)
    assert result._chunksize == 2
    assert result._number_left == 3
    for left in (2, 1):
        tokens.put(None)  # a token per item, two items per chunk
        tokens.put(None)
        _wait_for(lambda: result._number_left == left)
        assert not result.ready()
    tokens.put(None)
    tokens.put(None)
    _wait_for(lambda: result._number_left == 0)
    assert result.ready()
    assert result.get() == list(range(6))


def test_number_left_counts_failed_chunks_too(make_pool):
    tokens = gopool.Queue()
    p = make_pool(1, initializer=ct.keep, initargs=(tokens,))
    result = p.map_async(ct.fail_after_token, range(3), chunksize=1)
    assert result._number_left == 3
    tokens.put(None)
    _wait_for(lambda: result._number_left == 2)
    assert not result.ready()  # the stdlib's rule: ready once every chunk is in
    tokens.put(None)
    tokens.put(None)
    _wait_for(lambda: result._number_left == 0)
    with pytest.raises(ValueError):
        result.get()


def test_number_left_with_a_callback(pool):
    done = threading.Event()
    result = pool.map_async(ct.inc, range(10), chunksize=3, callback=lambda _: done.set())
    assert done.wait(30)
    assert result._number_left == 0
    assert result.get() == list(range(1, 11))


def test_number_left_of_an_empty_map(pool):
    result = pool.map_async(ct.inc, [])
    assert result._number_left == 0
    assert result.get() == []


def test_number_left_after_terminate(make_pool):
    tokens = gopool.Queue()
    p = make_pool(1, initializer=ct.keep, initargs=(tokens,))
    result = p.map_async(ct.take_token, range(4), chunksize=1)
    p.terminate()
    with pytest.raises(gopool.PoolTerminatedError):
        result.get(30)
    assert result._number_left == 0


# -- the libraries themselves ------------------------------------------------------


@pytest.mark.parametrize("cls", [gopool.Pool, gopool.ThreadPool])
def test_dask_multiprocessing_get_with_a_gopool_pool(make_pool, cls):
    import dask.multiprocessing
    from dask.local import MultiprocessingPoolExecutor

    p = make_pool(2, cls=cls)
    graph = {"a": 1, "b": (ct.inc, "a"), "c": (ct.add, "a", "b"), "d": (ct.add, "c", "c")}
    assert dask.multiprocessing.get(graph, ["b", "c", "d"], pool=p) == (2, 3, 6)
    assert MultiprocessingPoolExecutor(p)._max_workers == 2


def test_dask_config_thread_pool(make_pool):
    import dask
    import dask.threaded

    p = make_pool(4, cls=gopool.ThreadPool)
    graph = {"x": 2, "y": (ct.inc, "x"), "z": (ct.add, "x", "y")}
    with dask.config.set(pool=p):
        assert dask.threaded.get(graph, "z") == 5
    delayed = dask.delayed(ct.add)(dask.delayed(ct.inc)(1), 10)
    with dask.config.set(scheduler="threads", pool=p):
        assert delayed.compute() == 12


def test_parmap_with_a_gopool_pool_and_progress_bar(make_pool):
    import parmap

    reported = []

    class Bar:
        """A progress bar that records its updates (parmap's pm_pbar hook)."""

        def __init__(self, total):
            self.total = total

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            reported.append(n)

    p = make_pool(2)
    out = parmap.map(ct.add, range(20), 5, pm_pool=p, pm_pbar={"total": 20}, pm_chunksize=3)
    assert out == [x + 5 for x in range(20)]
    # 24 items on 2 workers: parmap picks chunks of 3, and its bar counts
    # _number_left * chunksize items left.
    out = parmap.map(ct.inc, range(24), pm_pool=p, pm_pbar=Bar)
    assert out == list(range(1, 25))
    assert sum(reported) == 24


# -- found by CPython's suite (test_cpython_mp.py) ------------------------------------


@pytest.mark.parametrize("cls", [gopool.Pool, gopool.ThreadPool])
def test_map_async_of_one_item_with_callbacks(make_pool, cls):
    check_map_async_of_one_item_with_callbacks(make_pool(4, cls=cls), 20)
