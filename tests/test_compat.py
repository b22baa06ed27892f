"""``import gopool as multiprocessing`` for real programs (issue 8, item 6).

Every public name of ``multiprocessing`` exists in gopool; a context from
``gopool.get_context()`` gives gopool's objects and is accepted by
``concurrent.futures.ProcessPoolExecutor``; 'fork' gives the stdlib's fork
context; and what gopool takes from the stdlib (Value, Array, RawValue,
RawArray, Pipe, Manager, shared_memory) works with gopool.Process children
and with Pool(initargs=...) workers.
"""

import concurrent.futures
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.dummy
import os
import pickle
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import gopool
from gopool import context as gopool_context

from helpers import compat_tasks as ct

pytestmark = pytest.mark.timeout(60)

TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(gopool.__file__).resolve().parent.parent


def _run_script(name, *args, timeout=50):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), str(TESTS_DIR)])
    proc = subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "helpers" / name), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


@pytest.fixture
def start_method_restored():
    """Put gopool's default context back as the test found it."""
    saved = gopool_context._actual
    yield
    gopool_context._actual = saved


@pytest.fixture
def started():
    """Start gopool.Process objects; join (or kill) them at the end."""
    made = []

    def start(target, *args):
        p = gopool.Process(target=target, args=args)
        p.start()
        made.append(p)
        return p

    yield start
    for p in made:
        if p.exitcode is None:
            p.kill()
        p.join(10)


# -- names ----------------------------------------------------------------------


def test_every_public_name_of_multiprocessing_is_in_gopool():
    missing = [name for name in multiprocessing.__all__ if not hasattr(gopool, name)]
    assert missing == []
    assert set(multiprocessing.__all__) <= set(gopool.__all__)
    assert set(multiprocessing.__all__) <= set(dir(gopool))
    assert gopool.SUBDEBUG == multiprocessing.SUBDEBUG
    assert gopool.SUBWARNING == multiprocessing.SUBWARNING


def test_exceptions_are_the_stdlibs():
    assert gopool.AuthenticationError is multiprocessing.AuthenticationError
    assert gopool.BufferTooShort is multiprocessing.BufferTooShort
    assert gopool.ProcessError is multiprocessing.ProcessError
    assert issubclass(gopool.TimeoutError, multiprocessing.TimeoutError)


@pytest.mark.parametrize("name", ["connection", "managers", "sharedctypes", "shared_memory", "heap",
                                  "reduction", "util"])
def test_stdlib_submodules_are_the_stdlibs_own(name):
    stdlib = __import__("multiprocessing." + name, fromlist=["_"])
    assert getattr(gopool, name) is stdlib
    imported = __import__("gopool." + name, fromlist=["_"])
    assert imported is stdlib
    assert sys.modules["gopool." + name] is stdlib
    assert stdlib.__name__ == "multiprocessing." + name  # not renamed
    assert stdlib.__spec__.name == "multiprocessing." + name


def test_from_import_of_submodule_names():
    from gopool.connection import Listener, wait
    from gopool.managers import SyncManager
    from gopool.sharedctypes import synchronized

    assert wait is multiprocessing.connection.wait
    assert Listener is multiprocessing.connection.Listener
    assert SyncManager is multiprocessing.managers.SyncManager
    assert synchronized is multiprocessing.sharedctypes.synchronized


def test_gopool_submodules_are_gopools():
    assert gopool.pool.Pool is gopool.Pool
    assert gopool.pool.ThreadPool is gopool.ThreadPool
    assert gopool.process.Process is gopool.Process
    assert gopool.queues.Queue is gopool.Queue
    assert gopool.context.get_context is gopool.get_context


def test_logging_helpers_are_multiprocessings():
    logger = gopool.get_logger()
    assert logger is multiprocessing.get_logger()
    assert logger.name == "multiprocessing"
    assert gopool.log_to_stderr is not None
    assert gopool.reducer is multiprocessing.reducer


def test_freeze_support_and_connection_pickling_do_nothing():
    assert gopool.freeze_support() is None
    assert gopool.allow_connection_pickling() is None


def test_set_forkserver_preload_is_accepted_and_checked():
    assert gopool.set_forkserver_preload(["json"]) is None
    with pytest.raises(TypeError, match="^module_names must be a list of strings$"):
        gopool.set_forkserver_preload([b"json"])


