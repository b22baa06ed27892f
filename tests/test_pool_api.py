"""The stdlib contract of gopool.Pool: constructor, state machine, task
submission, chunksize, imap, results, callbacks, initializer and
maxtasksperchild (SEMANTICS.md sections 0-9).

Where gopool deliberately differs from the stdlib (it raises where the stdlib
silently misbehaves), the test says so.
"""

import builtins
import gc
import multiprocessing
import multiprocessing.pool
import os
import pickle
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import gopool
from gopool import Pool, PoolTerminatedError, TimeoutError, WorkerLostError
from gopool.pool import ApplyResult, AsyncResult, MapResult, MaybeEncodingError, RemoteTraceback

from helpers import tasks
from helpers.util import wait_for_path

pytestmark = pytest.mark.timeout(60)

NOT_RUNNING = "^Pool not running$"


# Module-level functions of a test module travel by reference too: the worker
# imports this module from the parent's sys.path.
def double(x):
    return 2 * x


# --------------------------------------------------------------------------
# Exception classes


def test_timeout_error_is_both_timeout_errors():
    assert issubclass(TimeoutError, multiprocessing.TimeoutError)
    assert issubclass(TimeoutError, builtins.TimeoutError)
    assert issubclass(TimeoutError, multiprocessing.ProcessError)


def test_worker_lost_and_terminated_are_process_errors():
    assert issubclass(WorkerLostError, multiprocessing.ProcessError)
    assert issubclass(PoolTerminatedError, multiprocessing.ProcessError)


def test_maybe_encoding_error_and_remote_traceback_subclass_the_stdlib():
    assert issubclass(MaybeEncodingError, multiprocessing.pool.MaybeEncodingError)
    assert issubclass(RemoteTraceback, multiprocessing.pool.RemoteTraceback)


def test_async_result_is_apply_result():
    assert AsyncResult is ApplyResult
    assert issubclass(MapResult, ApplyResult)
    assert AsyncResult[int] is not None  # __class_getitem__, as in the stdlib


def test_cpu_count():
    assert gopool.cpu_count() == os.cpu_count()


# --------------------------------------------------------------------------
# Constructor


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_below_one(processes):
    with pytest.raises(ValueError, match="^Number of processes must be at least 1$"):
        Pool(processes)


@pytest.mark.parametrize("maxtasks", [0, -1, 1.5, "3"])
def test_maxtasksperchild_invalid(maxtasks):
    with pytest.raises(ValueError, match="^maxtasksperchild must be a positive int or None$"):
        Pool(1, maxtasksperchild=maxtasks)


def test_initializer_not_callable():
    with pytest.raises(TypeError, match="^initializer must be a callable$"):
        Pool(1, initializer=3)


def test_validation_order():
    # processes first, then maxtasksperchild, then initializer (pool.py:193-211).
    with pytest.raises(ValueError, match="^Number of processes"):
        Pool(0, initializer=3, maxtasksperchild=0)
    with pytest.raises(ValueError, match="^maxtasksperchild"):
        Pool(1, initializer=3, maxtasksperchild=0)


def test_processes_none_is_cpu_count(make_pool):
    p = make_pool(None)
    assert repr(p) == f"<gopool.pool.Pool state=RUN pool_size={os.cpu_count()}>"


def test_repr_follows_state(make_pool):
    p = make_pool(1)
    assert repr(p) == "<gopool.pool.Pool state=RUN pool_size=1>"
    p.close()
    assert repr(p) == "<gopool.pool.Pool state=CLOSE pool_size=1>"
    p.terminate()
    assert repr(p) == "<gopool.pool.Pool state=TERMINATE pool_size=1>"


def test_context_argument_is_accepted(make_pool):
    p = make_pool(1, context=multiprocessing.get_context("spawn"))
    assert p.apply(tasks.square, (4,)) == 16


def test_failed_constructor_leaves_no_pool_behind():
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError):
                Pool(0)
            with pytest.raises(TypeError):
                Pool(1, initializer=3)
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert unraisable == []  # __del__ is safe on a half-built pool


def test_unpicklable_initargs_fail_the_constructor():
    with pytest.raises((TypeError, pickle.PicklingError)):
        Pool(1, initializer=tasks.set_global, initargs=(threading.Lock(),))


def test_pickling_a_pool_raises(pool1):
    with pytest.raises(NotImplementedError, match="^pool objects cannot be passed between processes or pickled$"):
        pickle.dumps(pool1)


def test_positional_arguments(make_pool):
    p = make_pool(1, tasks.set_global, ("pos",), 2)
    value, pid = p.apply(tasks.read_global)
    assert value == "pos"


# --------------------------------------------------------------------------
# State machine


