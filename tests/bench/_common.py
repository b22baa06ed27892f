"""Shared helpers for the gopool benchmark scripts (bench_pool.py, and later
bench_queue.py etc.).

Not a test module: nothing here is collected by pytest.

Design: the driver (parent) never runs an implementation itself. For every
(implementation, metric) cell it starts a child process of the same script
(``--child ...``), which prints one result line on stdout::

    BENCH_RESULT {"status": "ok", "samples": [...], ...}

The parent parses it, enforces a timeout (killing the child's whole process
group, pool workers included), and turns failures into ``error`` /
``timeout`` cells, so one broken implementation cannot kill the run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback

RESULT_MARKER = "BENCH_RESULT "

now = time.perf_counter


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

class Timer:
    """``with Timer() as t: ...`` then ``t.elapsed`` (seconds)."""

    elapsed = 0.0

    def __enter__(self):
        self._t0 = now()
        return self

    def __exit__(self, *exc):
        self.elapsed = now() - self._t0
        return False


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------
# child side
# --------------------------------------------------------------------------

def emit_result(obj):
    """Print the result line the parent looks for (last one wins)."""
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(obj) + "\n")
    sys.stdout.flush()


def child_guard(fn, *args, **kwargs):
    """Run ``fn`` in the child; report its return value (a dict) or the
    exception as a result line. Always exits the process afterwards with
    ``os._exit`` so that stuck non-daemon threads of a broken
    implementation cannot keep the child alive."""
    try:
        res = fn(*args, **kwargs)
        if not isinstance(res, dict):
            res = {"status": "ok", "samples": list(res)}
        res.setdefault("status", "ok")
    except BaseException as e:  # noqa: BLE001 - report everything
        res = {
            "status": "error",
            "error": "%s: %s" % (type(e).__name__, e),
            "traceback": traceback.format_exc(limit=8),
        }
    emit_result(res)
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------

def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def run_child(cmd, timeout, env=None):
    """Run a child command; return its result dict.

    The child runs in its own session/process group; on timeout the whole
    group (pool workers, forkserver, ...) is killed, and so are leftovers of
    a child that exited. Output goes to temporary files, not pipes, so
    orphaned grandchildren holding them open cannot stall the driver.
    Never raises for child failures: returns ``{"status": "timeout"|"error",
    ...}`` instead.
    """
    import tempfile

    t0 = now()
    with tempfile.TemporaryFile("w+", errors="replace") as fout, \
            tempfile.TemporaryFile("w+", errors="replace") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        # Kill the whole group either way: leftover processes (e.g. orphaned
        # workers of a broken implementation) must not pollute the next
        # measurement.
        _kill_group(proc)
        proc.wait()
        wall = now() - t0
        fout.seek(0)
        out = fout.read()
        ferr.seek(0)
        err = ferr.read()
    if timed_out:
        return {"status": "timeout", "error": "no result after %.0f s" % timeout,
                "stderr_tail": err[-2000:], "wall_s": wall}
    res = None
    for line in out.splitlines():
        if line.startswith(RESULT_MARKER):
            try:
                res = json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                res = None
    if res is None:
        res = {"status": "error",
               "error": "child exited with code %s and no result" % proc.returncode}
    if res.get("status") != "ok" and err:
        res.setdefault("stderr_tail", err[-2000:])
    res["wall_s"] = wall
    return res


# --------------------------------------------------------------------------
# ratios and formatting
# --------------------------------------------------------------------------

def best_value(values, higher_is_better):
    """Best of the non-None values (max for rates, min for times)."""
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return None
    return max(vals) if higher_is_better else min(vals)


def ratio_vs(candidate, reference, higher_is_better):
    """Ratio > 1 means ``candidate`` is better than ``reference``.

    times (lower is better): reference / candidate;
    rates (higher is better): candidate / reference.
    """
    if not isinstance(candidate, (int, float)) or not isinstance(reference, (int, float)):
        return None
    if higher_is_better:
        return candidate / reference if reference else None
    return reference / candidate if candidate else None


def fmt_num(v):
    """Compact human number: 3 significant digits, thousands separators."""
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def fmt_ratio(r):
    return "n/a" if r is None else "%.2f" % r


def cell_text(res):
    """Table text for one result dict (or None = not selected)."""
    if res is None:
        return "—"
    st = res.get("status")
    if st == "ok":
        return fmt_num(res.get("median"))
    if st == "unavailable":
        return "n/a"
    return st or "error"


def markdown_table(headers, rows, align=None):
    """Render a GitHub-markdown table; ``align`` is a string of 'l'/'r'."""
    ncol = len(headers)
    align = align or ("l" + "r" * (ncol - 1))
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(str(c)))

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = str(c)
            out.append(c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = []
    for i in range(ncol):
        w = max(widths[i], 3)
        sep.append(":" + "-" * (w - 1) if align[i] == "l" else "-" * (w - 1) + ":")
    return "\n".join([line(headers), "| " + " | ".join(sep) + " |"] + [line(r) for r in rows])


# --------------------------------------------------------------------------
# environment description
# --------------------------------------------------------------------------

def go_version():
    try:
        out = subprocess.run(["go", "version"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def env_info():
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": "%s (%s)" % (platform.python_version(), platform.python_implementation()),
        "go": go_version(),
        "platform": "%s %s" % (platform.system(), platform.machine()),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
    }


def command_line(argv=None):
    """The command line as the user would type it (script path relative to
    the current directory when possible, no absolute machine paths)."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        try:
            rel = os.path.relpath(argv[0])
            if not rel.startswith(".."):
                argv[0] = rel
            else:
                argv[0] = os.path.basename(argv[0])
        except ValueError:
            argv[0] = os.path.basename(argv[0])
    return "python " + " ".join(shlex.quote(a) for a in argv)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def selection(spec, allowed, what):
    """The names given in a comma-separated option (--only, --metrics...),
    in the order of allowed; all of allowed when spec is empty."""
    if not spec:
        return list(allowed)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        sys.exit("unknown %s: %s (choose from %s)" % (what, ", ".join(bad), ", ".join(allowed)))
    return [n for n in allowed if n in names]


def tree_rss(root):
    """The summed resident memory (bytes) of root and all its descendants."""
    parents, rss = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/statm" % name) as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid, size in rss.items():
        p = pid
        while p and p != root and p in parents:
            p = parents[p]
        if p == root:
            total += size
    return total
