"""The one door to gopool's Go core.

Every call into Go goes through this module: it loads the gopy extension
(which starts the Go runtime, so only on first use, and never in a pool
worker), refuses to call Go in a child made by ``os.fork()``, turns the
core's error codes into exceptions from one table, waits in bounded slices,
and owns the shared buffers through which data crosses.

The extension (built by setup.py with gopy from the Go package ``pybind``)
is the subpackage ``gopool._gobind``: ``_core`` (the Go runtime and the
CPython glue), ``pybind`` (gopy's wrapper module) and ``go`` (gopy's Go
types). setup.py patches the generated modules so that importing them does
not change the working directory or install gopy's ``gc.callbacks`` hook;
this module checks both anyway.

Calls. ``lib.X`` is the extension's own entry point for the Go function
``pybind.X``; gopy's generated wrapper modules (which only forward their
arguments, and cost tens of milliseconds to import) are not used. The GIL
is released around every Go call; a call costs about 0.2-0.4 µs.
Go errors arrive as ``RuntimeError("E<code>: text")`` and :func:`call` and
:func:`translate` turn them into the exceptions of ``_EXCEPTIONS``.

Data. Hot paths pass integers only: bytes cross through a
:class:`Buffer`, a memory file that Go and Python both map, so a call is
one copy on each side and no allocation. :func:`go_bytes` (gopy ``[]byte``
handles, one Go allocation and copy each, about 1 µs plus 0.2 µs/KiB) is
for rare calls (starting a pool or a process). An empty ``[]byte`` result,
or anything but ``bytes`` given to gopy, would abort the process: no
function here returns ``[]byte``, and go_bytes checks its arguments.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import re
import threading
import time
import types
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Type

from gopool import _wire

SLICE_MS = 100  # the longest a call into Go blocks: Ctrl-C stays responsive

# -- the fork guard ---------------------------------------------------------

_forked_child = False


def _mark_forked_child() -> None:
    # Only a runtime that was started is lost: a child of a process that
    # never called Go may start its own.
    global _forked_child
    _forked_child = _forked_child or _started_here


os.register_at_fork(after_in_child=_mark_forked_child)


def in_forked_child() -> bool:
    """Whether this process is a child made by os.fork() of one that had
    loaded the Go runtime (it cannot use it)."""
    return _forked_child


def check_not_forked() -> None:
    """Raise ForkedChildError in a child that must not call Go."""
    if _forked_child:
        from gopool._errors import ForkedChildError

        raise ForkedChildError(
            "gopool cannot be used in a process created by os.fork() after gopool's "
            "Go core started in its parent: the Go runtime does not survive fork(). "
            "Create pools and queues in the child itself after an exec (e.g. a "
            "'spawn' multiprocessing context), or use gopool.Pool's own workers."
        )


# -- loading ------------------------------------------------------------------


class _Library:
    """The core's functions, loaded on first use: the extension's own entry
    points (``pybind_X`` for the Go function ``X``). gopy's generated
    wrapper modules are not imported: they only forward their arguments,
    and importing them costs tens of milliseconds."""

    def __init__(self) -> None:
        self._loaded = False

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self._loaded:
            raise AttributeError(f"the Go core has no function {name!r}")
        self._load()
        function: Callable[..., Any] = getattr(self, name)
        return function

    def _load(self) -> None:
        check_not_forked()
        global _started_here, _ext
        _ext = _import_extension()
        for attr in dir(_ext):
            if attr.startswith("pybind_"):
                setattr(self, attr[len("pybind_"):], getattr(_ext, attr))
        self._loaded = True
        _started_here = True


_started_here = False  # the Go runtime runs in this process
_ext: Any = None  # the extension module, once loaded


def _import_extension() -> types.ModuleType:
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was deleted: nothing to restore
        cwd = None
    try:
        from gopool._gobind import _core
    finally:
        if cwd is not None:
            try:
                unchanged = os.getcwd() == cwd
            except OSError:
                unchanged = False
            if not unchanged:
                os.chdir(cwd)
    # gopy's generated modules install a hook that runs a full Go GC after
    # every Python GC (_gopy_gc_cb); they are not imported, but remove any
    # such hook anyway.
    gc.callbacks[:] = [cb for cb in gc.callbacks if getattr(cb, "__name__", "") != "_gopy_gc_cb"]
    extension: types.ModuleType = _core
    return extension


lib = _Library()


def go_started() -> bool:
    """Whether the Go runtime was started in this process."""
    return _started_here


@contextlib.contextmanager
def go_bytes(*items: bytes) -> Iterator[List[int]]:
    """Go ``[]byte`` copies of items (which must be bytes), as the handles
    the extension's functions take, valid inside the ``with`` block."""
    for data in items:
        if type(data) is not bytes:
            raise TypeError("expected bytes, got %s" % type(data).__name__)
    lib.BufferNew  # loads the extension
    handles = []
    try:
        for data in items:
            handle = _ext.Slice_byte_from_bytes(data)
            _ext.IncRef(handle)
            handles.append(handle)
        yield handles
    finally:
        for handle in handles:
            _ext.DecRef(handle)


# -- errors -------------------------------------------------------------------

_CODE = re.compile(r"E(\d+): ")

