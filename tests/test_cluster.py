"""Cluster mode: Pool(cluster=...) on a Dask LocalCluster started here
(worker processes, loopback only, no retry of a failed task).

Most tests share one cluster of two single-threaded workers and make their
own pools on it; the tests that kill Dask workers, own their cluster or
need workers set up differently start their own. After every test no gopool
worker process is left under the shared cluster's workers, and no process
the test started is left on the machine.
"""

import builtins
import functools
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import dask
import distributed
import psutil
import pytest

import gopool
from gopool import CancelledError, Pool, PoolTerminatedError, ThreadPool, TimeoutError, WorkerLostError
from gopool.cluster import ClusterError, Dask, ShortChunkWarning
from helpers import cluster_tasks as ct
from helpers import tasks
from helpers.util import check_map_async_of_one_item_with_callbacks, pid_alive, wait_for_path, wait_pids_gone

HERE = os.path.dirname(os.path.abspath(__file__))

# Most tests here send tiny tasks on purpose; the warning has a test of its own.
pytestmark = pytest.mark.filterwarnings("ignore::gopool.cluster.ShortChunkWarning")

NO_RETRY = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}


def _local_cluster(n_workers=2, **kwargs):
    with dask.config.set(NO_RETRY):
        return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None, silence_logs=40,
                                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, **kwargs)


@pytest.fixture(scope="module")
def client():
    cluster = _local_cluster()
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def _descendants():
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _remote_children(client):
    return [pid for pids in client.run(ct.gopool_children).values() for pid in pids]


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """After the test: no gopool worker under the shared cluster's workers,
    no process started by the test still running."""
    shared = request.getfixturevalue("client")
    before = _descendants()
    yield
    deadline = time.monotonic() + 10
    while _remote_children(shared) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _remote_children(shared) == []
    left = [pid for pid in _descendants() - before if pid_alive(pid) and not _is_shared_zygote(pid, shared)]
    assert wait_pids_gone(left, timeout=10) == []


def _is_shared_zygote(pid, client):
    """The idle zygote a shared Dask worker keeps once it has run a pool."""
    workers = set(client.run(ct.worker_pid).values())
    try:
        proc = psutil.Process(pid)
        return proc.ppid() in workers and "gopool._zygote" in " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def cpool(client):
    p = Pool(2, cluster=client)
    yield p
    p.terminate()
    p.join()


def _stop(p):
    p.terminate()
    p.join()


def _scheduler_keys(client, prefix):
    return client.run_on_scheduler(lambda dask_scheduler: [k for k in dask_scheduler.tasks if str(k).startswith(prefix)])


# -- 1. results ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_map_flavours_give_local_results(cpool):
    items = list(range(23))
    assert cpool.map(tasks.square, items) == [x * x for x in items]
    assert cpool.map(tasks.square, items, chunksize=1) == [x * x for x in items]
    assert cpool.map(tasks.square, items, chunksize=100) == [x * x for x in items]
    assert cpool.map(tasks.square, []) == []
    assert cpool.starmap(tasks.add, [(i, i) for i in range(7)]) == [2 * i for i in range(7)]
    assert list(cpool.imap(tasks.square, items, chunksize=4)) == [x * x for x in items]
    assert sorted(cpool.imap_unordered(tasks.square, items, chunksize=3)) == sorted(x * x for x in items)
    assert cpool.apply(tasks.with_kwargs, (1,), {"b": 2, "c": 3}) == (1, 2, 3)
    assert cpool.map_async(tasks.square, range(5)).get(30) == [0, 1, 4, 9, 16]


@pytest.mark.timeout(60)
def test_processes_default_to_the_cluster_threads(client):
    p = Pool(cluster=client)
    try:
        assert "pool_size=2" in repr(p)
        assert p.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_results_can_be_awaited(cpool):
    import asyncio

    async def main():
        one = await cpool.apply_async(tasks.square, (6,))
        many = await cpool.map_async(tasks.square, range(4))
        streamed = [x async for x in cpool.imap(tasks.square, range(3))]
        return one, many, streamed

    assert asyncio.run(main()) == (36, [0, 1, 4, 9], [0, 1, 4])


