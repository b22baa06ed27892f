"""How gopool turns functions, arguments, results and errors into bytes.

Plain pickle is tried first because it is fast and exact. What it cannot do
by reference (lambdas, closures, functions and classes defined in
``__main__`` or a notebook cell) goes through cloudpickle, which sends them by
value. A pickle that names ``__main__`` is redone with cloudpickle too: a
worker's ``__main__`` is not the parent's, so such a reference would not
resolve there.

This module is imported by workers: it must stay light (no Go binding).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
from collections import ChainMap
from typing import Any, Mapping, Optional

PROTOCOL = pickle.HIGHEST_PROTOCOL
_LEN = struct.Struct("<Q")

# Task modes: how a worker applies the function to the task's arguments.
MODE_APPLY = 0  # func(*args, **kwds)
MODE_MAP = 1  # [func(x) for x in args]
MODE_STARMAP = 2  # [func(*x) for x in args]


def dumps(obj: Any, reducers: Optional[Mapping] = None) -> bytes:
    """Pickle obj so that another gopool process can load it.

    reducers, if given, are used before copyreg's (the stdlib's process
    objects such as connections pickle only through such reducers).
    """
    try:
        if reducers is None:
            data = pickle.dumps(obj, PROTOCOL)
        else:
            data = _dumps_with(pickle.Pickler, obj, ChainMap(reducers, copyreg.dispatch_table))
    except Exception:
        return _cloud_dumps(obj, reducers)
    if b"__main__" in data:
        return _cloud_dumps(obj, reducers)
    return data


def _dumps_with(pickler_class, obj: Any, dispatch_table: Mapping) -> bytes:
    # A subclass, not an instance attribute: the C pickler reads its
    # dispatch_table when it is created, and a subclass's instance
    # attribute would not reach it.
    pickler_class = type("_Pickler", (pickler_class,), {"dispatch_table": dispatch_table})
    buffer = io.BytesIO()
    pickler_class(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


def _cloud_dumps(obj: Any, reducers: Optional[Mapping] = None) -> bytes:
    import cloudpickle  # imported on first need: workers often never need it

    if reducers is None:
        return cloudpickle.dumps(obj, PROTOCOL)
    table = ChainMap(reducers, cloudpickle.CloudPickler.dispatch_table)
    return _dumps_with(cloudpickle.CloudPickler, obj, table)


loads = pickle.loads


def pack(*parts: bytes) -> bytes:
    """Join byte strings as [8-byte length][bytes] records."""
    if len(parts) == 2:  # the hot case: a task is (function, arguments)
        a, b = parts
        return _LEN.pack(len(a)) + a + _LEN.pack(len(b)) + b
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def unpack(blob) -> list:
    """Split what pack joined."""
    parts = []
    view = memoryview(blob)
    pos = 0
    while pos < len(view):
        (n,) = _LEN.unpack_from(view, pos)
        pos += 8
        parts.append(view[pos : pos + n])
        pos += n
    return parts


def dumps_exception(exc: BaseException) -> bytes:
    """Encode an exception raised in a worker with its formatted traceback.

    The traceback travels apart from the exception so that it survives an
    exception that cannot be pickled or unpickled.
    """
    import traceback  # only when a task fails: it is slow to import

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        exc_bytes = dumps(exc)
    except Exception as pickling_error:
        exc_bytes = dumps(_unpicklable_exception(exc, pickling_error))
    return pack(dumps(tb), exc_bytes)


def _unpicklable_exception(exc: BaseException, pickling_error: Exception) -> BaseException:
    from gopool._errors import MaybeEncodingError

    return MaybeEncodingError(pickling_error, exc)


def loads_exception(payload) -> BaseException:
    """Rebuild an exception from dumps_exception, with the remote traceback as
    its ``__cause__`` (as the stdlib's process pools do)."""
    from gopool._errors import RemoteTraceback

    tb_part, exc_part = unpack(payload)
    tb = loads(tb_part)
    try:
        exc = loads(exc_part)
    except Exception as unpickling_error:
        exc = RuntimeError(f"the task's exception could not be unpickled: {unpickling_error!r}")
    exc.__cause__ = RemoteTraceback('\n"""\n%s"""' % tb)
    return exc
