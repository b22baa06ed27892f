"""``Process``: the API of ``multiprocessing.Process``, started by the Go core.

A Process is a ``multiprocessing.process.BaseProcess`` whose child is
started with fork+exec by gopool's Go core (never a bare fork of a process
running Go). Everything the stdlib documents holds: name, daemon, pid,
exitcode (−N after signal N), sentinel, join(timeout), terminate(), kill(),
close(), is_alive(), ``active_children()``, ``current_process()`` and
``parent_process()`` in the child. Differences:

- the target and arguments travel by pickle, with cloudpickle for what pickle
  cannot send by reference (lambdas, functions defined in ``__main__``), so
  ``__main__`` is not re-imported in the child;
- ``terminate()``/``kill()`` before ``start()`` raise ``ValueError('process
  not started')`` instead of the stdlib's accidental AttributeError;
- a child dies when its parent dies, even by SIGKILL: no orphans.
"""

from __future__ import annotations

import os
import signal
import time
import weakref
from multiprocessing import process as _mp_process
from typing import Any, Optional

from gopool import _spawning
from gopool._core import SLICE_MS, _call, _lib, check_not_forked

__all__ = ["Process", "current_process", "parent_process", "active_children"]

current_process = _mp_process.current_process
parent_process = _mp_process.parent_process
active_children = _mp_process.active_children

_STILL_RUNNING = -(1 << 32)  # gopool/child.go, StillRunning


class _GoPopen:
    """The stdlib's Popen interface over a child of the Go core."""

    method = "gopool"

    def __init__(self, process_obj: "Process"):
        check_not_forked()
        from gopool._native import to_go_bytes

        self.returncode: Optional[int] = None
        spawning = _spawning.Spawning()
        payload = _spawning.ser.pack(
            _spawning.ser.dumps(_spawning.preparation()), spawning.dumps(process_obj)
        )
        self._id = _call(
            _lib().ChildStart,
            to_go_bytes(_spawning.ser.pack(*(os.fsencode(a) for a in _spawning.worker_command("gopool._child")))),
            to_go_bytes(_spawning.environment()),
            os.getcwd(),
            to_go_bytes(payload),
            to_go_bytes(_spawning.pack_fds(spawning.fds)),
        )
        self.pid = int(_call(_lib().ChildPid, self._id))
        self.sentinel = int(_call(_lib().ChildSentinel, self._id))
        self._release = weakref.finalize(self, _release_child, self._id)

    def poll(self, flag: int = os.WNOHANG) -> Optional[int]:
        if self.returncode is None:
            timeout = 0 if flag == os.WNOHANG else SLICE_MS
            while True:
                check_not_forked()
                code = int(_call(_lib().ChildWait, self._id, timeout))
                if code != _STILL_RUNNING:
                    self.returncode = code
                    break
                if timeout == 0:
                    break
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while self.returncode is None:
            left_ms = SLICE_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return self.poll()
            check_not_forked()
            code = int(_call(_lib().ChildWait, self._id, min(left_ms, SLICE_MS)))
            if code != _STILL_RUNNING:
                self.returncode = code
        return self.returncode

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None:
            check_not_forked()
            _call(_lib().ChildSignal, self._id, int(sig))

    def terminate(self) -> None:
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._send_signal(signal.SIGKILL)

    def close(self) -> None:
        self._release()


def _release_child(child_id: int) -> None:
    from gopool._core import in_forked_child

    if not in_forked_child():
        try:
            _call(_lib().ChildRelease, child_id)
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
        self._check_closed()
        if self._popen is None:
            raise ValueError("process not started")
