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
import itertools
import pickle
import struct
from collections import ChainMap
from typing import Any, Callable, Dict, List, MutableMapping, Optional, Tuple, Union

# What unpack() and loads() read: a pickle or records, whole or a slice of a buffer.
BytesLike = Union[bytes, bytearray, memoryview]

# A pickler's dispatch table: the reduce function of each type.
Reducers = MutableMapping[type, Callable[[Any], Any]]

PROTOCOL = pickle.HIGHEST_PROTOCOL
LEN = struct.Struct("<Q")  # the length of a record

# Task modes: how a worker applies the function to the task's arguments.
MODE_APPLY = 0  # func(*args, **kwds)
MODE_MAP = 1  # [func(x) for x in args]
MODE_STARMAP = 2  # [func(*x) for x in args]


def call_task(func: Callable[..., Any], args: Any, kwds: Any, mode: int) -> Any:
    """Run one task as its mode says."""
    if mode == MODE_APPLY:
        return func(*args, **kwds)
    if mode == MODE_MAP:
        return list(map(func, args))
    return list(itertools.starmap(func, args))


def dumps(obj: Any, reducers: Optional[Reducers] = None) -> bytes:
    """Pickle obj so that another gopool process can load it.

    reducers, if given, are used before copyreg's (the stdlib's process
    objects such as connections pickle only through such reducers).
    """
    try:
        if reducers is None:
            data = pickle.dumps(obj, PROTOCOL)
        else:
            data = _dumps_with(pickle.Pickler, copyreg.dispatch_table, obj, reducers)
    except Exception:
        return _cloud_dumps(obj, reducers)
    if b"__main__" in data:
        return _cloud_dumps(obj, reducers)
    return data


_picklers: Dict[Tuple[type, int], Tuple[Reducers, Any]] = {}


def _dumps_with(base: type, base_table: Reducers, obj: Any, reducers: Reducers) -> bytes:
    """Pickle with a subclass of base whose dispatch table puts reducers
    before base_table. A subclass, not an instance attribute: the C pickler
    reads its dispatch_table when it is created, and a subclass's instance
    attribute would not reach it. The classes are made once per reducers
    mapping (which may grow: the ChainMap sees it)."""
    key = (base, id(reducers))
    entry = _picklers.get(key)
    if entry is None or entry[0] is not reducers:
        entry = (reducers, type("_Pickler", (base,), {"dispatch_table": ChainMap(reducers, base_table)}))
        _picklers[key] = entry
    buffer = io.BytesIO()
    entry[1](buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


# Parts of a pickle at least this large are kept apart by dumps_parts.
BIG_PART = 1 << 20


class _PartsWriter:
    """The file a pickler writes to for dumps_parts: the pickler writes the
    payload of a large bytes, bytearray or str in one write of its own,
    which is kept as a part of its own (the bytes object itself, no copy);
    everything else is gathered into small parts."""

    __slots__ = ("parts", "small")

    def __init__(self) -> None:
        self.parts: List[bytes] = []
        self.small = bytearray()

    def write(self, data: Any) -> int:
        n = data.nbytes if type(data) is memoryview else len(data)
        if n < BIG_PART:
            self.small += data
            return n
        if self.small:
            self.parts.append(bytes(self.small))
            self.small = bytearray()
        self.parts.append(data if type(data) is bytes else bytes(data))
        return n

    def finish(self) -> List[bytes]:
        if self.small:
            self.parts.append(bytes(self.small))
        return self.parts

    def names_main(self) -> bool:
        """Whether the pickle refers to __main__: the large parts are raw
        data, so only the small ones (the opcodes) can."""
        return any(b"__main__" in part for part in self.parts if len(part) < BIG_PART)


def dumps_parts(obj: Any) -> List[bytes]:
    """dumps(obj) as a list of parts whose concatenation is the pickle,
    with the payload of every large bytes-like object a part of its own,
    not copied. For arguments that hold large buffers."""
    writer = _PartsWriter()
    try:
        pickle.Pickler(writer, PROTOCOL).dump(obj)
        parts = writer.finish()
        if not writer.names_main():
            return parts
    except Exception:
        pass
    import cloudpickle

    writer = _PartsWriter()
    cloudpickle.CloudPickler(writer, PROTOCOL).dump(obj)
    return writer.finish()


def holds_big_buffer(args: Any) -> bool:
    """Whether args (a tuple of arguments, or a dict of them) holds a large
    bytes, bytearray or str at its first level."""
    values = args.values() if type(args) is dict else args
    return any(type(v) in _BIG_TYPES and len(v) >= BIG_PART for v in values)


_BIG_TYPES = frozenset((bytes, bytearray, str))


def _cloud_dumps(obj: Any, reducers: Optional[Reducers] = None) -> bytes:
    import cloudpickle  # imported on first need: workers often never need it

    if reducers is None:
        data: bytes = cloudpickle.dumps(obj, PROTOCOL)
        return data
    return _dumps_with(cloudpickle.CloudPickler, cloudpickle.CloudPickler.dispatch_table, obj, reducers)


loads = pickle.loads

# Types whose pickle cannot hold anything that needs the stdlib's process
# reducers or cloudpickle: pickled at once.
_PLAIN = frozenset({int, float, complex, str, bytes, bytearray, bool, type(None)})


def process_reducers() -> Reducers:
    """The reducers of multiprocessing's ForkingPickler (connections,
    sockets...), which the stdlib's queues and process arguments use."""
    from multiprocessing.reduction import ForkingPickler

    reducers: Reducers = ForkingPickler._extra_reducers  # type: ignore[attr-defined]  # private
    return reducers


def dumps_item(obj: Any) -> bytes:
    """Pickle a queue item the way the stdlib's queues do (with the process
    reducers), and with cloudpickle for what pickle cannot send by reference."""
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, PROTOCOL)
    return dumps(obj, process_reducers())


def pack(*parts: bytes) -> bytes:
    """Join byte strings as [8-byte length][bytes] records."""
    if len(parts) == 2:  # the hot case: a task is (function, arguments)
        a, b = parts
        return LEN.pack(len(a)) + a + LEN.pack(len(b)) + b
    return b"".join(LEN.pack(len(p)) + p for p in parts)


def unpack(blob: BytesLike) -> List[memoryview]:
    """Split what pack joined."""
    parts: List[memoryview] = []
    view = memoryview(blob)
    pos = 0
    while pos < len(view):
        (n,) = LEN.unpack_from(view, pos)
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
    return encoding_error(pickling_error, exc)


def encoding_error(error: Exception, value: Any) -> BaseException:
    """The stdlib's MaybeEncodingError for a value that could not be
    pickled. Its message holds the value's repr; for a value whose repr
    fails too (a structure nested too deep) a shortened repr stands in."""
    from gopool._errors import MaybeEncodingError

    try:
        return MaybeEncodingError(error, value)
    except Exception:
        import reprlib

        return MaybeEncodingError(error, _Repr(reprlib.repr(value)))


class _Repr:
    """An object whose repr is a given text."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def loads_exception(payload: BytesLike) -> BaseException:
    """Rebuild an exception from dumps_exception, with the remote traceback as
    its ``__cause__`` (as the stdlib's process pools do)."""
    from gopool._errors import RemoteTraceback

    tb_part, exc_part = unpack(payload)
    tb = loads(tb_part)
    try:
        exc: BaseException = loads(exc_part)
    except Exception as unpickling_error:
        exc = RuntimeError(f"the task's exception could not be unpickled: {unpickling_error!r}")
    exc.__cause__ = RemoteTraceback('\n"""\n%s"""' % tb)
    return exc