# -- 2. state machine ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_state_machine_and_messages_are_local_ones(client):
    p = Pool(2, cluster=client)
    with pytest.raises(ValueError, match="Pool is still running"):
        p.join()
    with pytest.raises(NotImplementedError, match="pool objects cannot be passed"):
        p.__reduce__()
    assert repr(p) == "<gopool.pool.Pool state=RUN pool_size=2>"
    with p as entered:
        assert entered is p
    assert p._state == "TERMINATE"
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(tasks.square, (1,))
    p.join()
    q = Pool(2, cluster=client)
    q.close()
    for call in (lambda: q.apply_async(tasks.square, (1,)), lambda: q.map(tasks.square, [1]),
                 lambda: q.imap(tasks.square, [1]), q.__enter__):
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    q.join()


@pytest.mark.timeout(30)
def test_threadpool_refuses_a_cluster(monkeypatch, client):
    with pytest.raises(ValueError, match="cluster"):
        ThreadPool(2, cluster=client)
    monkeypatch.setenv("GOPOOL_CLUSTER", "tcp://127.0.0.1:1")
    t = ThreadPool(1)  # GOPOOL_CLUSTER is for process pools only
    try:
        assert t.apply(tasks.square, (3,)) == 9
    finally:
        _stop(t)


@pytest.mark.timeout(30)
def test_bad_cluster_arguments():
    with pytest.raises(ValueError, match="scheduler address"):
        Pool(1, cluster="scheduler:8786")
    with pytest.raises(TypeError, match="cluster must be"):
        Pool(1, cluster=42)
    with pytest.raises(ValueError, match="n_workers is only"):
        Dask("tcp://127.0.0.1:8786", n_workers=2)
    with pytest.raises(ValueError, match="Number of processes"):
        Pool(0, cluster="tcp://127.0.0.1:1")


# -- 3. exceptions ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_exceptions_keep_their_type_and_remote_traceback(cpool):
    with pytest.raises(ValueError, match="boom") as info:
        cpool.apply(tasks.raise_value_error, ("boom",))
    assert type(info.value.__cause__) is gopool.pool.RemoteTraceback
    assert "raise_value_error" in str(info.value.__cause__)
    with pytest.raises(ValueError):
        cpool.map(tasks.fail_on_odd, range(4), chunksize=1)


@pytest.mark.timeout(60)
def test_map_async_reports_the_first_failure_and_does_not_fail_fast(cpool, tmp_path):
    errors = []
    result = cpool.map_async(functools.partial(ct.touch_then_fail_on_odd, str(tmp_path)), range(6), chunksize=1,
                             error_callback=errors.append)
    result.wait(30)
    assert result.ready() and not result.successful()
    assert len(errors) == 1 and isinstance(errors[0], ValueError) and errors[0].args[0] in (1, 3, 5)
    with pytest.raises(ValueError):
        result.get(0)
    # the result was ready only once every chunk had run: no failing fast
    assert sorted(os.listdir(tmp_path)) == [f"ran-{i}" for i in range(6)]


# -- 4. get(timeout) -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_get_timeout_raises_and_the_task_goes_on(cpool, tmp_path):
    go = str(tmp_path / "go")
    result = cpool.apply_async(ct.wait_for_file, (go, "done"))
    with pytest.raises(TimeoutError) as info:
        result.get(0.2)
    assert isinstance(info.value, multiprocessing.TimeoutError)
    assert isinstance(info.value, builtins.TimeoutError)
    open(go, "w").close()
    assert result.get(30) == "done"


# -- 5. cancel -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_cancel_pending_task_never_runs(client, tmp_path):
    p = Pool(1, cluster=client)
    try:
        blocker = p.apply_async(ct.wait_for_file, (str(tmp_path / "go"), 1))
        pending = p.apply_async(ct.touch_and_return, (str(tmp_path), "pending"))
        assert pending.cancel() is True
        open(tmp_path / "go", "w").close()
        assert blocker.get(30) == 1
        with pytest.raises(CancelledError):
            pending.get(5)
        assert p.apply(tasks.square, (4,)) == 16
        assert not (tmp_path / "ran-pending").exists()
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_cancel_running_task_stops_it_within_a_second(client, tmp_path):
    p = Pool(1, cluster=client)
    try:
        started, finished = str(tmp_path / "started"), str(tmp_path / "finished")
        result = p.apply_async(tasks.touch_sleep_touch, (started, 3.0, finished))
        wait_for_path(started)
        t0 = time.monotonic()
        assert result.cancel() is True
        assert result.cancelled()
        with pytest.raises(CancelledError):
            result.get(5)
        # the next task on that node starts within a second
        assert p.apply(tasks.square, (5,)) == 25
        assert time.monotonic() - t0 < 1.5
        time.sleep(max(0.0, 3.3 - (time.monotonic() - t0)))  # past the task's own end: its side effect must be absent
        assert not os.path.exists(finished)
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_cancel_finished_task_returns_false(cpool):
    result = cpool.apply_async(tasks.square, (3,))
    assert result.get(30) == 9
    assert result.cancel() is False
    assert not result.cancelled()


