"""gopool's agent inside a Dask worker: runs a cluster pool's tasks in
node-local gopool worker processes.

Each Dask task of a cluster pool is a call of :func:`run_chunk` with one
task as the client encoded it (the pickled function and the pickled
arguments, opaque bytes here: nothing of the user's is unpickled in the Dask
worker). The agent hands it to a node-local pool of the Go core (one per
client pool, sized to the Dask worker's threads, started on first use with
that pool's initializer and limits) and waits for it in slices. Between
slices it looks at the Dask task's state: once the client has cancelled it
(``AsyncResult.cancel()``, ``terminate()``, a client that vanished), the
local task is cancelled, which kills the child running it. Time limits,
worker deaths and memory limits are the local pool's own.

The Dask worker process loads the Go runtime here; that is safe because a
Dask worker never forks (Dask starts worker processes with spawn, from the
nanny, which never runs this code), and gopool's children are started by
fork+exec. They die with the Dask worker (the core's parent-death signal).

The reply is opaque bytes too: a header (status, pid, exit code, time on
the node), the host name, and the result's pickle as the child made it.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from gopool import _binding as core
from gopool import _serialize as ser
from gopool import _spawning
from gopool._backend import TimeLimits
from gopool._process_backend import _REPLY, _RESULT, ProcessBackend

if TYPE_CHECKING:
    from dask.typing import Key
    from distributed import Worker

# (status, pid, exit code in Process.exitcode convention, seconds on the node)
REPLY_HEADER = struct.Struct("<iqqd")

# Statuses the agent adds to the core's (negative: never the core's).
STATUS_POOL_RELEASED = -1  # the client released the pool: the task was not run

# A local pool nobody has used for this long is released (its client is
# gone without saying so).
IDLE_RELEASE_S = 300.0

_HOST = socket.gethostname()


def version() -> str:
    """The version of the gopool package this process imports."""
    import gopool

    return gopool.__version__


def probe() -> Dict[str, object]:
    """What the client checks before it uses this worker."""
    import sys

    return {"gopool": version(), "python": list(sys.version_info[:2]), "host": _HOST, "pid": os.getpid()}


class _NodeBackend(ProcessBackend):
    """The Go core's pool, started from an init message the client encoded
    (the initializer is never unpickled in the Dask worker), handing back
    results undecoded."""

    def __init__(self, processes: int, init_call: bytes, max_memory: Optional[int], maxtasksperchild: Optional[int]):
        core.check_not_forked()
        from gopool._process_backend import FunctionEncoder, worker_settings

        self._functions = FunctionEncoder()
        argv, zygote, entry = _spawning.start_arguments("gopool._worker")
        # The node's own settings (its sys.path, its authkey); not its
        # __main__, which is the Dask worker's, never the user's program.
        init = ser.pack(worker_settings(max_memory, main=False), init_call)
        # A pool made by a task on the cluster is a local one. Removed from
        # the Dask worker's own environment: gopool's zygote, started once
        # per process, passes that on to every child.
        os.environ.pop("GOPOOL_CLUSTER", None)
        with core.go_bytes(argv, zygote, _spawning.environment(), init, b"") as go:
            argv_h, zygote_h, env_h, init_h, fds_h = go
            self._id = core.call(core.lib.PoolNew, processes, maxtasksperchild or 0, argv_h, zygote_h, entry,
                                 env_h, os.getcwd(), init_h, fds_h, 0, True)
        self._released = False
        self._acks: List[Tuple[int, int]] = []

    def collect_raw(self, job: int, timeout_ms: int) -> Optional[Tuple[int, int, int, bytes]]:
        """The job's one result as (status, pid, exitcode, payload bytes),
        or None if it has not finished within timeout_ms."""
        size = 0
        while True:
            buf = core.take_buffer(size)
            try:
                n = core.call(core.lib.PoolCollect, self._id, job, 0, buf.id, min(timeout_ms, core.SLICE_MS), 0, 0)
                if n >= 0:
                    count, _ = _REPLY.unpack_from(buf.view, 0)
                    if count == 0:
                        return None
                    index, status, pid, code, sig, length = _RESULT.unpack_from(buf.view, _REPLY.size)
                    start = _REPLY.size + _RESULT.size
                    payload = bytes(buf.view[start : start + length])
                    return status, pid, -sig if sig else code, payload
            finally:
                buf.busy = False
            size = core.need_from(n)


class _LocalPool:
    __slots__ = ("backend", "running", "last_used", "busy")

    def __init__(self, backend: _NodeBackend):
        self.backend = backend
        self.running: Dict[int, Tuple[int, int]] = {}  # local job -> (client job, index)
        self.last_used = time.monotonic()
        self.busy = 0


class _Agent:
    """The local pools of this Dask worker process, by client pool key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: Dict[str, _LocalPool] = {}
        self._released: "OrderedDict[str, None]" = OrderedDict()  # keys never to start again
        self._sweeper: Optional[threading.Thread] = None

    def acquire(self, key: str, spec: bytes, threads: int) -> Optional[_LocalPool]:
        """The local pool of a client pool (started on first use), marked
        busy; None if the client released it."""
        with self._lock:
            if key in self._released:
                return None
            local = self._pools.get(key)
            if local is None:
                init_call, max_memory, maxtasksperchild = pickle.loads(spec)
                local = _LocalPool(_NodeBackend(threads, init_call, max_memory, maxtasksperchild))
                self._pools[key] = local
                self._start_sweeper()
            local.busy += 1
            return local

    def done_with(self, local: _LocalPool) -> None:
        with self._lock:
            local.busy -= 1
            local.last_used = time.monotonic()

    def release(self, key: str) -> int:
        """Stop the local pool of a client pool and forget it: its children
        are killed; tasks of it that arrive later are not run. Returns the
        number of children it had."""
        with self._lock:
            self._released[key] = None
            while len(self._released) > 4096:
                self._released.popitem(last=False)
            local = self._pools.pop(key, None)
        if local is None:
            return 0
        return _stop(local.backend)

    def stats(self, key: str) -> List[Tuple[int, int, int, int, str]]:
        with self._lock:
            local = self._pools.get(key)
            if local is None:
                return []
            running = dict(local.running)
        rows = []
        for pid, done, job, index in local.backend.workers():
            client_job, client_index = running.get(job, (0, 0)) if job else (0, 0)
            rows.append((pid, done, client_job, client_index, _HOST))
        return rows

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep, name="gopool agent sweeper", daemon=True)
            self._sweeper.start()

    def _sweep(self) -> None:
        while True:
            time.sleep(IDLE_RELEASE_S / 10)
            now = time.monotonic()
            with self._lock:
                idle = [k for k, p in self._pools.items() if not p.busy and now - p.last_used > IDLE_RELEASE_S]
            for key in idle:
                with self._lock:
                    local = self._pools.get(key)
                    if local is None or local.busy or now - local.last_used <= IDLE_RELEASE_S:
                        continue
                    del self._pools[key]
                _stop(local.backend)


