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
import threading
from multiprocessing import context, process
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

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

    def __init__(self) -> None:
        self.fds: List[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        if fd not in self.fds:
            self.fds.append(fd)
        return FIRST_INHERITED_FD + self.fds.index(fd)

    def dumps(self, obj: Any) -> bytes:
        """Pickle obj for the new process. If this process runs the stdlib's
        resource tracker, the new process shares it (as spawned children
        do): it is set up before anything in obj is unpickled."""
        tracker_fd = _resource_tracker_fd()
        if tracker_fd is not None:
            obj = _TrackerFirst(self.duplicate_for_child(tracker_fd), obj)
        previous = context.get_spawning_popen()
        # Not a Popen: what pickling asks of one (duplicate_for_child, DupFd).
        context.set_spawning_popen(self)  # type: ignore[arg-type]
        try:
            return ser.dumps(obj, ser.process_reducers())
        finally:
            context.set_spawning_popen(previous)


def duplicate_for_child(fd: int) -> int:
    """fd as the process being created will see it: what an object shared by
    inheritance pickles as, once ``context.assert_spawning`` has passed."""
    popen = context.get_spawning_popen()
    assert popen is not None, "no process is being created"
    return popen.duplicate_for_child(fd)


def _resource_tracker_fd() -> Optional[int]:
    """The descriptor of the stdlib's resource tracker, if one runs for this
    process (it is started on first need: a SharedMemory, a named lock)."""
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is None:
        return None
    fd: Optional[int] = tracker._resource_tracker._fd
    return fd


class _TrackerFirst:
    """Pickles as obj, after a step that makes the new process use its
    parent's resource tracker: segments and semaphores that the child
    opens are then removed when the parent's tracker ends, not when the
    child exits (a tracker of the child's own would remove them then)."""

    def __init__(self, fd_in_child: int, obj: Any):
        self.fd_in_child = fd_in_child
        self.obj = obj

    def __reduce__(self) -> Tuple[Callable[[Any, Any], Any], Tuple[_UseTracker, Any]]:
        # A tuple's items are unpickled in order: the tracker first.
        return (_second, (_UseTracker(self.fd_in_child), self.obj))


class _UseTracker:
    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self) -> Tuple[Callable[[int], None], Tuple[int]]:
        return (_use_resource_tracker, (self.fd,))


def _use_resource_tracker(fd: int) -> None:
    from multiprocessing import resource_tracker

    # _fd is private to the tracker: typeshed does not declare it
    if resource_tracker._resource_tracker._fd is None:  # type: ignore[attr-defined]
        resource_tracker._resource_tracker._fd = fd  # type: ignore[attr-defined]


def _second(_: Any, obj: Any) -> Any:
    return obj


def preparation() -> Dict[str, Any]:
    """What a child needs from its parent before it unpickles anything."""
    data: Dict[str, Any] = {
        "sys_path": list(sys.path),
        "sys_argv": list(sys.argv),
        "authkey": bytes(process.current_process().authkey),
        "parent_name": process.current_process().name,
    }
    gopool_context = sys.modules.get("gopool.context")
    if gopool_context is not None:
        data["start_method"] = gopool_context.get_start_method(allow_none=True)
    data["main"] = _main_module_source()
    return data


def _main_module_source() -> Optional[Tuple[str, str]]:
    """Where the parent's ``__main__`` comes from, as the stdlib's spawn
    finds it: ("name", module) for ``python -m module``, ("path", file) for
    a script, None for an interactive session or ``python -c``."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return ("name", name)
    path = getattr(main, "__file__", None)
    if path is None:
        return None
    original_dir: Optional[str] = process.ORIGINAL_DIR  # type: ignore[attr-defined]  # not in typeshed
    if not os.path.isabs(path) and original_dir is not None:
        path = os.path.join(original_dir, path)
    return ("path", os.path.normpath(path))


def prepare(data: Dict[str, Any]) -> None:
    """Apply preparation() in the child."""
    sys.path[:] = data["sys_path"]
    sys.argv[:] = data["sys_argv"]
    current = process.current_process()
    current.authkey = data["authkey"]
    current.name = data["parent_name"]
    if data.get("start_method") is not None:
        from gopool import context as gopool_context

        gopool_context.set_start_method(data["start_method"], force=True)
    if data.get("main") is not None:
        main = sys.modules["__main__"]
        main.__dict__["__getattr__"] = _MainOnDemand(*data["main"])


class _MainOnDemand:
    """The ``__getattr__`` of a child's ``__main__``.

    A child does not run its parent's main module, unlike the stdlib's
    spawn: what gopool sends from ``__main__`` travels by value. Objects
    pickled by the stdlib (a ``concurrent.futures`` task on its call queue,
    a ``Connection.send()``) name ``__main__.f`` by reference, though: the
    first lookup of a name the child's ``__main__`` lacks imports the
    parent's main module as ``__mp_main__``, as spawn does at start (so
    its ``if __name__ == "__main__":`` part does not run), and makes it the
    child's ``__main__``.
    """

    def __init__(self, kind: str, where: str):
        self._source = {"init_main_from_" + kind: where}
        self._lock = threading.RLock()  # a lookup made by the import itself
        self._tried = False

    def __call__(self, name: str) -> Any:
        if not name.startswith("__"):
            with self._lock:
                tried, self._tried = self._tried, True
                if not tried:
                    self._import_main()
            main = sys.modules["__main__"]
            if main.__dict__.get("__getattr__") is not self:
                return getattr(main, name)
        raise AttributeError(f"module '__main__' has no attribute {name!r}")

    def _import_main(self) -> None:
        from multiprocessing import spawn

        current = process.current_process()
        inheriting = getattr(current, "_inheriting", False)
        # _inheriting: the stdlib's private flag (not in typeshed)
        current._inheriting = True  # type: ignore[attr-defined]  # starting a process now is an error
        try:
            spawn.prepare(self._source)
        finally:
            current._inheriting = inheriting  # type: ignore[attr-defined]


def check_not_importing_main() -> None:
    """Refuse to start a process while the main module is being imported
    in a child (a script without the ``if __name__ == "__main__":``
    guard would otherwise start processes without end), as the stdlib's
    spawn does."""
    if getattr(process.current_process(), "_inheriting", False):
        raise RuntimeError(
            "An attempt has been made to start a new process before the current process "
            "has finished its bootstrapping phase: the main module is being imported in a "
            "child process, and it starts processes at import. Guard the code that starts "
            "them with 'if __name__ == \"__main__\":' (see \"Safe importing of main module\" "
            "in the multiprocessing documentation)."
        )


_executable: Optional[str] = None  # set_executable(); None: sys.executable


def set_executable(executable: Union[str, bytes, "os.PathLike[str]"]) -> None:
    """Run the interpreter of the processes the core starts from executable
    instead of sys.executable."""
    global _executable
    _executable = os.fsdecode(executable)


def pack_fds(fds: List[int]) -> bytes:
    return b"".join(int(fd).to_bytes(8, "little") for fd in fds)


def _python_command(code: str) -> List[str]:
    """This interpreter with its flags, running code after putting gopool's
    own location first on sys.path (so that gopool is found whatever the
    environment says)."""
    import subprocess

    check_not_importing_main()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {package_parent!r}); {code}"
    flags: List[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]  # private
    return [_executable or sys.executable, *flags, "-c", code]


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
