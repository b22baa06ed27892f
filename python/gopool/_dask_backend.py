"""The cluster backend: a Pool's tasks as Dask tasks (see ``gopool.cluster``
for what users see, ``_backend`` for the interface).

Client side. Tasks are encoded as by the process backend (the pickled
function, the pickled arguments) and wait in a client-side queue; a
dispatcher thread submits them as Dask tasks (``_dask_agent.run_chunk``,
``pure=False`` with a key of their own, never merged or retried by gopool)
while fewer than ``processes`` are in flight, which gives the pool size its
local meaning and ``imap(buffersize=)`` its back-pressure (Dask's ``map``
takes no iterator and has no window). Each Dask future is followed on the
client's event loop; its reply (opaque bytes) is stored as it arrives and
the future dropped, so Dask holds no finished result that a later worker
death could make it recompute. Replies are unpickled by the thread that
collects them, never on the event loop.

Locks: ``_cond`` guards the jobs, the queue and the in-flight table; it is
held for bookkeeping only. No blocking Dask call (submit, cancel, run) is
ever made while holding it: the event loop takes it to store replies.
"""

from __future__ import annotations

import atexit
import os
import pickle
import statistics
import threading
import time
import types
import uuid
import warnings
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from gopool import _serialize as ser
from gopool import _wire
from gopool._backend import NO_LIMITS, ClusterWorkerRow, Entry, TimeLimits
from gopool._errors import CancelledError, TimeoutError, WorkerLostError, describe_exit
from gopool._jobs import CLOSE, TERMINATE, PythonJobs, Stored, cancelled, terminated
from gopool._process_backend import FunctionEncoder, decode_outcome
from gopool.cluster import ClusterError, Dask, ShortChunkWarning

# A task as this backend encodes it: (pickled function, pickled (args, kwds, mode)).
Task = Tuple[bytes, bytes]

# Parts at least this large go to the workers by scatter (worker to worker
# or client to worker), not inside the task graph through the scheduler.
SCATTER_BYTES = ser.BIG_PART

# The short-chunk warning: after WARN_SAMPLES chunks, if the median chunk
# takes less than 1/WARN_RATIO of the median overhead of a round trip.
WARN_SAMPLES = 8
WARN_RATIO = 5.0

# How long join() and release() wait for the cluster's side to be released.
RELEASE_TIMEOUT_S = 10.0


# Imported first, so that Dask's exit handlers are registered before ours
# (see _release_at_exit).
_distributed: Optional[types.ModuleType]
try:
    import distributed as _distributed
except ImportError as _missing:
    _distributed = None
    _import_error: Optional[ImportError] = _missing
else:
    _import_error = None


def _import_distributed() -> types.ModuleType:
    if _distributed is None:
        raise ImportError(
            "Pool(cluster=...) runs on Dask: install it with `pip install gopool[dask]` "
            "(or `pip install distributed`)"
        ) from _import_error
    return _distributed


class _Flight:
    """A task submitted to Dask and not yet answered."""

    __slots__ = ("job", "index", "future", "scattered", "sent", "done", "cancel")

    def __init__(self, job: int, index: int):
        self.job = job
        self.index = index
        self.future: Any = None
        self.scattered: List[Any] = []
        self.sent = time.monotonic()
        self.done = False  # its outcome is already recorded (cancelled, terminated)
        self.cancel = False  # its Dask future must be cancelled


