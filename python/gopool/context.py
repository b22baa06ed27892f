"""Start-method contexts with the API of ``multiprocessing.context``.

``gopool.get_context(method)`` returns an object with the methods of a
``multiprocessing`` context (``Process``, ``Pool``, ``Queue``, ``Event``,
``Lock``, ``Value``, ``Manager``, ``Pipe``, ``get_start_method()``...), so
that code written against a context, and ``concurrent.futures.
ProcessPoolExecutor(mp_context=...)``, works unchanged:

- ``None``, ``'spawn'`` and ``'forkserver'`` give gopool's context under
  that name: its ``Process``, ``Pool``, ``Queue``, ``JoinableQueue``,
  ``SimpleQueue``, ``Event`` and locks are gopool's. Whatever the name,
  gopool starts children and pool workers by fork+exec of a fresh
  interpreter: arguments travel by pickle (cloudpickle for functions
  defined in ``__main__``), as with 'spawn', and ``__main__`` is not
  re-imported. What gopool does not implement itself comes from the
  stdlib and is bound to this context, so it works with gopool's
  processes: ``Value``/``Array`` (their lock is gopool's), ``RawValue``/
  ``RawArray``, ``Pipe``, ``Manager`` (its server is a gopool Process).
- ``'fork'`` gives the stdlib's own fork context
  (``multiprocessing.get_context('fork')``), everything in it included:
  only a bare ``fork()`` gives fork's semantics (children inherit the
  parent's memory, unpicklable objects and all), and gopool's Go core does
  not survive one. gopool's own objects (``gopool.Queue``,
  ``gopool.Event``...) cannot be used in such children once gopool's core
  runs in the parent (``gopool.ForkedChildError``): use the fork context's
  objects with its processes.

``gopool.set_start_method(method)`` chooses what ``gopool.get_context()``
and ``gopool.get_start_method()`` return, with the stdlib's rules. It does
not change ``gopool.Process``, ``gopool.Pool`` and the other classes of the
``gopool`` module: they are always gopool's. The default start method is
``'spawn'``, the closest to how gopool starts processes.
"""

from __future__ import annotations

import sys
from multiprocessing import context as _mp_context
from multiprocessing.context import (  # noqa: F401  (re-exported)
    AuthenticationError,
    BaseContext,
    BufferTooShort,
    ProcessError,
    assert_spawning,
    get_spawning_popen,
    set_spawning_popen,
)
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple

from gopool import _errors
from gopool.process import Process

if TYPE_CHECKING:
    from gopool import synchronize
    from gopool.pool import Pool
    from gopool.queues import JoinableQueue, Queue, SimpleQueue

__all__ = [
    "GopoolContext",
    "BaseContext",
    "ProcessError",
    "BufferTooShort",
    "TimeoutError",
    "AuthenticationError",
    "assert_spawning",
    "get_spawning_popen",
    "set_spawning_popen",
    "get_context",
    "get_start_method",
    "set_start_method",
    "get_all_start_methods",
]

TimeoutError = _errors.TimeoutError