def test_join_before_close(pool1):
    with pytest.raises(ValueError, match="^Pool is still running$"):
        pool1.join()


SUBMISSIONS = {
    "apply": lambda p: p.apply(tasks.square, (1,)),
    "apply_async": lambda p: p.apply_async(tasks.square, (1,)),
    "map": lambda p: p.map(tasks.square, [1]),
    "map_async": lambda p: p.map_async(tasks.square, [1]),
    "starmap": lambda p: p.starmap(tasks.add, [(1, 2)]),
    "starmap_async": lambda p: p.starmap_async(tasks.add, [(1, 2)]),
    "imap": lambda p: p.imap(tasks.square, [1]),
    "imap_unordered": lambda p: p.imap_unordered(tasks.square, [1]),
    "__enter__": lambda p: p.__enter__(),
}


@pytest.mark.parametrize("stop", ["close", "terminate"])
@pytest.mark.parametrize("method", sorted(SUBMISSIONS))
def test_not_running_after_stop(make_pool, stop, method):
    p = make_pool(1)
    getattr(p, stop)()
    with pytest.raises(ValueError, match=NOT_RUNNING):
        SUBMISSIONS[method](p)


def test_with_statement_on_closed_pool(pool1):
    pool1.close()
    with pytest.raises(ValueError, match=NOT_RUNNING):
        with pool1:
            pass


def test_close_is_idempotent(pool1):
    pool1.close()
    pool1.close()
    pool1.join()
    pool1.close()


def test_terminate_is_idempotent(pool1):
    pool1.terminate()
    pool1.terminate()
    pool1.join()


def test_terminate_after_close(pool1):
    r = pool1.apply_async(tasks.square, (3,))
    pool1.close()
    pool1.terminate()
    pool1.join()
    assert r.ready()


def test_terminate_after_join_is_a_noop(pool1):
    assert pool1.apply(tasks.square, (2,)) == 4
    pool1.close()
    pool1.join()
    pool1.terminate()  # harmless (the stdlib's state still becomes TERMINATE)
    pool1.join()


def test_join_twice(pool1):
    pool1.close()
    pool1.join()
    pool1.join()


def test_context_manager_returns_pool_and_terminates(make_pool):
    p = make_pool(1)
    with p as entered:
        assert entered is p
        assert p.apply(tasks.square, (5,)) == 25
    assert "state=TERMINATE" in repr(p)
    with pytest.raises(ValueError, match=NOT_RUNNING):
        p.apply(tasks.square, (1,))
    p.join()


# --------------------------------------------------------------------------
# apply / apply_async


def test_apply(pool):
    assert pool.apply(tasks.add, (2, 3)) == 5


def test_apply_kwargs(pool):
    assert pool.apply(tasks.with_kwargs, (1,), {"b": 2, "c": 3}) == (1, 2, 3)


def test_apply_raises_the_task_exception(pool):
    with pytest.raises(ValueError, match="^boom$"):
        pool.apply(tasks.raise_value_error, ("boom",))


def test_apply_async(pool):
    r = pool.apply_async(tasks.with_kwargs, (1, 2), {"c": 4})
    assert isinstance(r, ApplyResult)
    assert r.get(timeout=20) == (1, 2, 4)
    assert r.ready()
    assert r.successful()


def test_function_of_the_test_module(pool):
    assert pool.apply(double, (21,)) == 42
    assert pool.map(double, range(4)) == [0, 2, 4, 6]


def test_lambda(pool):
    assert pool.apply(lambda x, y=1: x * 10 + y, (4,), {"y": 2}) == 42
    assert pool.map(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]


def test_closure(pool):
    offset = 100

    def shift(x):
        return x + offset

    assert pool.map(shift, range(3)) == [100, 101, 102]
    assert pool.apply(shift, (1,)) == 101


def test_builtin_function(pool):
    assert pool.map(abs, [-1, -2, 3]) == [1, 2, 3]


