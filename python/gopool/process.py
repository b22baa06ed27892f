"""``Process``: the API of ``multiprocessing.Process``, started by the Go core.

A Process is a ``multiprocessing.process.BaseProcess`` whose child is
started with fork+exec by gopool's Go core (never a bare fork of a process
running Go). Everything the stdlib documents holds: name, daemon, pid,
exitcode (−N after signal N), sentinel, join(timeout), terminate(), kill(),
close(), is_alive(), ``active_children()``, ``current_process()`` and
``parent_process()`` in the child. Differences:

- the target and arguments travel by pickle, with cloudpickle for what pickle
  cannot send by reference (lambdas, functions defined in ``__main__``), so
  ``__main__`` is not re-imported in the child (unless an object pickled by
  the stdlib names it: see ``gopool._spawning``);
- ``terminate()``/``kill()`` before ``start()`` raise ``ValueError('process
  not started')`` instead of the stdlib's accidental AttributeError;
- a child dies when its parent dies, even by SIGKILL: no orphans.

At interpreter exit, multiprocessing's exit handler terminates the daemonic
children and joins the others, as with the stdlib.
"""

from __future__ import annotations

import os
import signal
import weakref
from multiprocessing import process as _mp_process
from typing import Any, Optional

from gopool import _spawning
from gopool import _binding as core
from gopool import _serialize as ser
from gopool import _wire

__all__ = ["Process", "current_process", "parent_process", "active_children"]

current_process = _mp_process.current_process
parent_process = _mp_process.parent_process
active_children = _mp_process.active_children

class _GoPopen:
    """The stdlib's Popen interface over a child of the Go core."""

    method = "gopool"

    def __init__(self, process_obj: "Process"):
        core.check_not_forked()
        self.returncode: Optional[int] = None
        spawning = _spawning.Spawning()
        payload = ser.pack(ser.dumps(_spawning.preparation()), spawning.dumps(process_obj))
        argv, zygote, entry = _spawning.start_arguments("gopool._child")
        fds = _spawning.pack_fds(spawning.fds)
        with core.go_bytes(argv, zygote, _spawning.environment(), payload, fds) as go:
            argv_h, zygote_h, env_h, payload_h, fds_h = go
            self._id = core.call(core.lib.ChildStart, argv_h, zygote_h, entry, env_h, os.getcwd(), payload_h, fds_h)
        self.pid = int(core.call(core.lib.ChildPid, self._id))
        self.sentinel = int(core.call(core.lib.ChildSentinel, self._id))
        self._release = weakref.finalize(self, _release_child, self._id)
        # Not at interpreter exit: multiprocessing's exit handler still has
        # to terminate, join and poll the children then.
        self._release.atexit = False

    def _wait(self, timeout_ms: int) -> Optional[int]:
        core.check_not_forked()
        code = int(core.call(core.lib.ChildWait, self._id, timeout_ms))
        if code != _wire.CHILD_STILL_RUNNING:
            self.returncode = code
        return self.returncode

    def poll(self, flag: int = os.WNOHANG) -> Optional[int]:
        if self.returncode is None:
            if flag == os.WNOHANG:
                return self._wait(0)
            return self.wait()
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        if self.returncode is None:
            core.wait_until(self._wait, timeout, lambda code: code is not None)
        return self.returncode

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None:
            core.check_not_forked()
            core.call(core.lib.ChildSignal, self._id, int(sig))

    def terminate(self) -> None:
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._send_signal(signal.SIGKILL)

    def close(self) -> None:
        self._release()


def _release_child(child_id: int) -> None:
    if not core.in_forked_child():
        try:
            core.call(core.lib.ChildRelease, child_id)
        except Exception:
            pass


class Process(_mp_process.BaseProcess):
    """A process running ``target(*args, **kwargs)`` (or an overridden
    ``run()``), with the API of ``multiprocessing.Process``."""

    _start_method = None  # the stdlib would look it up among its own start methods

    @staticmethod
    def _Popen(process_obj: "Process") -> _GoPopen:
        return _GoPopen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        pass

    def terminate(self) -> None:
        """Send SIGTERM to the process."""
        self._check_started()
        super().terminate()

    def kill(self) -> None:
        """Send SIGKILL to the process."""
        self._check_started()
        super().kill()

    def _check_started(self) -> None:
        # BaseProcess's own (private, not in typeshed)
        self._check_closed()  # type: ignore[attr-defined]
        if self._popen is None:  # type: ignore[attr-defined]
            raise ValueError("process not started")