def _stop(backend: _NodeBackend) -> int:
    try:
        children = len(backend.workers())
        backend.terminate()
        deadline = time.monotonic() + 5.0
        while not backend.join(core.SLICE_MS) and time.monotonic() < deadline:
            pass
        backend.release()
        return children
    except Exception:
        return 0


_agent = _Agent()


def release(key: str) -> int:
    """Run by the client (``client.run``) when its pool is joined or
    terminated."""
    return _agent.release(key)


def stats(key: str) -> List[Tuple[int, int, int, int, str]]:
    """Run by the client for ``Pool.workers()``: one row per local worker
    process of that pool, (pid, tasks done, client job, index, host)."""
    return _agent.stats(key)


def _reply(status: int, pid: int, exitcode: int, seconds: float, payload: bytes) -> bytes:
    return ser.pack(REPLY_HEADER.pack(status, pid, exitcode, seconds), _HOST.encode(), payload)


def parse_reply(reply: ser.BytesLike) -> Tuple[int, int, int, float, str, memoryview]:
    """(status, pid, exitcode, seconds on the node, host, payload) of a
    run_chunk reply."""
    header, host, payload = ser.unpack(reply)
    status, pid, exitcode, seconds = REPLY_HEADER.unpack(header)
    return status, pid, exitcode, seconds, bytes(host).decode(), payload


def run_chunk(key: str, spec: bytes, func: bytes, args: bytes, hard: Optional[float], soft: Optional[float],
              job: int, index: int) -> bytes:
    """The body of a cluster pool's Dask task: run one encoded gopool task
    in this node's local pool for that client pool; stop it if the Dask
    task is cancelled. Returns the reply (see parse_reply)."""
    from distributed import get_worker
    from distributed.worker import thread_state  # type: ignore[attr-defined]  # not re-exported there

    worker = get_worker()
    dask_key = getattr(thread_state, "key", None)
    local = _agent.acquire(key, spec, max(1, worker.state.nthreads))
    if local is None:
        return _reply(STATUS_POOL_RELEASED, 0, 0, 0.0, b"")
    backend = local.backend
    started = time.monotonic()
    try:
        local_job = backend.submit(0, [(func, [args])], seal=True, limits=TimeLimits(hard, soft))
        local.running[local_job] = (job, index)
        del func, args
        try:
            cancelled = False
            while True:
                outcome = backend.collect_raw(local_job, core.SLICE_MS)
                if outcome is not None:
                    status, pid, exitcode, payload = outcome
                    return _reply(status, pid, exitcode, time.monotonic() - started, payload)
                if not cancelled and _cancelled(worker, dask_key):
                    # The reply goes nowhere (Dask dropped the task); what
                    # matters is that the child stops now.
                    backend.cancel(local_job)
                    cancelled = True
        finally:
            local.running.pop(local_job, None)
            try:
                backend.discard(local_job)
            except Exception:
                pass
    except Exception:
        with _agent._lock:
            released = key in _agent._released
        if released:
            return _reply(STATUS_POOL_RELEASED, 0, 0, 0.0, b"")
        raise
    finally:
        _agent.done_with(local)


def _cancelled(worker: Worker, dask_key: Optional[Key]) -> bool:
    """Whether the Dask task running this call was cancelled (released by
    the scheduler: the client cancelled it, terminated its pool or went
    away). A Dask worker that retires gracefully lets it finish; one that
    dies takes the local children with it."""
    if dask_key is None:
        return False
    ts = worker.state.tasks.get(dask_key)
    return ts is None or ts.state in ("cancelled", "released", "forgotten")