class GopoolContext(BaseContext):
    """A multiprocessing context whose objects are gopool's.

    A ``multiprocessing.context.BaseContext``: ``Process``, ``Pool``,
    ``Queue``, ``JoinableQueue``, ``SimpleQueue``, ``Event``, ``Lock``,
    ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition`` and
    ``Barrier`` are gopool's; the rest (``Value``, ``Array``, ``RawValue``,
    ``RawArray``, ``Pipe``, ``Manager``, loggers...) is the stdlib's, bound
    to this context. ``get_start_method()`` is the name it was asked for
    ('spawn' or 'forkserver'); gopool starts processes the same way for
    both (fork+exec).
    """

    Process = Process
    TimeoutError = _errors.TimeoutError

    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return f"<gopool context {self._name!r}>"

    def __reduce__(self) -> Tuple[Callable[[str], BaseContext], Tuple[str]]:
        return (get_context, (self._name,))

    # Below, [override]: this context's get_context(None) is itself (the
    # stdlib's gives its default context), and its queues, events and locks
    # are gopool's, not the stdlib classes BaseContext is declared to give.
    def get_context(self, method: Optional[str] = None) -> BaseContext:  # type: ignore[override]
        """This context (method None), or the one for method."""
        if method is None:
            return self
        return _context_for(method)

    def get_start_method(self, allow_none: bool = False) -> str:
        """The start method's name this context stands for."""
        return self._name

    def set_start_method(self, method: Optional[str], force: bool = False) -> None:
        raise ValueError("cannot set start method of concrete context")

    def get_all_start_methods(self) -> List[str]:
        """The start methods gopool accepts (see the module's documentation)."""
        return get_all_start_methods()

    def Pool(self, processes: Optional[int] = None, initializer: Optional[Callable[..., Any]] = None,
             initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None) -> Pool:
        """A gopool.Pool."""
        from gopool.pool import Pool

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self)

    def Queue(self, maxsize: int = 0) -> Queue[Any]:  # type: ignore[override]
        """A gopool.Queue."""
        from gopool.queues import Queue

        return Queue(maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> JoinableQueue[Any]:  # type: ignore[override]
        """A gopool.JoinableQueue."""
        from gopool.queues import JoinableQueue

        return JoinableQueue(maxsize)

    def SimpleQueue(self) -> SimpleQueue[Any]:  # type: ignore[override]
        """A gopool.SimpleQueue that can also be waited on like the stdlib's
        (``multiprocessing.connection.wait([q._reader])``, as
        ``concurrent.futures.ProcessPoolExecutor`` does)."""
        from gopool.queues import SimpleQueue

        return SimpleQueue(_waitable=True)

    def Event(self) -> synchronize.Event:  # type: ignore[override]
        """A gopool.Event."""
        from gopool.synchronize import Event

        return Event()

    def Lock(self) -> synchronize.Lock:  # type: ignore[override]
        """A gopool.Lock."""
        from gopool import synchronize

        return synchronize.Lock()

    def RLock(self) -> synchronize.RLock:  # type: ignore[override]
        """A gopool.RLock."""
        from gopool import synchronize

        return synchronize.RLock()

    def Semaphore(self, value: int = 1) -> synchronize.Semaphore:  # type: ignore[override]
        """A gopool.Semaphore."""
        from gopool import synchronize

        return synchronize.Semaphore(value)

    def BoundedSemaphore(self, value: int = 1) -> synchronize.BoundedSemaphore:  # type: ignore[override]
        """A gopool.BoundedSemaphore."""
        from gopool import synchronize

        return synchronize.BoundedSemaphore(value)

    def Condition(self, lock: Any = None) -> synchronize.Condition:  # type: ignore[override]
        """A gopool.Condition."""
        from gopool import synchronize

        return synchronize.Condition(lock)

    def Barrier(self, parties: int, action: Optional[Callable[[], Any]] = None,  # type: ignore[override]
                timeout: Optional[float] = None) -> synchronize.Barrier:
        """A gopool.Barrier."""
        from gopool import synchronize

        return synchronize.Barrier(parties, action, timeout)

    def set_executable(self, executable: str) -> None:
        """Use executable instead of sys.executable to run the interpreter
        of gopool's processes and pool workers."""
        set_executable(executable)


# (keyed by Optional[str]: _context_for looks up what set_start_method is given)
_contexts: Dict[Optional[str], GopoolContext] = {
    "spawn": GopoolContext("spawn"),
    "forkserver": GopoolContext("forkserver"),
}
_DEFAULT = "spawn"
_actual: Optional[BaseContext] = None  # chosen by set_start_method or first use


def _context_for(method: Optional[str]) -> BaseContext:
    if method == "fork" and sys.platform != "win32":
        fork: BaseContext = _mp_context._concrete_contexts["fork"]  # type: ignore[attr-defined]  # private
        return fork
    try:
        return _contexts[method]
    except (KeyError, TypeError):
        raise ValueError("cannot find context for %r" % (method,)) from None


def get_context(method: Optional[str] = None) -> BaseContext:
    """The context for method ('spawn', 'forkserver', 'fork'), or the
    current default (None); see the module's documentation."""
    global _actual
    if method is None:
        if _actual is None:
            _actual = _contexts[_DEFAULT]
        return _actual
    return _context_for(method)


def get_start_method(allow_none: bool = False) -> Optional[str]:
    """The default context's start method ('spawn' unless set otherwise).
    With allow_none, None if none was chosen yet."""
    global _actual
    if _actual is None:
        if allow_none:
            return None
        _actual = _contexts[_DEFAULT]
    return _actual.get_start_method()


def set_start_method(method: Optional[str], force: bool = False) -> None:
    """Choose the default context, as ``multiprocessing.set_start_method``
    does: RuntimeError('context has already been set') if it was chosen
    already, unless force; None with force forgets the choice."""
    global _actual
    if _actual is not None and not force:
        raise RuntimeError("context has already been set")
    if method is None and force:
        _actual = None
        return
    _actual = _context_for(method)


def get_all_start_methods() -> List[str]:
    """The start methods gopool accepts, the default first."""
    methods = ["spawn", "forkserver"]
    if sys.platform != "win32":
        methods.append("fork")
    return methods


def set_executable(executable: str) -> None:
    """Run gopool's processes and pool workers with executable instead of
    sys.executable (it must be this Python, e.g. a wrapper that execs it)."""
    from gopool import _spawning

    _spawning.set_executable(executable)


def set_forkserver_preload(module_names: List[str]) -> None:
    """Accepted for compatibility, and ignored: gopool has no fork server
    (each child is a fresh interpreter), so there is nothing to preload.
    TypeError if module_names is not a list of strings, as in the stdlib."""
    if not all(type(mod) is str for mod in module_names):
        raise TypeError("module_names must be a list of strings")