# -- 6. time limits ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_task_timeout_stops_remote_task_and_frees_the_slot(client, tmp_path):
    p = Pool(1, cluster=client, task_timeout=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="time limit"):
            p.apply(tasks.touch_sleep_touch, (str(tmp_path / "s"), 5.0, str(tmp_path / "f")))
        assert time.monotonic() - t0 < 1.5
        t1 = time.monotonic()
        assert p.apply(tasks.square, (6,)) == 36
        assert time.monotonic() - t1 < 1.0
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_apply_async_timeout_and_soft_timeout(cpool):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        cpool.apply_async(tasks.sleep_then_return, (5.0, 1), timeout=0.4).get(10)
    assert time.monotonic() - t0 < 1.4
    assert cpool.apply_async(tasks.sleep_or_clean_up, (5.0,), soft_timeout=0.3).get(10) == "cleaned up"
    assert cpool.apply(tasks.square, (2,)) == 4


# -- 7. a child dies --------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how, exitcode", [("os_exit", 3), ("sigkill", -signal.SIGKILL), ("segv", -signal.SIGSEGV)])
def test_child_death_fails_only_its_task(cpool, tmp_path, how, exitcode):
    others = cpool.map_async(tasks.sleep_return, range(4), chunksize=1)
    if how == "segv":
        call = cpool.apply_async(ct.segfault)
    else:
        call = cpool.apply_async(tasks.write_pid_then, (str(tmp_path / "pid"), how))
    with pytest.raises(WorkerLostError) as info:
        call.get(30)
    error = info.value
    assert error.exitcode == exitcode
    assert error.host and error.host in str(error) and str(error.pid) in str(error)
    assert others.get(30) == [0, 1, 2, 3]
    assert cpool.map(tasks.square, range(3)) == [0, 1, 4]


# -- 8. a Dask worker dies -----------------------------------------------------------------


@pytest.mark.timeout(90)
def test_dask_worker_killed_mid_task_fails_it_once_and_leaves_no_child(tmp_path):
    p = Pool(2, cluster="dask:local")
    try:
        runs = str(tmp_path)
        victim = p.apply_async(ct.record_then_sleep, (runs, "victim", 30.0))
        child = int(wait_for_path(str(tmp_path / "started-victim")))
        dask_worker = psutil.Process(child).parent().parent()  # child <- zygote <- Dask worker
        t0 = time.monotonic()
        dask_worker.kill()
        with pytest.raises(WorkerLostError, match="Dask worker"):
            victim.get(30)
        assert time.monotonic() - t0 < 10
        assert wait_pids_gone([child], timeout=5) == []
        time.sleep(0.5)  # a retry would have started by now
        with open(tmp_path / "victim") as f:
            assert len(f.readlines()) == 1
        assert p.map(tasks.square, range(4)) == [0, 1, 4, 9]
    finally:
        _stop(p)


# -- 9. terminate --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_terminate_stops_remote_work(client, tmp_path):
    p = Pool(2, cluster=client)
    results = [p.apply_async(tasks.touch_then_sleep, (str(tmp_path), i, 30.0)) for i in range(4)]
    wait_for_path(str(tmp_path / "started-0"))
    wait_for_path(str(tmp_path / "started-1"))
    t0 = time.monotonic()
    p.terminate()
    assert time.monotonic() - t0 < 2.0
    for r in results:
        with pytest.raises(PoolTerminatedError):
            r.get(0)
    p.join()  # waits until the agents have stopped the pool's workers
    assert time.monotonic() - t0 < 5.0
    assert _remote_children(client) == []
    assert not (tmp_path / "started-2").exists()