def test_dummy_pool_is_gopools_thread_pool():
    import gopool.dummy
    import gopool.dummy.connection

    assert gopool.dummy.connection is multiprocessing.dummy.connection
    assert gopool.dummy.Process is multiprocessing.dummy.Process
    assert gopool.dummy.Queue is multiprocessing.dummy.Queue
    assert set(multiprocessing.dummy.__all__) <= set(gopool.dummy.__all__)
    with gopool.dummy.Pool(2) as pool:
        assert isinstance(pool, gopool.ThreadPool)
        assert pool.map(ct.square, range(5)) == [0, 1, 4, 9, 16]


# -- contexts -------------------------------------------------------------------


@pytest.mark.parametrize("method", [None, "spawn", "forkserver"])
def test_context_gives_gopools_objects(method, start_method_restored):
    ctx = gopool.get_context(method)
    assert isinstance(ctx, multiprocessing.context.BaseContext)
    assert ctx.get_start_method() == (method or "spawn")
    assert ctx.get_context() is ctx
    assert ctx.Process is gopool.Process
    assert ctx.TimeoutError is gopool.TimeoutError
    assert isinstance(ctx.Queue(), gopool.Queue)
    assert isinstance(ctx.JoinableQueue(), gopool.JoinableQueue)
    assert isinstance(ctx.SimpleQueue(), gopool.SimpleQueue)
    assert isinstance(ctx.Event(), gopool.Event)
    assert ctx.cpu_count() == os.cpu_count()
    assert ctx.current_process() is multiprocessing.current_process()
    with ctx.Pool(1) as pool:
        assert isinstance(pool, gopool.Pool)
        assert pool.apply(ct.square, (7,)) == 49
    with pytest.raises(ValueError, match="^cannot set start method of concrete context$"):
        ctx.set_start_method("spawn")
    assert pickle.loads(pickle.dumps(ctx)) is ctx


def test_context_locks_work_with_gopool_processes(started):
    ctx = gopool.get_context()
    value = ctx.Value("i", 0, lock=ctx.RLock())
    p = started(ct.add_to_value, value, 50)
    ct.add_to_value(value, 50)
    p.join(30)
    assert p.exitcode == 0
    assert value.value == 100


def test_unknown_start_method():
    with pytest.raises(ValueError, match="^cannot find context for 'threads'$"):
        gopool.get_context("threads")
    with pytest.raises(ValueError, match="^cannot find context for 'threads'$"):
        gopool.get_context().get_context("threads")


def test_start_method_rules(start_method_restored):
    gopool.set_start_method(None, force=True)
    assert gopool.get_start_method(allow_none=True) is None
    assert gopool.get_start_method() == "spawn"  # the default, now chosen
    with pytest.raises(RuntimeError, match="^context has already been set$"):
        gopool.set_start_method("forkserver")
    gopool.set_start_method("forkserver", force=True)
    assert gopool.get_start_method() == "forkserver"
    assert gopool.get_context() is gopool.get_context("forkserver")
    gopool.set_start_method("spawn", force=True)
    assert gopool.get_context() is gopool.get_context("spawn")
    assert gopool.get_all_start_methods() == ["spawn", "forkserver", "fork"]
    with pytest.raises(ValueError, match="^cannot find context for 'threads'$"):
        gopool.set_start_method("threads", force=True)


def test_child_knows_the_parents_start_method(start_method_restored, started):
    gopool.set_start_method("forkserver", force=True)
    results = gopool.Queue()
    started(ct.report_start_method, results)
    assert results.get(timeout=30) == "forkserver"


def test_fork_context_is_the_stdlibs_own():
    assert gopool.get_context("fork") is multiprocessing.get_context("fork")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["get_context", "set_start_method"])
def test_fork_gives_forks_semantics(how):
    code, out, err = _run_script("compat_fork.py", how, timeout=80)
    assert code == 0, err
    assert out.splitlines() == [
        "start method: fork",
        "stdlib context: True",
        "child sees: ('lock', 42)",  # an unpicklable object, inherited
        "exitcode: 0",
        "process class: multiprocessing.context.ForkProcess",
        "pool class: multiprocessing.pool.Pool",
        "pool sees: ('lock', 42)",
        "gopool queue in a fork child: ForkedChildError",
        "gopool.Process: gopool.process",
        "gopool child sees: None",  # gopool's classes stay gopool's
    ], (out, err)


