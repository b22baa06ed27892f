"""The one door to gopool's Go core: loads the gopy binding and smooths its sharp edges.

Nothing else imports ``gopool._gobind``. Importing this module starts the Go runtime
in this process, so only the parent imports it, lazily (workers started by the Go core
never need it, and a process that has the Go runtime must never ``fork()``).

Use::

    from gopool._native import lib, to_go_bytes, from_go_bytes
    lib.BuildCheck()                                   # -> 42
    out = from_go_bytes(lib.EchoBytes(to_go_bytes(b"payload")))

What the build produces (setup.py, gopy v0.5.0 with ``-name=core`` on the Go package
``./pybind``), installed as the subpackage ``gopool._gobind``:

- ``_core.<EXT_SUFFIX>.so``: the extension module ``_core`` (Go runtime + CPython glue;
  the name is ``"_" + -name``). It exports only ``PyInit__core`` and has no DT_NEEDED on
  libpython (``-dynamic-link=true``).
- ``pybind.py``: the wrapper module, named after the Go package clause (``package
  pybind``); it does ``from . import _core`` and ``from . import go``. This is ``lib``.
- ``go.py``: gopy's Go types (``Slice_byte`` ...), ``from . import _core``.
- ``__init__.py``: written by setup.py.
- Generated but not installed: ``core.go``, ``core.c``, ``build.py``, headers (they stay
  in build/_gopy/). ``-name`` must not start with "_": the go tool ignores such files.

Both generated modules, as gopy v0.5.0 writes them, ``os.chdir`` into their directory
during import and append a ``gc.callbacks`` hook that runs a full Go GC after every
Python collection (~4x slower allocation-heavy Python, and a Go call from every GC).
setup.py patches both out of the generated files; this module still restores the working
directory and removes any such hook, so a binding built without the patch behaves the same.

Go results and errors:

- A Go function may return nothing, one value, or ``(T, error)``; a non-nil error is
  raised as ``RuntimeError(err.Error())``. Never return a bare ``error`` (gopy leaks its
  C string).
- ``[]byte`` travels as a ``go.Slice_byte`` handle (an id in gopy's global registry,
  released when the Python object dies). Convert with ``to_go_bytes`` /
  ``from_go_bytes`` only, never with ``Slice_byte.from_bytes`` / ``bytes(s)`` directly:

  * In: ``Slice_byte.from_bytes(x)`` of anything but ``bytes`` (``str``, ``bytearray``,
    ``memoryview``, ``None``) aborts the process (Go panic "makeslice: len out of range":
    ``PyBytes_Size`` returns -1). ``to_go_bytes`` raises TypeError instead. An empty
    ``bytes`` is fine: Go receives a non-nil slice of length 0 (Go code must treat nil
    and empty alike anyway).
  * Out: ``bytes(s)`` of an empty Go slice aborts the process (Go panic "index out of
    range [0] with length 0" in gopy's ``Slice_byte_to_bytes``, which takes ``&s[0]``),
    whether the Go function returned ``nil`` or ``[]byte{}``. ``from_go_bytes`` asks the
    length first and returns ``b""``, so with it the Go side may return empty slices.
    The check costs one extra Go call (~0.15 us).

Measured (CPython 3.11.7, Go 1.26.8, 2-core x86_64 VM, timeit best of 7, three runs;
the machine is noisy, the large-payload figures vary by up to 1.6x between runs):

- Trivial call, ``lib.BuildCheck()``: 0.20 us (the raw extension call
  ``_core.pybind_BuildCheck()``: 0.18 us; ``Slice_byte_len``: 0.15 us). The GIL is
  released around every Go call.
- ``[]byte`` round trip ``from_go_bytes(lib.EchoBytes(to_go_bytes(b)))`` (EchoBytes
  makes its own copy in Go):

  ======= ========== ============ =========== ===============
  size    round trip to_go_bytes  EchoBytes   from_go_bytes
  ======= ========== ============ =========== ===============
  0       2.4 us     1.1 us       1.1 us      0.15 us
  1 KiB   3.0 us     1.2 us       1.2 us      0.35 us
  64 KiB  15-17 us   7.5-10 us    6-10 us     0.9 us
  1 MiB   325-535 us 200-225 us   55-80 us    21 us
  ======= ========== ============ =========== ===============

  Each ``Slice_byte`` that comes into being costs ~1 us even when empty (gopy's global
  handle registry: Register, IncRef, DecRef, plus the Python wrapper object), so
  batch small messages into one ``[]byte``. Go -> Python is one memcpy (~21 us/MiB).
  Python -> Go allocates on the Go heap and is bound by Go's GC pacing with a small
  heap: with GOGC=400 the 1 MiB round trip drops to ~175 us (to_go_bytes ~90 us).
"""

import gc
import os

__all__ = ["lib", "Slice_byte", "to_go_bytes", "from_go_bytes"]


def _import_binding():
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was deleted: nothing to restore
        cwd = None
    try:
        from gopool._gobind import _core, go, pybind
    finally:
        if cwd is not None:
            try:
                unchanged = os.getcwd() == cwd
            except OSError:
                unchanged = False
            if not unchanged:
                os.chdir(cwd)
    # gopy's hook is a function `_gopy_gc_cb` defined in each generated module.
    gc.callbacks[:] = [cb for cb in gc.callbacks
                       if getattr(cb, "__module__", None) not in (go.__name__, pybind.__name__)]
    return pybind, go, _core


lib, _go, _ext = _import_binding()
Slice_byte = _go.Slice_byte
_slice_len = _ext.Slice_byte_len
_slice_to_bytes = _ext.Slice_byte_to_bytes


def to_go_bytes(b):
    """Return a Go ``[]byte`` handle holding a copy of ``b``, which must be ``bytes``.

    Raises TypeError for anything else (``str``, ``bytearray``, ``memoryview``...):
    gopy would abort the process. ``b""`` is allowed.
    """
    if not isinstance(b, bytes):
        raise TypeError("expected bytes, got %s" % type(b).__name__)
    return Slice_byte.from_bytes(b)


def from_go_bytes(handle):
    """Return the contents of a Go ``[]byte`` result (a ``Slice_byte``) as ``bytes``.

    An empty (or nil) slice gives ``b""``; ``bytes(handle)`` would abort the process.
    """
    h = handle.handle
    if _slice_len(h) == 0:
        return b""
    return _slice_to_bytes(h)
