#!/usr/bin/env python3
"""CPython's own ProcessPoolExecutor tests, run against gopool's executor.

    python tests/cpython/run_futures_suite.py               # CPython 3.13
    python tests/cpython/run_futures_suite.py --python 3.10
    python tests/cpython/run_futures_suite.py -k test_map   # a subset

The tests are CPython's ``test.test_concurrent_futures`` (a package from
3.12 on, one module before), loaded from that interpreter's own test
package: nothing of them is copied here. The driver finds the interpreter
(on PATH, or installed by pyenv), builds and installs this checkout into a
venv of it (build/cpython-futures-<version>/, rebuilt when the sources
change), and runs the test classes of the process pool there with
``concurrent.futures.ProcessPoolExecutor`` routed to
``gopool.futures.ProcessPoolExecutor``. A missing interpreter is an error,
never a silent pass.

Routing. The tests take their executor from the mixins' ``executor_type``
(``futures.ProcessPoolExecutor``, read when ``util`` is imported) and, in a
few tests, from ``futures.ProcessPoolExecutor`` directly, also inside
child interpreters (``assert_python_ok``, which runs ``python -I``). So the
venv holds a ``.pth`` file that, when GOPOOL_FUTURES_SUITE is set, replaces
``concurrent.futures.ProcessPoolExecutor`` at start-up with ``SuiteExecutor``:
gopool's executor plus one adapter, ``_processes`` (pid -> an object with
``join``, ``is_alive``, ``terminate``), built from the public
``workers()``, which some tests read to count and join the workers.

Only the Spawn variants of each class run: gopool ignores ``mp_context``
(its workers are always fresh interpreters, like spawn's), so the Fork and
Forkserver variants would run the same code three times.

Every test that does not run is listed in EXCLUDED with its reason.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# The test modules of the package (3.12+); 3.9-3.11 have one module.
MODULES = ["test_process_pool", "test_shutdown", "test_deadlock", "test_init", "test_as_completed", "test_wait"]

_INTERNALS = "reads the stdlib executor's private internals ({}), which gopool's executor does not have"
_ON_DEMAND = ("counts the workers the stdlib starts on demand (one per task while none is idle); "
              "gopool starts max_workers workers at the first submission")

# test name (method, or Class.method) -> why it does not run.
EXCLUDED = {
    "test_killed_child": (
        "expects the executor to stay broken after a worker's death (submit() raises BrokenProcessPool); "
        "gopool heals on purpose: only the dead worker's future fails, with ExecutorWorkerLostError "
        "(a BrokenProcessPool), and new work runs (tests/test_futures.py checks both)"),
    "test_idle_process_reuse_one": _ON_DEMAND,
    "test_idle_process_reuse_multiple": _ON_DEMAND,
    "test_processes_terminate": _ON_DEMAND,
    "test_max_tasks_per_child_defaults_to_spawn_context": _INTERNALS.format("_mp_context") +
        "; gopool ignores mp_context and its workers are always fresh interpreters",
    "test_python_finalization_error": (
        "makes threading's private _start_joinable_thread fail for the stdlib executor's second internal "
        "thread (its queue feeder) and expects BrokenProcessPool; gopool's executor starts no such thread "
        "(and the test's map(mul, [(2, 3)] * 10) then fails with the TypeError of mul((2, 3)))"),
    "test_del_shutdown": _INTERNALS.format("_executor_manager_thread, _call_queue"),
    "test_shutdown_no_wait": _INTERNALS.format("_executor_manager_thread, _call_queue"),
    "test_shutdown_deadlock_pickle": _INTERNALS.format("_executor_manager_thread"),
    "test_exit_during_func_exec_on_worker": (
        "expects SystemExit raised by a task to come back as the future's exception; in gopool a task "
        "that raises SystemExit ends its worker (as in gopool's Pool), and the future fails with "
        "ExecutorWorkerLostError naming the exit code"),
    "test_exit_during_result_pickle_on_worker": (
        "expects SystemExit raised while the worker pickles a result to come back as the future's "
        "exception; in gopool it ends the worker: ExecutorWorkerLostError (a BrokenProcessPool)"),
    "test_error_during_result_pickle_on_worker": (
        "expects the PicklingError itself; gopool's worker (shared with Pool) reports a result that "
        "cannot be pickled as multiprocessing.pool.MaybeEncodingError, whose message names the error"),
    "test_error_at_task_unpickle": (
        "expects BrokenProcessPool when a task's arguments cannot be unpickled in the worker (the stdlib's "
        "worker dies); gopool fails only that future, with the UnpicklingError, and the worker goes on"),
    "test_error_during_result_unpickle_in_result_handler": (
        "expects BrokenProcessPool when the parent cannot unpickle a result (the stdlib's result thread "
        "breaks the pool); gopool fails only that future, with a RuntimeError whose cause is the error"),
    "test_exit_during_result_unpickle_in_result_handler": (
        "expects BrokenProcessPool when unpickling a result calls sys.exit() in the parent; gopool fails "
        "only that future, with a RuntimeError whose cause is the SystemExit"),
    "FailingInitializerMixin.test_initializer": (
        "expects the worker to log the initializer's exception to the 'concurrent.futures' logger through a "
        "stdlib multiprocessing.Queue passed in initargs, and reads the private _broken; gopool puts the "
        "initializer's exception on the futures' ExecutorBrokenError (__cause__) and then refuses submit() "
        "with it (tests/test_futures.py checks that)"),
    "FailingInitializerResourcesTest": (
        "runs the failing-initializer test above under the stdlib's resource tracker"),
}

ADAPTER = '''"""Routes concurrent.futures.ProcessPoolExecutor to gopool's, for CPython's
executor tests (tests/cpython/run_futures_suite.py); only when
GOPOOL_FUTURES_SUITE is set."""
import os
import signal
import time

import concurrent.futures
import concurrent.futures.process

from gopool.futures import ProcessPoolExecutor


class _Worker:
    """What the tests do with an entry of the stdlib's _processes."""

    def __init__(self, pid):
        self.pid = pid

    def is_alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state not in ("Z", "X")

    def join(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.01)

    def terminate(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class SuiteExecutor(ProcessPoolExecutor):
    """gopool's executor, with ``_processes`` built from ``workers()``."""

    @property
    def _processes(self):
        return {w.pid: _Worker(w.pid) for w in self.workers()}


SuiteExecutor.__name__ = SuiteExecutor.__qualname__ = "ProcessPoolExecutor"
concurrent.futures.ProcessPoolExecutor = SuiteExecutor
concurrent.futures.process.ProcessPoolExecutor = SuiteExecutor
'''

PTH = "import os; os.environ.get('GOPOOL_FUTURES_SUITE') and __import__('_gopool_futures_suite')\n"


def find_python(version):
    """The interpreter of a CPython version (e.g. "3.13"): on PATH, else
    installed by pyenv; None if there is none."""
    candidates = [shutil.which("python" + version)]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python" + version))
    found.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1].split("/")[0])])
    candidates += reversed(found)
    for c in candidates:
        if not c:
            continue
        try:
            out = subprocess.run([c, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return c
    return None


def sources_digest():
    """A digest of what the installed gopool is built from."""
    h = hashlib.sha256()
    patterns = ["setup.py", "pyproject.toml", "go.mod", "go.sum", "python/gopool/*.py", "python/gopool/*.[ch]",
                "gopool/*.go", "gopool/*/*.go", "pybind/*.go"]
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            h.update(os.path.relpath(path, ROOT).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    h.update(ADAPTER.encode() + PTH.encode())
    return h.hexdigest()


def prepare_venv(python, version):
    """A venv of python with this checkout installed and the routing in
    place; rebuilt when the sources change. Returns its python."""
    venv = os.path.join(ROOT, "build", "cpython-futures-" + version)
    vpy = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "gopool-sources.sha256")
    digest = sources_digest()
    if os.path.exists(stamp) and os.path.exists(vpy):
        with open(stamp) as f:
            if f.read().strip() == digest:
                return vpy
    if not os.path.exists(vpy):
        subprocess.run([python, "-m", "venv", venv], check=True)
    print(f"run_futures_suite: installing gopool into {os.path.relpath(venv, ROOT)} (a build from source)",
          file=sys.stderr, flush=True)
    subprocess.run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", ROOT], check=True)
    site = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "_gopool_futures_suite.py"), "w") as f:
        f.write(ADAPTER)
    with open(os.path.join(site, "gopool_futures_suite.pth"), "w") as f:
        f.write(PTH)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return vpy


# --------------------------------------------------------------------------
# inside the venv


def _excluded_reason(cls, method):
    for klass in cls.__mro__:
        reason = EXCLUDED.get(f"{klass.__name__}.{method}")
        if reason:
            return reason
    return EXCLUDED.get(method) or EXCLUDED.get(cls.__name__)


def load_suite(pattern):
    """The Spawn variants of the process-pool test classes, with the
    excluded tests removed; returns (suite, [(test id, reason)])."""
    import importlib
    import unittest

    try:
        importlib.import_module("test.test_concurrent_futures.util")
        modules = [importlib.import_module("test.test_concurrent_futures." + m) for m in MODULES]
    except ImportError:
        modules = [importlib.import_module("test.test_concurrent_futures")]
    loader = unittest.TestLoader()
    suite, excluded, names = unittest.TestSuite(), [], set()
    for module in modules:
        for name in sorted(dir(module)):
            cls = getattr(module, name)
            if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
                continue
            if not (name.startswith("ProcessPoolSpawn") or name == "FailingInitializerResourcesTest"):
                continue
            if name in names:
                continue
            names.add(name)
            for method in loader.getTestCaseNames(cls):
                test_id = f"{module.__name__.rsplit('.', 1)[-1]}.{name}.{method}"
                reason = _excluded_reason(cls, method)
                if reason:
                    excluded.append((test_id, reason))
                elif pattern is None or pattern in test_id:
                    suite.addTest(cls(method))
    return suite, excluded, modules


def inner_main(args):
    import concurrent.futures
    import unittest

    import gopool.futures

    if concurrent.futures.ProcessPoolExecutor.__mro__[1] is not gopool.futures.ProcessPoolExecutor:
        print("run_futures_suite: concurrent.futures.ProcessPoolExecutor is not routed to gopool's",
              file=sys.stderr)
        return 2
    suite, excluded, modules = load_suite(args.k)
    for module in modules:
        setup = getattr(module, "setUpModule", None)
        if setup is not None:
            setup()
    print(f"Python {sys.version.split()[0]}: {suite.countTestCases()} tests of CPython's test_concurrent_futures "
          f"against gopool.futures.ProcessPoolExecutor; {len(excluded)} excluded:")
    for test_id, reason in excluded:
        print(f"  excluded {test_id}: {reason}")
    sys.stdout.flush()
    result = unittest.TextTestRunner(verbosity=2 if args.verbose else 1, stream=sys.stdout).run(suite)
    unittest.case.doModuleCleanups()
    run, failed = result.testsRun, len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    print(f"run_futures_suite: {run - failed - skipped} passed, {failed} failed, {skipped} skipped "
          f"(by the tests themselves), {len(excluded)} excluded")
    if run == 0:
        print("run_futures_suite: no test ran", file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() else 1


# --------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default="3.13", help="the CPython version whose tests run (3.10-3.13)")
    ap.add_argument("-k", help="run only the tests whose id contains this")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        return inner_main(args)
    python = find_python(args.python)
    if python is None:
        print(f"run_futures_suite: CPython {args.python} was not found (on PATH as python{args.python}, or in "
              f"pyenv's versions): its test_concurrent_futures cannot run. Install it (pyenv install "
              f"{args.python}) or choose another with --python.", file=sys.stderr)
        return 2
    vpy = prepare_venv(python, args.python)
    env = dict(os.environ, GOPOOL_FUTURES_SUITE="1")
    env.pop("PYTHONPATH", None)
    cmd = [vpy, os.path.abspath(__file__), "--inner"] + (["-k", args.k] if args.k else []) + (
        ["-v"] if args.verbose else [])
    return subprocess.run(cmd, env=env, cwd=os.path.join(ROOT, "build")).returncode


if __name__ == "__main__":
    sys.exit(main())
