"""Run every example program of the seed documents and check what it prints.

Each file tests/seeds/NNN_*.py is one complete example from a seed document
(one of the documents gopool was specified from) with its multiprocessing import swapped for
gopool; tests/seeds/expected.json says what must hold for its output (see the
"_format" entry there).

The example runs as a user would run it in a terminal: `sys.executable FILE`
in a fresh temporary directory, with stdout on a pseudo-terminal (so Python
line-buffers it, as the documents' outputs assume), stderr on a pipe, stdin
from /dev/null, and the inherited environment less PYTHONUNBUFFERED (which
would make lines written by different processes interleave mid-line).

GOPOOL_SEEDS_AGAINST_STDLIB=1 rewrites the imports back to multiprocessing on
the fly, to check the specs themselves against the standard library.
"""

import json
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

SEEDS_DIR = Path(__file__).resolve().parent / "seeds"
EXPECTED = json.loads((SEEDS_DIR / "expected.json").read_text())
EXAMPLES = sorted(name for name in EXPECTED if not name.startswith("_"))
AGAINST_STDLIB = os.environ.get("GOPOOL_SEEDS_AGAINST_STDLIB", "") not in ("", "0")

# How long the output may stay open after the main process has exited (a
# descendant still holding it is an orphan the example never asked for).
ORPHAN_GRACE = 3.0


def cpu_count():
    fn = getattr(os, "process_cpu_count", None) or os.cpu_count
    return fn() or 1


def to_stdlib(source):
    """Rewrite the gopool imports of an example back to multiprocessing."""
    source = re.sub(r"(?m)^(\s*)from gopool\.pool import ", r"\1from multiprocessing.pool import ", source)
    source = re.sub(r"(?m)^(\s*)from gopool import ", r"\1from multiprocessing import ", source)
    source = re.sub(r"(?m)^(\s*)import gopool[ \t]*$", r"\1import multiprocessing", source)
    source = re.sub(r"\bgopool\.", "multiprocessing.", source)
    code = [line for line in source.splitlines() if not line.lstrip().startswith("#")]
    assert not any("gopool" in line for line in code), "unrewritten gopool reference"
    return source


class Run:
    def __init__(self, stdout, stderr, returncode, seconds, hung, orphans):
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode
        self.seconds = seconds
        self.hung = hung  # still running at the deadline, then killed
        self.orphans = orphans  # output still held open after the main exited

    @property
    def lines(self):
        return self.stdout.splitlines()

    def describe(self):
        return (
            f"exit code: {self.returncode}, {self.seconds:.2f} s"
            f"{', HUNG (killed at the deadline)' if self.hung else ''}"
            f"{', orphans held the output open' if self.orphans else ''}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}--- end ---"
        )


def _drain(fd, chunks):
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: every slave end of the pty is closed
            break
        if not data:
            break
        chunks.append(data)


def run_example(script, cwd, deadline):
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no "\n" -> "\r\n" translation
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(slave)
    out_chunks, err_chunks = [], []
    readers = [
        threading.Thread(target=_drain, args=(master, out_chunks), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr.fileno(), err_chunks), daemon=True),
    ]
    for r in readers:
        r.start()
    hung = False
    try:
        proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        hung = True
    seconds = time.monotonic() - start
    orphans = False
    if not hung:
        end = time.monotonic() + ORPHAN_GRACE
        for r in readers:
            r.join(max(0.0, end - time.monotonic()))
        orphans = any(r.is_alive() for r in readers)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the example's whole session
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for r in readers:
        r.join(5)
    os.close(master)
    proc.stderr.close()
    decode = lambda chunks: b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return Run(decode(out_chunks), decode(err_chunks), proc.returncode, seconds, hung, orphans)


def _bound(value):
    if value == "cpu_count":
        return cpu_count()
    return value


def match_sequence(lines, groups):
    """lines must be runs of consecutive lines, one run per [regex, min, max]
    group in order, each line of a run fully matching the group's regex."""
    groups = [(re.compile(rx), _bound(lo), _bound(hi)) for rx, lo, hi in groups]
    memo = {}

    def match(i, g):
        if (i, g) in memo:
            return memo[(i, g)]
        if g == len(groups):
            ok = i == len(lines)
        else:
            rx, lo, hi = groups[g]
            ok, n = False, 0
            while True:
                if n >= lo and match(i + n, g + 1):
                    ok = True
                    break
                if i + n >= len(lines) or (hi is not None and n >= hi):
                    break
                if not rx.fullmatch(lines[i + n]):
                    break
                n += 1
        memo[(i, g)] = ok
        return ok

    return match(0, 0)


