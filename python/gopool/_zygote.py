"""The zygote: a warm interpreter that starts gopool's processes by forking.

The Go core execs it once per parent (and interpreter command), on first
use, and keeps it for the parent's life. Each request asks it to fork a
child that runs a gopool entry point (``gopool._worker`` for pool workers,
``gopool._child`` for ``Process``) with the descriptors, environment,
directory and process group of the request; the reply carries the child's
pid and a pidfd. It reaps its children and reports how each ended. The
protocol is in gopool/zygote.go.

It never loads the Go runtime and runs a single thread, so its forks are
safe. It dies with its parent (PR_SET_PDEATHSIG, set by the core), and its
children die with it.
"""

from __future__ import annotations

import atexit
import fcntl
import gc
import importlib
import os
import select
import signal
import socket
import struct
import sys
import traceback
from typing import List, Optional, Union

from gopool import _channel, _serialize

SOCKET_FD = 3
MAX_MESSAGE = 1 << 20
MAX_FDS = 64

_FORK = 1
_FORKED = 2
_FAILED = 3
_EXITED = 4

_FORK_HEADER = struct.Struct("<BQq")  # kind, request, process group (0: a new one)
_FORKED_MESSAGE = struct.Struct("<BQq")  # kind, request, pid
_FAILED_HEADER = struct.Struct("<BQ")  # kind, request; then the reason
_EXITED_MESSAGE = struct.Struct("<Bqii")  # kind, pid, exit code, signal


# What children need beyond a worker's own modules, imported here once, one
# module at a time while no request waits (so that the first requests are
# answered at once): gopool's modules (a Process object's class, the
# exceptions and their stdlib bases) and cloudpickle. None of them starts
# the Go runtime.
_PRELOAD = ["gopool._child", "gopool.process", "gopool.queues", "gopool.synchronize", "gopool.pool",
            "cloudpickle"]


_own_environment: List[str] = []


def main() -> None:
    from gopool import _worker  # noqa: F401  (what every pool worker needs)

    global _own_environment
    _own_environment = [f"{name}={value}" for name, value in os.environ.items()]

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=SOCKET_FD)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    preload = list(_PRELOAD)
    watched: List[Union[socket.socket, int]] = [sock, wake_r]
    while True:
        ready = select.select(watched, [], [], 0 if preload else None)[0]
        if not ready and preload:
            _preload(preload.pop(0))
            if not preload:
                # Its objects are the children's too: the children's
                # collections leave them alone, so their pages stay shared.
                gc.freeze()
            continue
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
            _reap(sock)
        if sock in ready:
            try:
                message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
            except InterruptedError:
                continue
            if not message:
                os._exit(0)  # the parent is gone
            _fork(sock, wake_r, wake_w, message, fds)


def _preload(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        pass  # the child will say what is missing, if it needs it


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status):
            code, sig = -1, os.WTERMSIG(status)
        else:
            code, sig = os.waitstatus_to_exitcode(status), 0
        sock.send(_EXITED_MESSAGE.pack(_EXITED, pid, code, sig))


def _fork(sock: socket.socket, wake_r: int, wake_w: int, message: bytes, fds: List[int]) -> None:
    kind, request, pgid = _FORK_HEADER.unpack_from(message)
    try:
        if kind != _FORK or len(fds) < 3:
            raise ValueError(f"bad request (kind {kind}, {len(fds)} descriptors)")
        entry, directory, *env = (bytes(part).decode("utf-8", "surrogateescape")
                                   for part in _serialize.unpack(memoryview(message)[_FORK_HEADER.size:]))
        zygote = os.getpid()
        # Most often the parent's environment is the zygote's own: the child
        # then keeps it, and no page of os.environ is copied or rewritten.
        pid = os.fork()
        if pid == 0:
            _run_child(zygote, entry, directory, None if env == _own_environment else env, fds, pgid)
        try:
            os.setpgid(pid, pgid or pid)  # as the child does: whichever runs first
        except OSError:
            pass  # it is gone already
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(sock, [_FORKED_MESSAGE.pack(_FORKED, request, pid)], [pidfd])
        finally:
            os.close(pidfd)
    except Exception as exc:
        sock.send(_FAILED_HEADER.pack(_FAILED, request) + repr(exc).encode())
    finally:
        for fd in fds:
            os.close(fd)


def _run_child(zygote: int, entry: str, directory: str, env: Optional[List[str]], fds: List[int],
               pgid: int) -> None:
    """In the forked child of the process zygote: become the requested
    process, run entry, exit."""
    code = 1
    try:
        _channel.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != zygote:
            # The zygote died before the death signal was set (even before
            # this child first ran, on a busy machine): no orphan.
            os._exit(1)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, pgid)
        _place_fds(fds)
        os.chdir(directory)
        if env is not None:
            _set_environment(env)
        code = _run(entry)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _set_environment(env: List[str]) -> None:
    """Make os.environ the parent's."""
    os.environ.clear()
    os.environ.update((name, value) for name, _, value in (kv.partition("=") for kv in env if "=" in kv))


def _place_fds(fds: List[int]) -> None:
    """Give the child its descriptors: all but the last three as 3, 4, ...,
    the last three as stdin, stdout and stderr; close every other."""
    # First out of the way of the targets, then into place.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(fds)) for fd in fds]
    *own, stdin, stdout, stderr = moved
    for target, fd in enumerate([stdin, stdout, stderr] + own):
        os.dup2(fd, target)
    keep = 3 + len(own)
    for name in os.listdir("/proc/self/fd"):
        if int(name) >= keep:
            try:
                os.close(int(name))
            except OSError:
                pass  # the directory's own descriptor


def _run(entry: str) -> int:
    """Run entry's main() as a program would run: its exit code, atexit
    handlers, flushed stdio (the interpreter's own teardown is skipped, as
    after the stdlib's fork start method)."""
    try:
        importlib.import_module(entry).main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return code


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1

