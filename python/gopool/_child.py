"""The entry point of a process started for gopool.Process.

fd 3 is a pipe from the core: one init message ([8-byte length][payload]:
preparation data, then the pickled Process object), then nothing until the
parent dies, so it doubles as the parent sentinel. fd 4 is the write end of
the pipe whose read end is the parent's sentinel for this process. The
inherited descriptors of shared objects are fds 5, 6, ...
"""

from __future__ import annotations

import os
import sys
from multiprocessing import process

from gopool import _serialize as ser
from gopool import _spawning

INIT_FD = 3
SENTINEL_FD = 4


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the parent closed the init pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def main() -> None:
    for fd in (INIT_FD, SENTINEL_FD):
        os.set_inheritable(fd, False)
    (length,) = ser.LEN.unpack(_read_exactly(INIT_FD, ser.LEN.size))
    prep_part, process_part = ser.unpack(_read_exactly(INIT_FD, length))
    _spawning.prepare(ser.loads(prep_part))
    current = process.current_process()
    # the stdlib's flag for "unpickling the process object" (private, not in typeshed)
    current._inheriting = True  # type: ignore[attr-defined]
    try:
        process_obj = ser.loads(process_part)
    finally:
        del current._inheriting  # type: ignore[attr-defined]
    if sys.version_info < (3, 10):
        _keep_finalizers_through_bootstrap()
    sys.exit(process_obj._bootstrap(parent_sentinel=INIT_FD))


class _Restorer:
    """The object an after-fork callback hangs on (the registry holds it weakly)."""


_restorer = _Restorer()


def _keep_finalizers_through_bootstrap() -> None:
    """Python 3.9's ``_bootstrap`` clears multiprocessing's finalizers (later
    versions call ``Process._after_fork``, which gopool's Process makes a
    no-op): those the unpickled arguments registered (gopool's locks close
    their core objects through them at a normal exit) are put back by an
    after-fork callback, which 3.9's ``_bootstrap`` runs right after."""
    from multiprocessing import util

    # the registry is private to multiprocessing.util (not in typeshed)
    saved = dict(util._finalizer_registry)  # type: ignore[attr-defined]
    util.register_after_fork(_restorer, lambda _: util._finalizer_registry.update(saved))  # type: ignore[attr-defined]