def check(spec, run):
    """Return the list of failed checks of spec against run."""
    failures = []
    lines = run.lines

    def fail(msg):
        failures.append(msg)

    code = spec.get("exit_code")
    if code == "nonzero":
        if run.returncode == 0:
            fail("exit code is 0, expected non-zero")
    elif code is not None and run.returncode != code:
        fail(f"exit code {run.returncode}, expected {code}")
    if "stdout_exact" in spec and lines != spec["stdout_exact"]:
        fail(f"stdout lines {lines!r}, expected exactly {spec['stdout_exact']!r}")
    if "stdout_sequence" in spec and not match_sequence(lines, spec["stdout_sequence"]):
        fail(f"stdout does not match the sequence {spec['stdout_sequence']!r} (cpu_count={cpu_count()})")
    if "stdout_counts" in spec:
        pats = [(re.compile(rx), _bound(lo), _bound(hi)) for rx, lo, hi in spec["stdout_counts"]]
        for line in lines:
            if not any(rx.fullmatch(line) for rx, _, _ in pats):
                fail(f"unexpected stdout line {line!r}")
        for rx, lo, hi in pats:
            n = sum(1 for line in lines if rx.fullmatch(line))
            if n < lo or (hi is not None and n > hi):
                fail(f"{n} stdout lines match {rx.pattern!r}, expected {lo}..{hi}")
    for a, b in spec.get("stdout_order", []):
        if a in lines and b in lines and lines.index(a) > lines.index(b):
            fail(f"stdout line {a!r} comes after {b!r}")
    if "stdout_last" in spec and (not lines or lines[-1] != spec["stdout_last"]):
        fail(f"last stdout line is not {spec['stdout_last']!r}")
    for text in spec.get("stdout_absent", []):
        if text in run.stdout:
            fail(f"stdout contains {text!r}")
    if spec.get("stderr_empty") and run.stderr.strip():
        fail("stderr is not empty")
    for text in spec.get("stderr_contains", []):
        if text not in run.stderr:
            fail(f"stderr does not contain {text!r}")
    if "max_seconds" in spec and run.seconds > spec["max_seconds"]:
        fail(f"took {run.seconds:.2f} s, expected at most {spec['max_seconds']} s")
    if "min_seconds" in spec and run.seconds < spec["min_seconds"]:
        fail(f"took {run.seconds:.2f} s, expected at least {spec['min_seconds']} s")
    return failures


def _timeout(name):
    spec = EXPECTED[name]
    return spec["timeout"] + ORPHAN_GRACE + 30


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.timeout(_timeout(n)), id=n[:-3]) for n in EXAMPLES],
)
def test_seed_example(name, tmp_path):
    spec = EXPECTED[name]
    source = (SEEDS_DIR / name).read_text()
    if AGAINST_STDLIB:
        source = to_stdlib(source)
    (tmp_path / name).write_text(source)

    hang_ok = spec.get("hang_ok")
    deadline = hang_ok["after"] if hang_ok else spec["timeout"]
    run = run_example(name, str(tmp_path), deadline)

    if not AGAINST_STDLIB and re.search(r"No module named '?gopool", run.stderr):
        pytest.fail(f"gopool is not importable by {sys.executable}\n" + run.describe())
    if run.hung:
        if not hang_ok:
            pytest.fail(f"still running after {deadline} s\n" + run.describe())
        failures = check(hang_ok, run)
    else:
        failures = check(spec, run)
        if run.orphans:
            failures.append(f"output still held open {ORPHAN_GRACE} s after the main process exited")
    if failures:
        pytest.fail(f"{name} ({spec['document']}):\n- " + "\n- ".join(failures) + "\n" + run.describe())


def test_every_example_has_a_spec():
    files = sorted(p.name for p in SEEDS_DIR.glob("[0-9][0-9][0-9]_*.py"))
    assert files == EXAMPLES