# -- 10. close + join ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_close_join_waits_for_everything_and_releases_the_scheduler(client, tmp_path):
    p = Pool(2, cluster=client)
    prefix = p._backend._key
    results = [p.apply_async(tasks.sleep_then_return, (0.3, i)) for i in range(5)]
    m = p.map_async(tasks.square, range(10), chunksize=2)
    p.close()
    p.join()
    assert all(r.ready() for r in results) and m.ready()
    assert [r.get(0) for r in results] == list(range(5))
    deadline = time.monotonic() + 5
    while _scheduler_keys(client, prefix) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _scheduler_keys(client, prefix) == []
    assert _remote_children(client) == []


@pytest.mark.timeout(90)
def test_owned_local_cluster_is_gone_after_join():
    before = _descendants()
    p = Pool(2, cluster="dask:local")
    assert p.map(tasks.square, range(6)) == [0, 1, 4, 9, 16, 25]
    workers = p.workers()
    assert len(workers) == 2 and all(w.host for w in workers)
    started = _descendants() - before
    assert started
    p.close()
    p.join()
    assert wait_pids_gone(list(started), timeout=10) == []


@pytest.mark.timeout(90)
def test_tls_security_passes_through():
    sec = distributed.Security.temporary()
    p = Pool(1, cluster=Dask("dask:local", security=sec))
    try:
        assert p._backend.client.scheduler.address.startswith("tls://127.0.0.1:")
        assert p.map(tasks.square, range(4)) == [0, 1, 4, 9]
    finally:
        p.close()
        p.join()


# -- 11. what travels --------------------------------------------------------------------------


def _make_closure(k):
    def add_k(x):
        return x + k

    return add_k


@pytest.mark.timeout(60)
def test_lambdas_closures_partials_travel_by_value(cpool):
    assert cpool.map(lambda x: x * 3, range(4)) == [0, 3, 6, 9]
    assert cpool.apply(_make_closure(10), (1,)) == 11
    assert cpool.map(functools.partial(tasks.add, 100), range(3)) == [100, 101, 102]


@pytest.mark.timeout(60)
def test_unpicklable_argument_and_result(cpool):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="pickle"):
        cpool.apply_async(tasks.identity, (lock,))
    with pytest.raises(gopool.pool.MaybeEncodingError, match="Error sending result"):
        cpool.apply(tasks.return_lock)


# -- 12. imap back-pressure -----------------------------------------------------------------------


class Counting:
    def __init__(self, items):
        self.items = iter(items)
        self.pulled = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.items)
        self.pulled += 1
        return item


@pytest.mark.timeout(60)
def test_imap_buffersize_bounds_what_is_pulled_and_submitted(cpool):
    import itertools

    source = Counting(range(1000))
    it = cpool.imap(tasks.square, source, buffersize=3)
    assert source.pulled == 3
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    assert source.pulled <= 5 + 3
    pulled = source.pulled
    del it
    gc.collect()
    time.sleep(0.3)
    assert source.pulled == pulled  # abandoned: nothing more is read
    endless = cpool.imap(tasks.square, itertools.count(), buffersize=4)
    assert [next(endless) for _ in range(10)] == [x * x for x in range(10)]
    slow = cpool.imap(functools.partial(tasks.sleep_then_return, 2.0), [1], buffersize=1)
    with pytest.raises(TimeoutError):
        slow.next(timeout=0.1)


# -- 13. pool size -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_never_more_than_processes_tasks_at_once(client, tmp_path):
    p = Pool(1, cluster=client)  # the cluster has two worker threads
    try:
        p.map(functools.partial(ct.interval, str(tmp_path)), range(4), chunksize=1)
    finally:
        _stop(p)
    spans = sorted(tuple(map(float, (tmp_path / f"interval-{i}").read_text().split())) for i in range(4))
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s2 >= e1 - 0.01