def test_set_executable(tmp_path):
    marker = tmp_path / "used"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$$" >> {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    from gopool import _spawning

    saved = _spawning._executable
    try:
        gopool.set_executable(str(wrapper))
        queue = gopool.SimpleQueue()
        p = gopool.Process(target=ct.put_parent_pid, args=(queue,))
        p.start()
        child_parent = queue.get()
        p.join(30)
        with gopool.Pool(1) as pool:
            worker_parent = pool.apply(os.getppid)
    finally:
        _spawning._executable = saved
    assert p.exitcode == 0
    # Children fork from a zygote, and the zygote for this executable was
    # started through the wrapper (exec keeps the pid the wrapper wrote).
    assert marker.read_text().split() == [str(child_parent)]
    assert worker_parent == child_parent


# -- concurrent.futures -----------------------------------------------------------


@pytest.mark.parametrize("method", [None, "spawn", "forkserver"])
def test_process_pool_executor_accepts_gopool_context(method):
    ctx = gopool.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx, initializer=ct.keep,
                                                initargs=("kept",)) as executor:
        assert list(executor.map(ct.square, range(8))) == [x * x for x in range(8)]
        assert executor.submit(ct.kept_types).result(timeout=30) == ["str"]
        assert all(isinstance(p, gopool.Process) for p in executor._processes.values())


if sys.version_info >= (3, 11):  # the stdlib executor's max_tasks_per_child

    def test_process_pool_executor_max_tasks_per_child():
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=gopool.get_context(),
                                                    max_tasks_per_child=1) as executor:
            pids = [executor.submit(ct.getpid).result(timeout=30) for _ in range(3)]
        assert len(set(pids)) == 3


def test_process_pool_executor_worker_death_breaks_the_pool():
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=gopool.get_context()) as executor:
        future = executor.submit(ct.exit_abruptly, 3)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            future.result(timeout=30)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["default", "spawn", "forkserver"])
def test_process_pool_executor_with_functions_of_main(method):
    """The executor pickles functions and classes of ``__main__`` by
    reference: the child imports the parent's main module for them."""
    code, out, err = _run_script("compat_executor.py", method, timeout=100)
    assert code == 0, err
    assert err == ""
    assert out.splitlines() == [
        "map: [1, 2, 5, 10, 17, 26]",
        "submit: 25",
        "workers: 2",
        "worker class: {'gopool.process'}",
    ]


def test_unguarded_main_cannot_start_processes_in_the_child():
    code, out, err = _run_script("compat_unguarded.py")
    assert code == 0, err
    assert out.splitlines() == ["child exitcode: 1"], (out, err)
    assert "has finished its bootstrapping phase" in err
    assert err.count("Traceback") == 1


# -- the waitable SimpleQueue of a context -------------------------------------------


def test_context_simple_queue_can_be_waited_on(started):
    q = gopool.get_context().SimpleQueue()
    reader = q._reader
    assert reader is q._reader
    assert multiprocessing.connection.wait([reader], 0) == []
    assert not reader.poll()
    for first in (0, 100, 200):
        started(ct.put_items, q, first, 100)
    got = []
    while len(got) < 300:
        assert multiprocessing.connection.wait([reader], 30) == [reader]
        assert reader.poll()
        got.append(reader.recv())
    assert sorted(got) == list(range(300))
    assert multiprocessing.connection.wait([reader], 0) == []
    assert q.empty()


@pytest.mark.timeout(30)
def test_context_simple_queue_is_ready_exactly_when_an_item_is_there():
    # A pipe rung after each put once went readable with nothing to take:
    # a put's ring landed after a getter had taken its item and drained the
    # pipe (CI saw wait() say ready and poll() say no), and the stdlib's
    # executor would then block in recv() instead of watching its workers.
    q = gopool.get_context().SimpleQueue()
    reader = q._reader
    q._handle.put("early", True, None)  # a producer between storing its item and announcing it
    assert multiprocessing.connection.wait([reader], 0) == []
    assert not reader.poll()
    got = []
    getter = threading.Thread(target=lambda: got.append(q.get()))
    getter.start()
    getter.join(0.2)
    assert getter.is_alive(), "a get took an item not yet announced"
    q._doorbell.announce()
    getter.join(10)
    assert got == ["early"]
    assert multiprocessing.connection.wait([reader], 0) == []
    assert q.empty()


@pytest.mark.timeout(60)
def test_context_simple_queue_put_waits_for_getters_once_its_pipe_is_full():
    q = gopool.get_context().SimpleQueue()
    capacity = 1 << 16  # one byte per unclaimed item in a 64 KiB pipe
    for i in range(capacity):
        q.put(i)
    last = threading.Thread(target=q.put, args=(capacity,), daemon=True)
    last.start()
    last.join(0.2)
    assert last.is_alive(), "a put went through a full pipe: its item is not announced"
    page = 4096  # a pipe takes more bytes once a whole page of it is read
    assert [q.get() for _ in range(page)] == list(range(page))
    last.join(10)
    assert not last.is_alive()
    assert [q.get() for _ in range(capacity + 1 - page)] == list(range(page, capacity + 1))
    assert q.empty() and not q._reader.poll()


