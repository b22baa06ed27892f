"""Handing objects to a new process, the way the stdlib's spawn does.

Objects that may only be shared through inheritance (the stdlib's queues,
locks and events) pickle only while a "spawning popen" is set; the
descriptors they need are then passed to the new process. A
:class:`Spawning` plays that role while gopool pickles a Process object or a
Pool's initializer arguments; the Go core hands the collected descriptors
to the child as fds 5, 6, ... in the order listed here.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import context, process
from typing import Any, Dict, List

from gopool import _serialize as ser
from gopool import _wire

FIRST_INHERITED_FD = _wire.FIRST_INHERITED_FD


class _DupFd:
    """A descriptor as the child will see it."""

    def __init__(self, fd: int):
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class Spawning:
    """The pickling context for objects bound to a new process."""

    DupFd = _DupFd

    def __init__(self):
        self.fds: List[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        if fd not in self.fds:
            self.fds.append(fd)
        return FIRST_INHERITED_FD + self.fds.index(fd)

    def dumps(self, obj: Any) -> bytes:
        from multiprocessing.reduction import ForkingPickler

        previous = context.get_spawning_popen()
        context.set_spawning_popen(self)
        try:
            return ser.dumps(obj, ForkingPickler._extra_reducers)
        finally:
            context.set_spawning_popen(previous)


def preparation() -> Dict[str, Any]:
    """What a child needs from its parent before it unpickles anything."""
    return {
        "sys_path": list(sys.path),
        "sys_argv": list(sys.argv),
        "authkey": bytes(process.current_process().authkey),
        "parent_name": process.current_process().name,
    }


def prepare(data: Dict[str, Any]) -> None:
    """Apply preparation() in the child."""
    sys.path[:] = data["sys_path"]
    sys.argv[:] = data["sys_argv"]
    current = process.current_process()
    current.authkey = data["authkey"]
    current.name = data["parent_name"]


def pack_fds(fds: List[int]) -> bytes:
    return b"".join(int(fd).to_bytes(8, "little") for fd in fds)


def _python_command(code: str) -> List[str]:
    """This interpreter with its flags, running code after putting gopool's
    own location first on sys.path (so that gopool is found whatever the
    environment says)."""
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {package_parent!r}); {code}"
    return [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", code]


def worker_command(entry_module: str) -> List[str]:
    """The command line that runs entry_module's main() in a new interpreter."""
    return _python_command(f"from {entry_module} import main; main()")


def zygote_command() -> List[str]:
    """The command line of the zygote that forks gopool's processes (none if
    GOPOOL_ZYGOTE=0: every process then starts as a new interpreter)."""
    if os.environ.get("GOPOOL_ZYGOTE", "1") == "0":
        return []
    return _python_command("from gopool._zygote import main; main()")


def start_arguments(entry_module: str) -> List[Any]:
    """The arguments of the core's PoolNew and ChildStart that say how to
    start a process running entry_module: its command line, the zygote's,
    and the entry (records of bytes where the core wants them)."""
    argv = ser.pack(*(os.fsencode(a) for a in worker_command(entry_module)))
    zygote = ser.pack(*(os.fsencode(a) for a in zygote_command()))
    return [argv, zygote, entry_module]


def environment() -> bytes:
    return ser.pack(*(f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in os.environ.items()))