# -- 14. per remote worker options -------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_initializer_runs_once_per_remote_child(client):
    p = Pool(2, cluster=client, initializer=tasks.set_global, initargs=("hello",))
    try:
        values = p.map(tasks.read_global, range(8), chunksize=1)
        assert {v[0] for v in values} == {"hello"}
        pids = {v[1] for v in values}
        assert {w.pid for w in p.workers()} >= pids
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_failing_initializer_fails_tasks_without_respawning(client):
    p = Pool(1, cluster=client, initializer=tasks.failing_initializer, initargs=("no init",))
    try:
        with pytest.raises(RuntimeError, match="no init"):
            p.apply(tasks.square, (1,))
        with pytest.raises(RuntimeError, match="no init"):
            p.apply(tasks.square, (2,))
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_maxtasksperchild_recycles_remote_children(client):
    p = Pool(1, cluster=client, maxtasksperchild=1)
    try:
        pids = [p.apply(tasks.getpid) for _ in range(3)]
        assert len(set(pids)) == 3
    finally:
        _stop(p)


@pytest.mark.timeout(60)
def test_max_memory_per_child_stops_a_leaking_task(client):
    p = Pool(1, cluster=client, max_memory_per_child=3 << 30)
    try:
        with pytest.raises(MemoryError, match="max_memory_per_child"):
            p.apply(ct.allocate, (4 << 10,))
        assert p.apply(ct.allocate, (1,)) == 1 << 20
    finally:
        _stop(p)


# -- 15. workers() -----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_workers_show_host_pid_busy_and_function(cpool, tmp_path):
    go = str(tmp_path / "go")
    busy = cpool.apply_async(tasks.wait_for_go, (str(tmp_path / "started"), go))
    pid = int(wait_for_path(str(tmp_path / "started")))
    infos = cpool.workers()
    mine = [w for w in infos if w.pid == pid]
    assert len(mine) == 1 and mine[0].busy and mine[0].function == "wait_for_go" and mine[0].host
    assert mine[0].result is busy
    open(go, "w").close()
    assert busy.get(30)[1] == pid


# -- 16. no merging of identical calls ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_identical_calls_are_not_merged(cpool):
    a = cpool.apply_async(ct.random_value)
    b = cpool.apply_async(ct.random_value)
    assert a.get(30) != b.get(30)


# -- 17. large payloads ---------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_large_result_and_argument_travel_as_bytes(cpool):
    t0 = time.monotonic()
    assert len(cpool.apply(ct.big_list, (1_000_000,))) == 1_000_000
    assert cpool.apply(ct.count_items, (b"x" * (100 << 20),)) == 100 << 20
    assert time.monotonic() - t0 < 20


# -- 18. unreachable or lost scheduler -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_unreachable_scheduler_fails_within_the_connect_timeout():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        Pool(1, cluster=Dask(f"tcp://127.0.0.1:{port}", connect_timeout=1.0))
    assert time.monotonic() - t0 < 6


@pytest.mark.timeout(60)
def test_cluster_without_workers_fails_pool_creation():
    cluster = _local_cluster(n_workers=0)
    try:
        with distributed.Client(cluster, set_as_default=False) as c:
            t0 = time.monotonic()
            with pytest.raises(ClusterError, match="no worker"):
                Pool(1, cluster=Dask(client=c, connect_timeout=1.0))
            assert time.monotonic() - t0 < 5
    finally:
        cluster.close()


SCHEDULER_SCRIPT = """
import sys, time, dask, distributed
with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40, death_timeout=5,
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
print(cluster.scheduler_address, flush=True)
time.sleep(300)
"""


@pytest.mark.timeout(90)
def test_scheduler_death_fails_pending_results(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCHEDULER_SCRIPT], stdout=subprocess.PIPE, text=True,
                            cwd=HERE, start_new_session=True)
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://")
        p = Pool(1, cluster=Dask(address, connect_timeout=5))
        try:
            running = p.apply_async(tasks.touch_then_sleep, (str(tmp_path), 0, 30.0))
            queued = p.apply_async(tasks.square, (3,))
            wait_for_path(str(tmp_path / "started-0"))
            os.killpg(proc.pid, signal.SIGKILL)
            t0 = time.monotonic()
            for r in (running, queued):
                with pytest.raises(ClusterError, match="scheduler"):
                    r.get(20)
            assert time.monotonic() - t0 < 10
            with pytest.raises(ClusterError):
                p.apply(tasks.square, (1,))
        finally:
            p.terminate()
            p.join()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# -- 19. pools side by side; garbage collection ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_two_pools_on_one_client_are_independent(client, tmp_path):
    a = Pool(1, cluster=client)
    b = Pool(1, cluster=client)
    try:
        slow = a.apply_async(tasks.touch_then_sleep, (str(tmp_path), 0, 30.0))
        wait_for_path(str(tmp_path / "started-0"))
        assert b.apply(tasks.square, (7,)) == 49
        a.terminate()
        a.join()
        with pytest.raises(PoolTerminatedError):
            slow.get(1)
        assert b.map(tasks.square, range(3)) == [0, 1, 4]
    finally:
        _stop(a)
        _stop(b)