def test_context_simple_queue_wait_after_get_and_put():
    q = gopool.get_context().SimpleQueue()
    q.put(1)
    q.put(2)
    assert q.get() == 1
    assert multiprocessing.connection.wait([q._reader], 0) == [q._reader]  # 2 is left
    assert q.get() == 2
    assert multiprocessing.connection.wait([q._reader], 0) == []
    q.close()
    with pytest.raises(OSError, match="^handle is closed$"):
        q.put(3)


def test_context_simple_queue_poll_waits_for_a_put():
    q = gopool.get_context().SimpleQueue()
    threading.Timer(0.05, q.put, ("late",)).start()
    assert q._reader.poll(30)
    assert q._reader.recv() == "late"


def test_plain_simple_queue_has_no_reader():
    assert not hasattr(gopool.SimpleQueue(), "_reader")


# -- Value, Array, RawValue, RawArray -------------------------------------------------


def test_value_with_processes(started):
    value = gopool.Value("i", 0)
    procs = [started(ct.add_to_value, value, 200) for _ in range(2)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert value.value == 400


def test_value_with_pool_initargs(make_pool):
    value = gopool.Value("i", 0)
    pool = make_pool(2, initializer=ct.keep, initargs=(value,))
    pool.map(ct.pool_add_to_value, [50] * 4, chunksize=1)
    assert value.value == 200


def test_array_with_process(started):
    array = gopool.Array("d", 4)
    p = started(ct.fill_array, array, 10)
    p.join(30)
    assert p.exitcode == 0
    assert array[:] == [10.0, 11.0, 12.0, 13.0]


def test_array_with_pool_initargs(make_pool):
    array = gopool.Array("i", 3)
    pool = make_pool(1, initializer=ct.keep, initargs=(array,))
    assert pool.apply(ct.pool_fill_array, (5,)) == [5, 6, 7]
    assert array[:] == [5, 6, 7]


def test_raw_value_with_process_and_pool(started, make_pool):
    raw = gopool.RawValue("q", 0)
    p = started(ct.set_raw_value, raw, 2**40)
    p.join(30)
    assert p.exitcode == 0
    assert raw.value == 2**40
    pool = make_pool(1, initializer=ct.keep, initargs=(raw,))
    assert pool.apply(ct.pool_set_raw_value, (7,)) == 7
    assert raw.value == 7


def test_raw_array_with_process_and_pool(started, make_pool):
    raw = gopool.RawArray("i", 5)
    p = started(ct.fill_raw_array, raw, 1)
    p.join(30)
    assert p.exitcode == 0
    assert raw[:] == [1, 2, 3, 4, 5]
    pool = make_pool(1, initializer=ct.keep, initargs=(raw,))
    assert pool.apply(ct.pool_fill_raw_array, (100,)) == [100, 101, 102, 103, 104]
    assert raw[:] == [100, 101, 102, 103, 104]


def test_shared_objects_still_pickle_only_through_inheritance():
    with pytest.raises(RuntimeError, match="through inheritance"):
        pickle.dumps(gopool.Value("i", 0))


# -- Pipe --------------------------------------------------------------------------


def test_pipe_with_process(started):
    here, there = gopool.Pipe()
    p = started(ct.echo_upper, there)
    for word in ("a", "bc"):
        here.send(word)
        assert here.poll(30)
        assert here.recv() == word.upper()
    here.send(None)
    p.join(30)
    assert p.exitcode == 0


def test_one_way_pipe_with_process(started):
    reader, writer = gopool.Pipe(duplex=False)
    p = started(ct.send_to, writer, {"x": 1})
    assert reader.poll(30)
    assert reader.recv() == {"x": 1}
    p.join(30)
    assert p.exitcode == 0


def test_pipe_with_pool_initargs(make_pool):
    reader, writer = gopool.Pipe(duplex=False)
    pool = make_pool(2, initializer=ct.keep, initargs=(writer,))
    assert pool.map(ct.pool_send, ["a", "b", "c"], chunksize=1) == ["a", "b", "c"]
    received = [reader.recv() for _ in range(3)]
    assert sorted(message for _, message in received) == ["a", "b", "c"]


def test_duplex_pipe_with_pool_initargs(make_pool):
    here, there = gopool.Pipe()
    pool = make_pool(1, initializer=ct.keep, initargs=(there,))
    result = pool.apply_async(ct.pool_echo, ("ping",))
    assert here.poll(30)
    here.send(here.recv() + "-pong")
    assert result.get(30) == "ping-pong"


def test_connection_sent_through_a_queue_to_a_running_process(started):
    """A connection pickled for a process that already runs travels by the
    stdlib's resource sharer, as with multiprocessing.Queue."""
    q = gopool.Queue()
    p = started(ct.answer_through_received_connection, q)
    reader, writer = gopool.Pipe(duplex=False)
    q.put(writer)
    assert reader.poll(30)
    assert reader.recv() == ("via queue", p.pid)
    p.join(30)
    assert p.exitcode == 0


# -- Manager ------------------------------------------------------------------------


@pytest.fixture
def manager():
    m = gopool.Manager()
    yield m
    m.shutdown()


def test_manager_server_is_a_gopool_process(manager):
    assert isinstance(manager._process, gopool.Process)
    assert manager._process.is_alive()


def test_manager_proxies_with_process(manager, started):
    shared_dict, shared_list = manager.dict(), manager.list()
    p = started(ct.fill_proxies, shared_dict, shared_list, "k")
    p.join(30)
    assert p.exitcode == 0
    assert dict(shared_dict) == {"k": p.pid}
    assert list(shared_list) == ["k"]


def test_manager_proxies_with_pool_initargs(manager, make_pool):
    shared_dict, shared_list = manager.dict(), manager.list()
    pool = make_pool(2, initializer=ct.keep, initargs=(shared_dict, shared_list))
    assert pool.map(ct.pool_fill_proxies, ["a", "b", "c"], chunksize=1) == ["a", "b", "c"]
    assert sorted(shared_dict) == ["a", "b", "c"]
    assert sorted(shared_list) == ["a", "b", "c"]


def test_manager_proxy_as_a_pool_task_argument(manager, make_pool):
    # The proxy authenticates with the worker's authkey: workers take the parent's.
    event = manager.Event()
    pool = make_pool(1)
    assert pool.apply(ct.set_proxied_event, (event,)) is True
    assert event.is_set()


def test_manager_proxy_as_an_executor_task_argument(manager):
    event = manager.Event()
    with gopool.ProcessPoolExecutor(1) as executor:
        assert executor.submit(ct.set_proxied_event, event).result(timeout=60) is True
    assert event.is_set()


def test_pool_workers_take_the_parents_authkey_and_argv(make_pool):
    pool = make_pool(1)
    authkey, argv, name, pid = pool.apply(ct.worker_preparation)
    assert authkey == bytes(multiprocessing.current_process().authkey)
    assert argv == sys.argv
    assert name == f"PoolWorker-{pid}"
    assert name in {worker.name for worker in pool._pool}


def test_manager_lock_and_value_with_processes(manager, started):
    lock, value = manager.Lock(), manager.Value("i", 0)
    procs = [started(ct.manager_lock_and_value, lock, value, 20) for _ in range(2)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert value.value == 40


def test_manager_queue_with_process(manager, started):
    q = manager.Queue()
    p = started(ct.put_pid, q)
    assert q.get(timeout=30) == p.pid


# -- shared_memory ---------------------------------------------------------------------


def test_shared_memory_with_process(started):
    shm = gopool.shared_memory.SharedMemory(create=True, size=16)
    try:
        p = started(ct.write_shared_memory, shm.name, b"from the child")
        p.join(30)
        assert p.exitcode == 0
        assert bytes(shm.buf[:14]) == b"from the child"
    finally:
        shm.close()
        shm.unlink()


def test_children_share_the_parents_resource_tracker(started, make_pool):
    """A child that attaches to a segment registers it with its parent's
    resource tracker, as spawned children do: a tracker of its own would
    remove the segment when the child exits."""
    shm = gopool.shared_memory.SharedMemory(create=True, size=16)  # starts the tracker
    try:
        results = gopool.Queue()
        p = started(ct.attach_shared_memory, shm.name, results)
        assert results.get(timeout=30) is None  # no tracker of its own
        p.join(30)
        pool = make_pool(1)
        assert pool.apply(ct.pool_attach_shared_memory, (shm.name,)) is None
        again = gopool.shared_memory.SharedMemory(shm.name)
        again.close()
    finally:
        shm.close()
        shm.unlink()