def test_function_defined_in_a_main_script(tmp_path):
    # A user's script: the task function lives in __main__, which the workers
    # cannot import; it travels by value.
    script = tmp_path / "script.py"
    script.write_text(
        "from gopool import Pool\n"
        "OFFSET = 7\n"
        "def f(x):\n"
        "    return x * x + OFFSET\n"
        "if __name__ == '__main__':\n"
        "    with Pool(2) as p:\n"
        "        print(p.map(f, range(5)), p.apply(f, (10,)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(gopool.__file__).resolve().parent.parent))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[7, 8, 11, 16, 23] 107\n"


def test_large_arguments_and_results(pool):
    blob = os.urandom(1 << 21)
    assert pool.apply(tasks.identity, (blob,)) == blob
    assert pool.map(tasks.identity, [blob[:1000], blob]) == [blob[:1000], blob]


def test_large_arguments_of_every_kind_keep_their_type_and_value(pool):
    # Large bytes, bytearray and str travel beside the call's pickle
    # (gopool._serialize.split_large) and are put back in their places.
    big_bytes = os.urandom(3 << 20)
    big_array = bytearray(os.urandom(2 << 20))
    big_text = "gopool \udc80 é " * (1 << 18)  # a lone surrogate survives, as with pickle
    args, kwds = pool.apply(tasks.types_and_values, (1, big_bytes, "small", big_array, big_text),
                            {"k": big_bytes[:10], "big": big_text})
    assert args == [("int", 1), ("bytes", big_bytes), ("str", "small"), ("bytearray", big_array), ("str", big_text)]
    assert kwds == {"k": ("bytes", big_bytes[:10]), "big": ("str", big_text)}
    assert pool.map(len, [b"x", big_bytes, big_text], chunksize=3) == [1, len(big_bytes), len(big_text)]
    assert pool.starmap(tasks.add, [(big_bytes, b"!"), (b"?", big_bytes)]) == [big_bytes + b"!", b"?" + big_bytes]


@pytest.mark.timeout(120)
def test_a_large_argument_is_held_once_in_the_worker(make_pool):
    # The worker reads a large bytes argument into its own bytes object and
    # hands that very object to the task: no second copy (the stdlib's
    # workers hold the received pickle and the unpickled copy, twice the size).
    size = 128 << 20
    pool = make_pool(1)
    _, before = pool.apply(tasks.peak_memory_after, (b"",))
    n, after = pool.apply(tasks.peak_memory_after, (b"x" * size,))
    assert n == size
    assert after - before < 1.4 * size, (before, after)


def test_concurrent_submitters(pool):
    out = {}

    def submit(k):
        out[k] = pool.starmap(tasks.add, [(k, i) for i in range(50)], chunksize=3)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert out == {k: [k + i for i in range(50)] for k in range(4)}


def test_fire_and_forget_tasks_run_before_join(pool, tmp_path):
    # The common pattern: results dropped, then close() and join(); every
    # task must still run.
    for i in range(12):
        pool.apply_async(tasks.touch_then_sleep, (str(tmp_path), i, 0.01))
    pool.close()
    pool.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"started-{i}" for i in range(12))


def test_abandoned_buffered_imap_does_not_block_join(pool):
    import itertools

    it = pool.imap(tasks.square, itertools.count(), buffersize=2)
    assert [next(it), next(it)] == [0, 1]
    del it
    gc.collect()
    pool.close()
    start = time.monotonic()
    pool.join()
    assert time.monotonic() - start < 10


def test_worker_lost_error_pickles():
    exc = WorkerLostError.from_exit(1234, -9)
    assert str(exc) == "worker process 1234 died while running the task (killed by SIGKILL)"
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is WorkerLostError
    assert (str(back), back.pid, back.exitcode) == (str(exc), 1234, -9)


def test_workers_run_in_other_processes(pool):
    pids = set(pool.map(tasks.getpid, range(8), chunksize=1))
    assert os.getpid() not in pids
    assert pids <= {w.pid for w in pool.workers()}


# --------------------------------------------------------------------------
# map / starmap


def test_map(pool):
    assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]


def test_map_async(pool):
    r = pool.map_async(tasks.square, range(10))
    assert isinstance(r, MapResult)
    assert r.get(timeout=20) == [x * x for x in range(10)]
    assert r.successful()


def test_starmap(pool):
    assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]


def test_starmap_async(pool):
    assert pool.starmap_async(tasks.add, [(1, 2), (3, 4), (5, 6)]).get(timeout=20) == [3, 7, 11]


def test_map_large_input_keeps_order(pool):
    assert pool.map(tasks.identity, range(2000)) == list(range(2000))


@pytest.mark.parametrize("method", ["map", "starmap"])
def test_empty_input(pool, method):
    assert getattr(pool, method)(tasks.square, []) == []


def test_map_async_empty_input_is_ready_at_once(pool):
    got = []
    r = pool.map_async(tasks.square, [], callback=got.append)
    assert r.ready()
    assert r.get(timeout=0) == []
    # gopool calls the callback with the (empty) list; the stdlib's MapResult
    # never calls it for an empty input.
    assert got == [[]]


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_empty_input(pool, method):
    assert list(getattr(pool, method)(tasks.square, [])) == []


def test_map_consumes_a_generator(pool):
    assert pool.map(tasks.square, (i for i in range(5))) == [0, 1, 4, 9, 16]