class _Failure:
    """A raw outcome that is an exception made on the client."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


class DaskBackend(PythonJobs):
    """A pool's tasks run by gopool agents on a Dask cluster; an outcome is
    stored raw (the agent's reply, or a _Failure) and decoded when lent."""

    def __init__(self, cluster: Dask, processes: Optional[int], initializer: Optional[Callable[..., Any]],
                 initargs: Sequence[Any], maxtasksperchild: Optional[int], max_memory_per_child: Optional[int]):
        distributed = _import_distributed()
        # Encoded before connecting: an initializer or argument that cannot
        # travel fails here, as locally.
        init_call = ser.dumps((initializer, tuple(initargs)))
        self._spec = pickle.dumps((init_call, max_memory_per_child, maxtasksperchild))
        self._key = f"gopool-{uuid.uuid4().hex[:12]}"
        self._functions = FunctionEncoder()
        self._cluster_spec = cluster
        self._owned_cluster: Any = None  # a distributed.LocalCluster gopool started
        self._owned_client = False
        self.client = self._connect(distributed, cluster, processes)
        try:
            _check_workers(self.client, cluster.connect_timeout)
            if processes is None:
                processes = sum(self.client.nthreads().values()) or 1
        except BaseException:
            self._close_owned()
            raise
        self.processes = processes
        super().__init__()
        self._flights: Dict[str, _Flight] = {}
        self._timings: List[Tuple[float, float]] = []  # (seconds on the node, round trip)
        self._warning: Optional[str] = None  # the short-chunk warning, once due
        self._warned = False
        self._finished = threading.Event()  # the dispatcher has released everything
        self._dispatcher = threading.Thread(target=self._dispatch, name="gopool dask dispatcher", daemon=True)
        self._dispatcher.start()
        _live.add(self)

    # -- connecting ----------------------------------------------------------

    def _connect(self, distributed: types.ModuleType, cluster: Dask, processes: Optional[int]) -> Any:
        """A distributed.Client for the cluster."""
        timeout = cluster.connect_timeout
        if cluster.client is not None:
            client = cluster.client
            if getattr(client, "asynchronous", False):
                raise ValueError("Pool(cluster=client) needs a synchronous distributed.Client")
            if client.status not in ("running", "connecting", "newly-created"):
                raise ClusterError(f"the distributed.Client given is {client.status}")
            return client
        if cluster.local:
            import dask

            n_workers = cluster.n_workers or processes or os.cpu_count() or 1
            # No retry of a task whose worker died (it would run twice), and
            # no task sent to a worker ahead of a free thread (a worker's
            # death would fail it too).
            with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                  "distributed.scheduler.worker-saturation": 1.0}):
                self._owned_cluster = distributed.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, security=cluster.security, silence_logs=40,
                    # its HTTP endpoints (health, metrics) on a free loopback port
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                )
            try:
                self._owned_client = True
                return distributed.Client(self._owned_cluster, timeout=timeout, set_as_default=False,
                                          security=cluster.security)
            except BaseException:
                self._owned_cluster.close()
                raise
        try:
            client = distributed.Client(cluster.address, timeout=timeout, security=cluster.security,
                                        set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {cluster.address} within {timeout:g} s "
                f"(connect_timeout): {exc}"
            ) from exc
        self._owned_client = True
        return client

    def _close_owned(self) -> None:
        if self._owned_client:
            try:
                self.client.close(timeout=RELEASE_TIMEOUT_S)
            except Exception:
                pass
        if self._owned_cluster is not None:
            try:
                self._owned_cluster.close(timeout=RELEASE_TIMEOUT_S)
            except Exception:
                pass

    # -- encoding ------------------------------------------------------------

    def encode(self, func: Callable[..., Any], args: Any, kwds: Any, mode: int) -> Task:
        return self._functions.encode(func), ser.dumps((args, kwds, mode))  # one piece: Dask moves it as bytes

    def iter_encode(self, func: Callable[..., Any], arg_list: Iterable[Any], mode: int) -> Iterator[Task]:
        func_bytes = self._functions.encode(func)
        return ((func_bytes, ser.dumps((args, None, mode))) for args in arg_list)

    # -- jobs ----------------------------------------------------------------

    def _failed(self, error: BaseException) -> _Failure:
        return _Failure(error)

    def _entries(self, lent: List[Stored]) -> List[Entry]:
        return [(index, *self._decode(raw)) for index, raw in lent]

    def _queue_item(self, job_id: int, index: int, task: Any, limits: TimeLimits) -> Tuple[Any, ...]:
        return (job_id, index, task, limits)

    def submit(self, job_id: int, tasks: Sequence[Any], *, seal: bool, notify: bool = False,
               limits: TimeLimits = NO_LIMITS) -> int:
        self._warn_if_due()
        return super().submit(job_id, tasks, seal=seal, notify=notify, limits=limits)

    def collect(self, job_id: int, handled: int, timeout_ms: int) -> Tuple[List[Entry], bool]:
        self._warn_if_due()
        return super().collect(job_id, handled, timeout_ms)

    def cancel(self, job_id: int) -> int:
        """Cancel a job: its queued tasks never run; a submitted one is
        cancelled in Dask, and the agent running it kills its child."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return 0
            count = self._cancel_queued_locked(job_id, cancelled)
            for flight in self._flights.values():
                if flight.job == job_id and not flight.done:
                    flight.done = flight.cancel = True
                    self._finish_locked(job_id, flight.index, self._failed(cancelled()))
                    count += 1
            self._seal_locked(job_id, job)
            self._cond.notify_all()
        return count

    # -- life cycle ----------------------------------------------------------

    def terminate(self) -> None:
        with self._cond:
            if self._state == TERMINATE:
                return
            self._state = TERMINATE
            self._fail_everything_locked(terminated)
            self._seal_all_locked()
            self._cond.notify_all()

    def _fail_everything_locked(self, error: Callable[[], BaseException]) -> None:
        self._fail_queued_locked(error)
        for flight in self._flights.values():
            if not flight.done:
                flight.done = flight.cancel = True
                self._finish_locked(flight.job, flight.index, self._failed(error()))

    def join(self, timeout_ms: int) -> bool:
        return self._finished.wait(timeout_ms / 1000)

    def release(self) -> None:
        self.terminate()
        if threading.current_thread() is self._dispatcher or _in_event_loop(self.client):
            return  # the dispatcher finishes the release on its own
        self._finished.wait(RELEASE_TIMEOUT_S)

    # -- introspection -------------------------------------------------------

    def workers(self) -> List[ClusterWorkerRow]:
        """One row per node-local worker process of this pool: (pid, tasks
        done, job, index, host); a snapshot, one round trip to the cluster."""
        from gopool import _dask_agent

        if self._state == TERMINATE or self._finished.is_set():
            return []
        try:
            replies = self.client.run(_dask_agent.stats, self._key, on_error="return")
        except Exception:
            return []
        rows: List[ClusterWorkerRow] = []
        for reply in replies.values():
            if isinstance(reply, list):
                rows.extend(tuple(row) for row in reply)
        return rows

    # -- the dispatcher --------------------------------------------------------

    def _dispatch(self) -> None:
        """Submit queued tasks while the window has room; pass cancellations
        on; once the pool is done (closed and drained, or terminated),
        release the agents' local pools and what gopool owns."""
        from gopool import _dask_agent

        try:
            while True:
                with self._cond:
                    while True:
                        to_send = []
                        room = self.processes - len(self._flights)
                        while room > 0 and self._queue and self._state != TERMINATE and self._failure is None:
                            job_id, index, task, limits = self._queue.popleft()
                            flight = _Flight(job_id, index)
                            self._flights[f"{self._key}-{job_id}-{index}"] = flight
                            to_send.append((flight, task, limits))
                            room -= 1
                        to_cancel = [f for f in self._flights.values() if f.cancel and f.future is not None]
                        for flight in to_cancel:
                            flight.cancel = False
                        finished = self._state == TERMINATE or (
                            self._state == CLOSE and self._open == 0 and not self._queue and not self._flights
                        )
                        if to_send or to_cancel or finished:
                            break
                        self._cond.wait()
                for flight, task, limits in to_send:
                    self._send(_dask_agent.run_chunk, flight, task, limits)
                if to_cancel:
                    self._cancel_futures([f.future for f in to_cancel])
                if finished:
                    break
        except BaseException as exc:  # the client broke: nothing more can run
            with self._cond:
                broken = self._failure or ClusterError(f"the cluster pool's dispatcher failed: {exc!r}")
                self._failure = broken
                self._fail_everything_locked(lambda: broken)
        self._release_cluster()

    def _send(self, run_chunk: Callable[..., Any], flight: _Flight, task: Task, limits: TimeLimits) -> None:
        func, args = task
        parts = []
        for data in (func, args):
            if len(data) >= SCATTER_BYTES:
                future = self.client.scatter(data, hash=False)
                flight.scattered.append(future)
                parts.append(future)
            else:
                parts.append(data)
        key = f"{self._key}-{flight.job}-{flight.index}"
        try:
            future = self.client.submit(run_chunk, self._key, self._spec, parts[0], parts[1], limits.hard,
                                        limits.soft, flight.job, flight.index, key=key, pure=False, retries=0)
        except Exception as exc:
            self._settle(key, _Failure(ClusterError(f"the task could not be submitted to Dask: {exc!r}")))
            return
        with self._cond:
            flight.future = future
            cancel = flight.done
        self.client.loop.add_callback(self._follow, key, future)
        if cancel:
            self._cancel_futures([future])

    def _cancel_futures(self, futures: List[Any]) -> None:
        try:
            self.client.cancel(futures, force=True)
        except Exception:
            pass

    async def _follow(self, key: str, future: Any) -> None:
        """On the client's event loop: wait for a task's reply, then store it."""
        try:
            raw: Any = await self.client.gather(future, asynchronous=True)
        except BaseException as exc:
            with self._cond:
                flight = self._flights.get(key)
                ours = flight is None or flight.done  # cancelled or terminated here
            raw = _Failure(exc) if ours else self._dask_failure(exc)
        self._settle(key, raw)

    def _settle(self, key: str, raw: Any) -> None:
        with self._cond:
            flight = self._flights.pop(key, None)
            if flight is None:
                return
            if not flight.done:
                flight.done = True
                self._finish_locked(flight.job, flight.index, raw)
                if isinstance(raw, (bytes, bytearray)):
                    self._time(raw, time.monotonic() - flight.sent)
            self._cond.notify_all()

    def _dask_failure(self, exc: BaseException) -> _Failure:
        """What a Dask future's failure means for a task that nobody here
        cancelled."""
        import asyncio

        from distributed import KilledWorker

        if isinstance(exc, KilledWorker):
            worker = getattr(exc, "last_worker", None)
            where = getattr(worker, "address", None) or "a Dask worker"
            return _Failure(WorkerLostError(
                f"the Dask worker running the task ({where}) died or was lost; "
                "the task failed without being retried", None, None))
        if isinstance(exc, (asyncio.CancelledError, CancelledError)) or type(exc).__name__ == "FutureCancelledError":
            broken = ClusterError(
                "the connection to the Dask scheduler was lost, or the cluster dropped the task, "
                f"before the task finished ({exc})"
            )
            with self._cond:
                if self._failure is None:
                    self._failure = broken
                    self._fail_everything_locked(lambda: broken)
            return _Failure(broken)
        error = ClusterError(f"the Dask task failed on the cluster: {exc!r}")
        error.__cause__ = exc
        return _Failure(error)

    def _release_cluster(self) -> None:
        """The last thing the dispatcher does: cancel what Dask still runs,
        stop every agent's local pool, drop what gopool owns."""
        from gopool import _dask_agent

        with self._cond:
            futures = [f.future for f in self._flights.values() if f.future is not None]
        if futures:
            self._cancel_futures(futures)
        if self._failure is None:
            try:
                self.client.run(_dask_agent.release, self._key, on_error="ignore")
            except Exception:
                pass
        with self._cond:
            self._flights.clear()
        self._close_owned()
        self._finished.set()

    # -- replies ---------------------------------------------------------------

    def _decode(self, raw: Any) -> Tuple[bool, Any]:
        if isinstance(raw, _Failure):
            return False, raw.error
        from gopool._dask_agent import STATUS_POOL_RELEASED, parse_reply

        status, pid, exitcode, _, host, payload = parse_reply(raw)
        if status == _wire.STATUS_WORKER_LOST:
            error = WorkerLostError(
                f"worker process {pid} on host {host} died while running the task ({describe_exit(exitcode)})",
                pid, exitcode)
            error.host = host
            return False, error
        if status == _wire.STATUS_TIMED_OUT:
            return False, TimeoutError(
                f"the task exceeded its time limit; its worker (pid {pid} on host {host}) was killed")
        if status == STATUS_POOL_RELEASED:
            return False, terminated()
        return decode_outcome(status, pid, exitcode, payload)

    def _time(self, reply: ser.BytesLike, round_trip: float) -> None:
        """Keep the first chunks' timings; decide whether to warn."""
        if self._warned or self._warning is not None or len(self._timings) >= WARN_SAMPLES:
            return
        from gopool._dask_agent import parse_reply

        node = parse_reply(reply)[3]
        self._timings.append((node, max(0.0, round_trip - node)))
        if len(self._timings) == WARN_SAMPLES:
            node_median = statistics.median(t for t, _ in self._timings)
            overhead = statistics.median(o for _, o in self._timings)
            if node_median * WARN_RATIO < overhead:
                self._warning = (
                    f"tasks of this cluster pool take {node_median * 1000:.1f} ms on the workers against "
                    f"{overhead * 1000:.1f} ms of overhead per round trip to the cluster: pass a larger "
                    "chunksize (map, imap) or batch the calls"
                )

    def _warn_if_due(self) -> None:
        if self._warning is not None and not self._warned:
            self._warned = True
            warnings.warn(self._warning, ShortChunkWarning, stacklevel=_user_stacklevel())


