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
from typing import Any, Callable, Dict, List, MutableMapping, Optional, Sequence, Tuple, Union

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


# Arguments at least this large travel beside their call's pickle (split_large).
BIG_PART = 1 << 20


class _Slot:
    """Stands in a task's pickle for a large argument that travels beside
    it, as a record of its own (see split_large)."""

    __slots__ = ("index", "kind")

    def __init__(self, index: int, kind: int):
        self.index, self.kind = index, kind

    def __reduce__(self) -> Tuple[Any, ...]:
        return _Slot, (self.index, self.kind)


_AS_BYTES, _AS_BYTEARRAY, _AS_STR = 0, 1, 2


def split_large(call: Tuple[Any, Any, int]) -> List[bytes]:
    """A call (arguments, keywords, mode) as [pickle, large, large...]: each
    large bytes, bytearray or str among the arguments (or a map chunk's
    items) and the keywords is taken out of the pickle, which holds a _Slot
    in its place, and travels as bytes of its own. A bytes argument is not
    copied here; the worker receives each one as a bytes object of its own
    (gopool._channel) and puts that very object in its slot (fill_large):
    no copy there either, and no second copy in memory."""
    args, kwds, mode = call
    large: List[bytes] = []

    def slot(value: Any) -> Any:
        kind = _LARGE_KINDS.get(type(value))
        if kind is None or len(value) < BIG_PART:
            return value
        if kind == _AS_BYTES:
            large.append(value)
        elif kind == _AS_BYTEARRAY:
            large.append(bytes(value))
        else:
            large.append(value.encode("utf-8", "surrogatepass"))
        return _Slot(len(large) - 1, kind)

    if type(args) in (tuple, list):
        args = type(args)(slot(v) for v in args)
    if type(kwds) is dict:
        kwds = {k: slot(v) for k, v in kwds.items()}
    return [dumps((args, kwds, mode)), *large]


def fill_large(call: Tuple[Any, Any, int], large: Sequence[bytes]) -> Tuple[Any, Any, int]:
    """Put split_large's large values back in their slots."""
    args, kwds, mode = call

    def fill(value: Any) -> Any:
        if type(value) is not _Slot:
            return value
        data = large[value.index]
        if value.kind == _AS_BYTES:
            return data
        if value.kind == _AS_BYTEARRAY:
            return bytearray(data)
        return data.decode("utf-8", "surrogatepass")

    if type(args) in (tuple, list):
        args = type(args)(fill(v) for v in args)
    if type(kwds) is dict:
        kwds = {k: fill(v) for k, v in kwds.items()}
    return args, kwds, mode


_LARGE_KINDS: Dict[type, int] = {bytes: _AS_BYTES, bytearray: _AS_BYTEARRAY, str: _AS_STR}


def holds_big_buffer(args: Any) -> bool:
    """Whether args (a tuple of arguments, or a dict of them) holds a large
    bytes, bytearray or str at its first level."""
    values = args.values() if type(args) is dict else args
    return any(type(v) in _LARGE_KINDS and len(v) >= BIG_PART for v in values)


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