def test_map_input_generator_raises(pool):
    # The iterable is consumed in the caller: its exception comes out of map.
    with pytest.raises(KeyError, match="gen-fail"):
        pool.map(tasks.square, tasks.raising_generator(3, KeyError("gen-fail")))
    assert pool.map(tasks.square, [3]) == [9]


def test_map_one_failing_item_fails_the_map(pool):
    with pytest.raises(ValueError, match="^3$"):
        pool.map(tasks.fail_on_odd, [0, 2, 3, 4], chunksize=1)


def test_map_failure_does_not_fail_fast(pool1, tmp_path):
    # The result is ready only when every chunk has reported (issue #23992):
    # the first item fails at once, the last one waits for the test.
    go = str(tmp_path / "go")
    r = pool1.map_async(lambda x: tasks.fail_on_odd(x) if x != 4 else tasks.wait_then_return(go, x), [1, 2, 4], chunksize=1)
    with pytest.raises(TimeoutError):
        r.get(timeout=0.5)
    assert not r.ready()
    open(go, "w").close()
    with pytest.raises(ValueError, match="^1$"):
        r.get(timeout=20)
    assert r.ready()
    assert not r.successful()


# --------------------------------------------------------------------------
# chunksize


def _runs(values):
    """Lengths of the runs of equal consecutive values."""
    runs = []
    for i, v in enumerate(values):
        if i and v == values[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def test_default_chunksize(make_pool):
    # With one worker that exits after every task, each chunk runs in a pid of
    # its own: divmod(10, 1 * 4) = (2, 2) -> chunksize 3 -> chunks 3, 3, 3, 1.
    p = make_pool(1, maxtasksperchild=1)
    pids = p.map(tasks.getpid, range(10))
    assert _runs(pids) == [3, 3, 3, 1]
    assert len(set(pids)) == 4


def test_explicit_chunksize(make_pool):
    p = make_pool(1, maxtasksperchild=1)
    pids = p.map(tasks.getpid, range(10), chunksize=4)
    assert _runs(pids) == [4, 4, 2]
    assert len(set(pids)) == 3


def test_chunk_fails_as_a_whole(pool1):
    # An exception anywhere in a chunk fails the whole map.
    with pytest.raises(ValueError, match="^1$"):
        pool1.map(tasks.fail_on_odd, [0, 1, 2, 4], chunksize=4)


@pytest.mark.parametrize("chunksize", [0, -1])
@pytest.mark.parametrize("method", ["map", "map_async", "starmap", "starmap_async"])
def test_map_chunksize_below_one(pool1, method, chunksize):
    # gopool raises; the stdlib returns [None] * len(iterable) (SEMANTICS.md §4).
    func = tasks.square if "star" not in method else tasks.add
    items = [1, 2] if "star" not in method else [(1, 2), (3, 4)]
    with pytest.raises(ValueError, match=rf"^Chunksize must be 1\+, not {chunksize}$"):
        getattr(pool1, method)(func, items, chunksize=chunksize)


@pytest.mark.parametrize("chunksize", [0, -1])
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_chunksize_below_one(pool1, method, chunksize):
    with pytest.raises(ValueError, match=rf"^Chunksize must be 1\+, not {chunksize}$"):
        getattr(pool1, method)(tasks.square, [1, 2], chunksize=chunksize)


# --------------------------------------------------------------------------
# imap / imap_unordered


def test_imap_in_order(pool):
    assert list(pool.imap(tasks.square, range(20))) == [x * x for x in range(20)]


def test_imap_unordered_all_results(pool):
    assert sorted(pool.imap_unordered(tasks.square, range(20))) == [x * x for x in range(20)]


def test_imap_unordered_single_worker_is_in_order(pool1):
    assert list(pool1.imap_unordered(tasks.square, range(10))) == [x * x for x in range(10)]


@pytest.mark.parametrize("chunksize", [2, 3, 7, 50])
def test_imap_chunksize_above_one(pool, chunksize):
    assert list(pool.imap(tasks.square, range(20), chunksize=chunksize)) == [x * x for x in range(20)]


@pytest.mark.parametrize("chunksize", [2, 3])
def test_imap_unordered_chunksize_above_one(pool, chunksize):
    assert sorted(pool.imap_unordered(tasks.square, range(20), chunksize=chunksize)) == [x * x for x in range(20)]


def test_imap_consumes_a_generator(pool):
    assert list(pool.imap(tasks.square, (i for i in range(6)))) == [0, 1, 4, 9, 16, 25]


def test_imap_is_an_iterator(pool):
    it = pool.imap(tasks.square, range(3))
    assert iter(it) is it
    assert next(it) == 0
    assert it.next() == 1
    assert it.next(timeout=20) == 4
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_next_timeout(pool1, tmp_path):
    go = str(tmp_path / "go")
    it = pool1.imap(lambda path: tasks.wait_then_return(path, "done"), [go])
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        it.next(timeout=0.3)
    assert time.monotonic() - start >= 0.25
    assert isinstance(info.value, multiprocessing.TimeoutError)
    assert isinstance(info.value, builtins.TimeoutError)
    open(go, "w").close()
    assert it.next(timeout=20) == "done"
    with pytest.raises(StopIteration):
        it.next(timeout=20)


def _drain(it, n):
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            raise
        except Exception as exc:
            out.append(exc)
    return out


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_item_exceptions_do_not_stop_iteration(pool1, method):
    it = getattr(pool1, method)(tasks.fail_on_odd, range(5))
    out = _drain(it, 5)
    assert [x if not isinstance(x, Exception) else ("exc", type(x), x.args) for x in out] == [
        0,
        ("exc", ValueError, (1,)),
        2,
        ("exc", ValueError, (3,)),
        4,
    ]
    with pytest.raises(StopIteration):
        next(it)


def test_imap_input_generator_raises(pool):
    it = pool.imap(tasks.square, tasks.raising_generator(2, KeyError("gen-fail")))
    assert next(it) == 1
    assert next(it) == 4
    with pytest.raises(KeyError, match="gen-fail"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered_input_generator_raises(pool1):
    it = pool1.imap_unordered(tasks.square, tasks.raising_generator(2, KeyError("gen-fail")))
    assert sorted([next(it), next(it)]) == [1, 4]
    with pytest.raises(KeyError, match="gen-fail"):
        next(it)


class _CountingInput:
    """An input iterator that records how many items were pulled."""

    def __init__(self, n):
        self.n = n
        self.pulled = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.pulled >= self.n:
            raise StopIteration
        self.pulled += 1
        return self.pulled - 1


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.parametrize("buffersize", [1, 3])
def test_imap_buffersize_back_pressure(pool, method, buffersize):
    source = _CountingInput(20)
    it = getattr(pool, method)(tasks.square, source, buffersize=buffersize)
    assert source.pulled <= buffersize
    results = []
    for taken in range(1, 21):
        results.append(next(it))
        # Never more than buffersize items ahead of the results taken.
        assert source.pulled <= taken + buffersize, (taken, source.pulled)
    with pytest.raises(StopIteration):
        next(it)
    assert sorted(results) == [x * x for x in range(20)]


def test_imap_buffersize_idle_consumer_pulls_nothing_more(pool, tmp_path):
    # While nobody takes results, the input is not read beyond buffersize,
    # even when every submitted task has finished.
    source = _CountingInput(50)
    it = pool.imap(tasks.square, source, buffersize=4)
    first = next(it)
    assert first == 0
    r = pool.apply_async(tasks.square, (1,))  # a round trip: the pool has had time to work
    r.get(timeout=20)
    assert source.pulled <= 5
    assert list(it) == [x * x for x in range(1, 50)]


def test_imap_buffersize_with_chunksize(pool):
    source = _CountingInput(30)
    it = pool.imap(tasks.square, source, chunksize=3, buffersize=2)
    assert source.pulled <= 6
    assert list(it) == [x * x for x in range(30)]


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_buffersize_validation(pool1, method):
    with pytest.raises(ValueError, match=r"^buffersize must be None or > 0$"):
        getattr(pool1, method)(tasks.square, [1], buffersize=0)
    with pytest.raises(ValueError, match=r"^buffersize must be None or > 0$"):
        getattr(pool1, method)(tasks.square, [1], buffersize=-2)
    with pytest.raises(TypeError, match=r"^buffersize must be an integer or None$"):
        getattr(pool1, method)(tasks.square, [1], buffersize=1.5)


# --------------------------------------------------------------------------
# AsyncResult


def test_successful_before_ready(pool1, tmp_path):
    go = str(tmp_path / "go")
    r = pool1.apply_async(tasks.wait_then_return, (go, 7))
    assert not r.ready()
    with pytest.raises(ValueError) as info:
        r.successful()
    assert re.fullmatch(r"<gopool\.pool\.ApplyResult object at 0x[0-9a-fA-F]+> not ready", str(info.value)), str(
        info.value
    )
    open(go, "w").close()
    assert r.get(timeout=20) == 7
    assert r.successful() is True


def test_successful_false_after_failure(pool1):
    r = pool1.apply_async(tasks.raise_value_error, ("x",))
    r.wait(timeout=20)
    assert r.ready()
    assert r.successful() is False


def test_map_result_not_ready_message(pool1, tmp_path):
    go = str(tmp_path / "go")
    r = pool1.map_async(lambda x: tasks.wait_then_return(go, x), [1, 2])
    with pytest.raises(ValueError, match=r"^<gopool\.pool\.MapResult object at 0x[0-9a-fA-F]+> not ready$"):
        r.successful()
    open(go, "w").close()
    assert r.get(timeout=20) == [1, 2]


def test_wait_returns_none(pool1, tmp_path):
    go = str(tmp_path / "go")
    r = pool1.apply_async(tasks.wait_then_return, (go, 1))
    start = time.monotonic()
    assert r.wait(timeout=0.2) is None  # timed out
    assert time.monotonic() - start >= 0.15
    assert not r.ready()
    open(go, "w").close()
    assert r.wait() is None  # completed
    assert r.ready()
    assert r.wait(timeout=0) is None


def test_get_timeout(pool1, tmp_path):
    go = str(tmp_path / "go")
    r = pool1.apply_async(tasks.wait_then_return, (go, "late"))
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        r.get(timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 10
    assert type(info.value) is gopool.TimeoutError
    assert str(info.value) == ""  # no message, as in the stdlib
    open(go, "w").close()
    assert r.get(timeout=20) == "late"


@pytest.mark.parametrize("cls", [multiprocessing.TimeoutError, builtins.TimeoutError, multiprocessing.ProcessError])
def test_get_timeout_catchable_as(pool1, tmp_path, cls):
    r = pool1.apply_async(tasks.wait_then_return, (str(tmp_path / "go"), 1))
    with pytest.raises(cls):
        r.get(timeout=0.05)
    open(tmp_path / "go", "w").close()
    r.get(timeout=20)


def test_get_timeout_zero_on_pending(pool1, tmp_path):
    r = pool1.apply_async(tasks.wait_then_return, (str(tmp_path / "go"), 1))
    with pytest.raises(TimeoutError):
        r.get(timeout=0)
    open(tmp_path / "go", "w").close()
    assert r.get(timeout=20) == 1


def test_get_reraises_the_same_instance(pool1):
    r = pool1.apply_async(tasks.raise_value_error, ("same",))
    with pytest.raises(ValueError) as first:
        r.get(timeout=20)
    with pytest.raises(ValueError) as second:
        r.get(timeout=20)
    assert first.value is second.value


def test_get_returns_the_same_object(pool1):
    r = pool1.apply_async(tasks.identity, ([1, 2],))
    assert r.get(timeout=20) is r.get(timeout=20)


def test_remote_traceback_is_the_cause(pool1):
    with pytest.raises(ValueError) as info:
        pool1.apply(tasks.raise_value_error, ("remote",))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert isinstance(cause, multiprocessing.pool.RemoteTraceback)
    text = str(cause)
    assert text.startswith('\n"""\nTraceback (most recent call last):\n')
    assert text.endswith('"""')
    assert "raise_value_error" in text
    assert "raise ValueError(message)" in text
    assert "ValueError: remote" in text


def test_map_exception_has_remote_traceback(pool1):
    with pytest.raises(ValueError) as info:
        pool1.map(tasks.fail_on_odd, [1])
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on_odd" in str(info.value.__cause__)


def test_unpicklable_result(pool1):
    with pytest.raises(MaybeEncodingError) as info:
        pool1.apply(tasks.return_lock)
    exc = info.value
    assert isinstance(exc, multiprocessing.pool.MaybeEncodingError)
    message = str(exc)
    assert re.match(r"^Error sending result: '<unlocked _thread\.lock object at 0x[0-9a-f]+>'\. Reason: '.+'$", message), message
    assert repr(exc) == f"<MaybeEncodingError: {message}>"
    # The worker and the pool go on.
    assert pool1.apply(tasks.square, (3,)) == 9


def test_unpicklable_result_in_map(pool1):
    with pytest.raises(MaybeEncodingError):
        pool1.map(tasks.return_lock, range(3))
    assert pool1.map(tasks.square, range(3)) == [0, 1, 4]


def test_unpicklable_exception(pool1):
    # The exception carries a lock: reported as MaybeEncodingError, as the
    # stdlib does when the worker cannot send the exception back.
    with pytest.raises(MaybeEncodingError) as info:
        pool1.apply(tasks.raise_unpicklable_error)
    assert "UnpicklableError('carries a lock')" in str(info.value)
    assert "carries a lock" in str(info.value.__cause__)
    assert pool1.apply(tasks.square, (2,)) == 4


def test_exception_that_cannot_be_unpickled(pool1):
    with pytest.raises(Exception) as info:
        pool1.apply(tasks.raise_two_arg_error)
    assert "TwoArgError" in str(info.value.__cause__)
    assert pool1.apply(tasks.square, (2,)) == 4


def test_unpicklable_argument_fails_at_submission(pool1):
    lock = threading.Lock()
    with pytest.raises((TypeError, pickle.PicklingError)):
        pool1.apply_async(tasks.identity, (lock,)).get(timeout=20)
    with pytest.raises((TypeError, pickle.PicklingError)):
        pool1.map(tasks.identity, [1, lock, 3])
    assert pool1.apply(tasks.square, (5,)) == 25


def test_unpicklable_function_fails_at_submission(pool1):
    lock = threading.Lock()

    def uses_lock(x):
        return lock.locked() or x

    with pytest.raises((TypeError, pickle.PicklingError)):
        pool1.apply_async(uses_lock, (1,)).get(timeout=20)
    assert pool1.apply(tasks.square, (5,)) == 25


def test_result_from_another_thread(pool):
    r = pool.apply_async(tasks.square, (6,))
    out = []
    t = threading.Thread(target=lambda: out.append(r.get(timeout=20)))
    t.start()
    t.join(30)
    assert out == [36]
    assert r.get(timeout=0) == 36


def test_many_waiters_one_result(pool1, tmp_path):
    go = str(tmp_path / "go")
    r = pool1.apply_async(tasks.wait_then_return, (go, "v"))
    out = []
    threads = [threading.Thread(target=lambda: out.append(r.get(timeout=30))) for _ in range(4)]
    for t in threads:
        t.start()
    open(go, "w").close()
    for t in threads:
        t.join(40)
    assert out == ["v"] * 4


# --------------------------------------------------------------------------
# Callbacks


def test_callback_gets_the_value(pool1):
    got, errors = [], []
    r = pool1.apply_async(tasks.square, (7,), callback=got.append, error_callback=errors.append)
    assert r.get(timeout=20) == 49
    assert got == [49]
    assert errors == []


def test_error_callback_gets_the_exception(pool1):
    got, errors = [], []
    r = pool1.apply_async(tasks.raise_value_error, ("cb",), callback=got.append, error_callback=errors.append)
    with pytest.raises(ValueError) as info:
        r.get(timeout=20)
    assert got == []
    assert len(errors) == 1
    assert errors[0] is info.value


def test_map_async_callback_gets_the_full_list(pool):
    got, errors = [], []
    r = pool.map_async(tasks.square, range(10), chunksize=2, callback=got.append, error_callback=errors.append)
    assert r.get(timeout=20) == [x * x for x in range(10)]
    assert got == [[x * x for x in range(10)]]
    assert errors == []


def test_starmap_async_callback(pool):
    got = []
    r = pool.starmap_async(tasks.add, [(1, 1), (2, 2)], callback=got.append)
    assert r.get(timeout=20) == [2, 4]
    assert got == [[2, 4]]


def test_map_async_error_callback_called_once(pool):
    got, errors = [], []
    r = pool.map_async(tasks.fail_on_odd, range(6), chunksize=1, callback=got.append, error_callback=errors.append)
    with pytest.raises(ValueError):
        r.get(timeout=20)
    assert got == []
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert errors[0].args[0] in (1, 3, 5)


def test_get_returns_after_the_callback_ran(pool1):
    done = []

    def slow_callback(value):
        time.sleep(0.3)
        done.append(value)

    r = pool1.apply_async(tasks.square, (3,), callback=slow_callback)
    assert r.get(timeout=20) == 9
    assert done == [9]


def test_ready_after_error_callback_ran(pool1):
    done = []

    def slow_error_callback(exc):
        time.sleep(0.3)
        done.append(exc)

    r = pool1.apply_async(tasks.raise_value_error, ("x",), error_callback=slow_error_callback)
    r.wait(timeout=20)
    assert r.ready()
    assert len(done) == 1


def test_callback_runs_in_the_parent_off_the_caller_thread(pool1):
    where = []
    r = pool1.apply_async(tasks.square, (2,), callback=lambda v: where.append((os.getpid(), threading.get_ident())))
    r.get(timeout=20)
    assert where == [(os.getpid(), where[0][1])]
    assert where[0][1] != threading.get_ident()


def test_callbacks_of_many_results(pool):
    got = []
    lock = threading.Lock()

    def cb(v):
        with lock:
            got.append(v)

    results = [pool.apply_async(tasks.square, (i,), callback=cb) for i in range(30)]
    assert [r.get(timeout=20) for r in results] == [i * i for i in range(30)]
    assert sorted(got) == sorted(i * i for i in range(30))


def test_callback_may_submit_more_work(pool):
    chain = []
    done = threading.Event()

    def step(value):
        chain.append(value)
        if len(chain) < 4:
            pool.apply_async(tasks.add, (value, 1), callback=step)
        else:
            done.set()

    pool.apply_async(tasks.identity, (10,), callback=step)
    assert done.wait(20)
    assert chain == [10, 11, 12, 13]


def test_callback_may_block_on_another_result(pool):
    out = []
    r = pool.apply_async(tasks.square, (3,), callback=lambda v: out.append(pool.apply(tasks.square, (v,))))
    assert r.get(timeout=20) == 9
    assert out == [81]


@pytest.fixture
def hook_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(threading, "excepthook", lambda args: calls.append(args))
    return calls


def test_raising_callback_is_reported_and_the_pool_goes_on(pool1, hook_calls):
    def bad_callback(value):
        raise RuntimeError(f"callback failed on {value}")

    r = pool1.apply_async(tasks.square, (3,), callback=bad_callback)
    assert r.get(timeout=20) == 9  # still ready, with its value
    assert r.successful()
    assert len(hook_calls) == 1
    assert hook_calls[0].exc_type is RuntimeError
    assert str(hook_calls[0].exc_value) == "callback failed on 9"
    # Later results, with and without callbacks, are still delivered.
    got = []
    assert pool1.apply_async(tasks.square, (4,), callback=got.append).get(timeout=20) == 16
    assert got == [16]
    assert pool1.map(tasks.square, range(3)) == [0, 1, 4]
    pool1.terminate()
    pool1.join()


def test_raising_error_callback_is_reported(pool1, hook_calls):
    def bad_error_callback(exc):
        raise RuntimeError("error callback failed")

    r = pool1.apply_async(tasks.raise_value_error, ("x",), error_callback=bad_error_callback)
    with pytest.raises(ValueError):
        r.get(timeout=20)
    assert [c.exc_type for c in hook_calls] == [RuntimeError]
    assert pool1.apply(tasks.square, (2,)) == 4


def test_raising_map_callback(pool, hook_calls):
    r = pool.map_async(tasks.square, range(4), callback=lambda v: 1 / 0)
    assert r.get(timeout=20) == [0, 1, 4, 9]
    assert [c.exc_type for c in hook_calls] == [ZeroDivisionError]
    pool.close()
    pool.join()


# --------------------------------------------------------------------------
# initializer / maxtasksperchild


def test_initializer_runs_in_each_worker(make_pool):
    p = make_pool(2, initializer=tasks.set_global, initargs=("ready",))
    seen = p.map(tasks.read_global, range(8), chunksize=1)
    assert {value for value, _ in seen} == {"ready"}
    for value, pid in seen:
        assert pid in {w.pid for w in p.workers()}
    assert tasks.GLOBAL is None  # not run in the parent


def test_initializer_runs_in_replacement_workers(make_pool):
    p = make_pool(1, initializer=tasks.set_global, initargs=("again",), maxtasksperchild=1)
    seen = p.map(tasks.read_global, range(3), chunksize=1)
    assert [value for value, _ in seen] == ["again"] * 3
    assert len({pid for _, pid in seen}) == 3  # each in its own worker, which ran the initializer


def test_initializer_lambda(make_pool):
    p = make_pool(1, initializer=lambda: tasks.set_global("lambda"))
    value, _ = p.apply(tasks.read_global)
    assert value == "lambda"


def test_maxtasksperchild_counts_chunks(make_pool):
    p = make_pool(1, maxtasksperchild=1)
    pids = p.map(tasks.getpid, range(4), chunksize=2)
    assert len(set(pids)) == 2
    assert pids[0] == pids[1] and pids[2] == pids[3]


def test_maxtasksperchild_results_correct(make_pool):
    p = make_pool(2, maxtasksperchild=2)
    assert p.map(tasks.square, range(30), chunksize=1) == [x * x for x in range(30)]
    assert list(p.imap(tasks.square, range(10))) == [x * x for x in range(10)]


def test_maxtasksperchild_applies(make_pool):
    p = make_pool(1, maxtasksperchild=2)
    pids = [p.apply(tasks.getpid) for _ in range(6)]
    assert _runs(pids) == [2, 2, 2]


# --------------------------------------------------------------------------
# Introspection


def test_workers_and_queued(pool1, tmp_path):
    go = str(tmp_path / "go")
    started = str(tmp_path / "started")
    infos = pool1.workers()
    assert len(infos) == 1
    assert infos[0].busy is False
    r = pool1.apply_async(tasks.wait_for_go, (started, go, "x"))
    queued = [pool1.apply_async(tasks.square, (i,)) for i in range(3)]
    pid = int(wait_for_path(started))
    infos = pool1.workers()
    assert [(w.pid, w.busy) for w in infos] == [(pid, True)]
    assert pool1.queued() == 3
    open(go, "w").close()
    assert r.get(timeout=20) == ("x", pid)
    assert [q.get(timeout=20) for q in queued] == [0, 1, 4]
    assert pool1.queued() == 0
    assert pool1.workers()[0].tasks_done == 4
