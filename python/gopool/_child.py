"""The entry point of a process started for gopool.Process.

fd 3 carries one init frame (preparation data, then the pickled Process
object) and stays open until the parent dies: it is the parent sentinel.
The inherited descriptors of shared objects are fds 5, 6, ...
"""

from __future__ import annotations

import os
import sys
from multiprocessing import process

from gopool import _serialize as ser
from gopool import _spawning
from gopool._worker import KIND_INIT, TASK_FD, RESULT_FD, _FrameReader


def main() -> None:
    for fd in (TASK_FD, RESULT_FD):
        os.set_inheritable(fd, False)
    first = _FrameReader(TASK_FD).read()
    if first is None or first[0] != KIND_INIT:
        sys.exit(2)
    prep_part, process_part = ser.unpack(first[2])
    _spawning.prepare(ser.loads(prep_part))
    current = process.current_process()
    current._inheriting = True
    try:
        process_obj = ser.loads(process_part)
    finally:
        del current._inheriting
    sys.exit(process_obj._bootstrap(parent_sentinel=TASK_FD))