# What each code of pybind/errors.go becomes.
_EXCEPTIONS: Dict[int, Type[BaseException]] = {
    _wire.CODE_INTERNAL: RuntimeError,
    _wire.CODE_RELEASED: ValueError,
    _wire.CODE_UNKNOWN_JOB: KeyError,
    _wire.CODE_CANNOT_START: OSError,
    _wire.CODE_OS: OSError,
    _wire.CODE_BAD_ARGUMENT: ValueError,
    _wire.CODE_ITEM_TOO_LARGE: ValueError,
    _wire.CODE_RING_FULL: MemoryError,
    _wire.CODE_TASK_DONE: ValueError,
    _wire.CODE_JOB_SEALED: ValueError,
    _wire.CODE_LOCK_BUSY: RuntimeError,  # handled by the callers: call again
    _wire.CODE_RELEASED_TOO_MANY: ValueError,
    _wire.CODE_TOO_MANY_WAITERS: RuntimeError,
}


class CoreError(Exception):
    """Mixed into every exception translated from the core: ``code`` is the
    core's error code."""

    code: int = 0


_translated: Dict[int, Type[BaseException]] = {}


def translate(exc: RuntimeError) -> BaseException:
    """The exception a core error stands for. Its class is a subclass of
    the table's class and of :class:`CoreError`, so callers can test the
    code (``exc.code``) as well as catch the ordinary exception."""
    message = str(exc)
    match = _CODE.match(message)
    if match is None:  # not from pybind: gopy's own errors
        return exc
    code = int(match.group(1))
    cls = _translated.get(code)
    if cls is None:
        base = _EXCEPTIONS.get(code, RuntimeError)
        cls = type(base.__name__, (base, CoreError), {"code": code, "__module__": base.__module__})
        _translated[code] = cls
    return cls(message[match.end():])


def call(func: Callable[..., Any], *args: Any) -> Any:
    """Call into Go, turning the core's errors into Python ones."""
    try:
        return func(*args)
    except RuntimeError as exc:
        raise translate(exc) from None


def has_code(exc: BaseException, code: int) -> bool:
    """Whether exc was translated from the core's error code."""
    return isinstance(exc, CoreError) and exc.code == code


# -- waiting in slices --------------------------------------------------------


def slices(block: bool, timeout: Optional[float]) -> Iterator[int]:
    """The timeouts (ms) of successive calls into Go for one blocking
    operation: SLICE_MS each while blocking without a timeout, then what is
    left of the timeout (ending with a 0 once it has passed); a single 0
    for a non-blocking operation."""
    if not block:
        yield 0
        return
    if timeout is None:
        while True:
            yield SLICE_MS
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        left = deadline - time.monotonic()
        yield min(max(int(left * 1000 + 0.999), 0), SLICE_MS)
        if left <= 0:
            return


def deadline_of(timeout: Optional[float]) -> Optional[float]:
    """The monotonic time at which timeout seconds (None: never) run out."""
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def slice_ms(deadline: Optional[float]) -> int:
    """How long the next call into Go may block (ms): a slice, or what is
    left before the deadline."""
    if deadline is None:
        return SLICE_MS
    return max(0, min(SLICE_MS, int((deadline - time.monotonic()) * 1000 + 0.999)))


def wait_until(step: Callable[[int], Any], timeout: Optional[float], done: Callable[[Any], bool] = bool) -> Any:
    """Call step(ms) in slices until done(its result) or timeout seconds
    pass; return the last result."""
    for ms in slices(True, timeout):
        out = step(ms)
        if done(out):
            return out
    return out


# -- shared buffers -------------------------------------------------------------

DEFAULT_BUFFER = 1 << 20  # a thread's buffer: memory is used only as far as written
KEEP_BUFFER = 16 << 20  # a larger buffer is dropped after use


class Buffer:
    """A memory file of the core, mapped here too: what a call reads or
    writes in bulk. ``view`` is a writable memoryview of it. One user at a
    time (``busy``); ``used`` is for the user to note how much it wrote."""

    __slots__ = ("id", "size", "view", "busy", "used", "__weakref__")

    def __init__(self, size: int):
        self.id = call(lib.BufferNew, size)
        try:
            mapping = mmap.mmap(call(lib.BufferFd, self.id), size)
        except BaseException:
            _release_buffer(self.id, None, None)
            raise
        self.size = size
        self.view = memoryview(mapping)
        self.busy = False
        self.used = 0
        weakref.finalize(self, _release_buffer, self.id, mapping, self.view)


def _release_buffer(buffer_id: int, mapping: Optional[mmap.mmap], view: Optional[memoryview]) -> None:
    try:
        if view is not None:
            view.release()
        if mapping is not None:
            mapping.close()
    except BufferError:
        pass  # a slice of it is still referenced (by a traceback, say): unmapped when that goes
    if not _forked_child:
        try:
            lib.BufferRelease(buffer_id)
        except Exception:
            pass


_local = threading.local()


def take_buffer(size: int = 0) -> Buffer:
    """This thread's buffer, marked busy, with room for size bytes; a
    temporary one if this thread's is busy (a signal handler, or code run by
    an unpickler, that makes a call in the middle of another). Give it back
    with ``buf.busy = False``."""
    buf = getattr(_local, "buffer", None)
    if buf is None or buf.busy or buf.size < size:
        buf = _new_buffer(size, buf)
    buf.busy = True
    return buf


def _new_buffer(size: int, current: Optional[Buffer]) -> Buffer:
    capacity = DEFAULT_BUFFER
    while capacity < size:
        capacity <<= 1
    buf = Buffer(capacity)
    if current is None or not current.busy:
        _local.buffer = buf if capacity <= KEEP_BUFFER else None
    return buf


def need_from(n: int) -> int:
    """The buffer size a call asked for by returning -(need+1)."""
    return -n - 1