@pytest.mark.timeout(60)
def test_garbage_collected_pool_warns_and_releases(client):
    p = Pool(1, cluster=client)
    assert p.apply(tasks.square, (2,)) == 4
    with pytest.warns(ResourceWarning, match="unclosed running"):
        del p
        gc.collect()
    deadline = time.monotonic() + 5
    while _remote_children(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _remote_children(client) == []


# -- 20. callbacks; Ctrl-C; GOPOOL_CLUSTER ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_raising_callback_does_not_hang_the_pool(cpool):
    seen = []
    old = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)
    try:
        r = cpool.apply_async(tasks.square, (3,), callback=lambda v: 1 / 0)
        assert r.get(30) == 9
        assert cpool.apply_async(tasks.square, (4,), callback=seen.append).get(30) == 16
    finally:
        threading.excepthook = old
    assert any(isinstance(e, ZeroDivisionError) for e in seen)


@pytest.mark.timeout(120)
def test_unchanged_program_runs_on_the_cluster_through_the_environment_and_ctrl_c_stops_it(tmp_path):
    env = dict(os.environ, GOPOOL_CLUSTER="dask:local", PYTHONPATH=HERE, PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "helpers", "cluster_program.py"), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=HERE)
    try:
        first = proc.stdout.readline()
        assert first.strip() == str([x * x for x in range(10)])
        assert proc.stdout.readline().strip() == "None"  # a pool made by a task is a local one
        child = int(wait_for_path(str(tmp_path / "started-0"), timeout=60))
        wait_for_path(str(tmp_path / "started-1"), timeout=60)
        # the task runs under a Dask worker (a spawned process), not in a local pool
        ancestors = [" ".join(a.cmdline()) for a in psutil.Process(child).parents()]
        assert any("spawn_main" in a for a in ancestors)
        tree = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the program did not end within 30 s of SIGINT; its output:\n{out}\n{err[-8000:]}")
        assert "KeyboardInterrupt" in out
        assert wait_pids_gone(tree, timeout=10) == []
        assert not any(name.startswith("finished") for name in os.listdir(tmp_path))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- 21. the workers must run this gopool ----------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("preload, message", [
    ("hide_gopool.py", "gopool is not installed"),
    ("other_gopool_version.py", "runs gopool 0.0.0-other"),
])
def test_workers_without_this_gopool_fail_pool_creation(preload, message):
    cluster = _local_cluster(n_workers=1, preload=[os.path.join(HERE, "helpers", preload)])
    try:
        with distributed.Client(cluster, set_as_default=False) as c:
            with pytest.raises(ClusterError, match=message):
                Pool(1, cluster=c)
    finally:
        cluster.close()


# -- chunking -------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_short_chunks_warn_once(cpool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(12):
            cpool.apply(tasks.square, (i,))
        cpool.map(tasks.square, range(20), chunksize=1)
    short = [w for w in caught if issubclass(w.category, ShortChunkWarning)]
    assert len(short) == 1
    assert "chunksize" in str(short[0].message)


@pytest.mark.timeout(60)
def test_gopool_queue_cannot_be_an_initializer_argument_on_a_cluster(client):
    q = gopool.Queue()
    with pytest.raises(RuntimeError, match="inheritance"):
        Pool(1, cluster=client, initializer=tasks.set_global, initargs=(q,))


@pytest.mark.timeout(120)
def test_map_async_of_one_item_with_callbacks(cpool):
    check_map_async_of_one_item_with_callbacks(cpool, 10)  # found on ThreadPool; the same jobs code now