_live: "weakref.WeakSet[DaskBackend]" = weakref.WeakSet()


def _release_at_exit() -> None:
    """At interpreter exit, before Dask's own exit handlers close clients and
    clusters (registered after Dask's import, this runs first): stop the
    remote work of every cluster pool and release what it owns."""
    for backend in list(_live):
        try:
            backend.release()
        except Exception:
            pass


atexit.register(_release_at_exit)


def _check_workers(client: Any, timeout: float) -> None:
    """Fail unless the cluster has workers that run this gopool version."""
    import gopool
    from gopool import _dask_agent

    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception as exc:
        raise ClusterError(f"the Dask cluster has no worker (waited {timeout:g} s)") from exc
    try:
        replies = client.run(_dask_agent.probe, on_error="return")
    except Exception as exc:
        raise ClusterError(f"cannot check the Dask workers: {exc!r}") from exc
    mine = gopool.__version__
    import sys

    for address, reply in sorted(replies.items()):
        if isinstance(reply, BaseException):
            # Dask may hand back the worker's ImportError as a plain
            # Exception holding its repr.
            if isinstance(reply, ImportError) or "No module named 'gopool" in str(reply):
                raise ClusterError(
                    f"gopool is not installed (or cannot be imported) on the Dask worker {address}: {reply}; "
                    f"install gopool=={mine} on every worker"
                ) from reply
            raise ClusterError(f"the Dask worker {address} cannot run gopool's agent: {reply!r}") from reply
        if reply.get("gopool") != mine:
            raise ClusterError(
                f"the Dask worker {address} runs gopool {reply.get('gopool')}, this program gopool {mine}: "
                "install the same version everywhere"
            )
        if list(reply.get("python", ())) != list(sys.version_info[:2]):
            raise ClusterError(
                f"the Dask worker {address} runs Python {'.'.join(map(str, reply.get('python', ())))}, this "
                f"program Python {sys.version_info[0]}.{sys.version_info[1]}: functions sent by value need the same"
            )


def _user_stacklevel() -> int:
    """The stacklevel of a warning that points at the first caller outside
    gopool (counted from the function that calls warnings.warn)."""
    import sys

    frame: Optional[types.FrameType] = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("gopool"):
        frame, level = frame.f_back, level + 1
    return level


def _in_event_loop(client: Any) -> bool:
    loop = getattr(client, "loop", None)
    try:
        import asyncio

        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return loop is not None and getattr(loop, "asyncio_loop", None) is running
