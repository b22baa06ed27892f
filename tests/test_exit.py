"""A program that exits with gopool.Process children it never joined: the
stdlib's exit sequence runs to completion (SEMANTICS.md §9 and §15) —
daemonic children are terminated and joined, non-daemonic ones joined — and
nothing is printed on stderr.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gopool

TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(gopool.__file__).resolve().parent.parent


def _run(script, *args, timeout=40):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), str(TESTS_DIR)])
    proc = subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "helpers" / script), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


@pytest.mark.timeout(60)
def test_exit_terminates_daemons_and_joins_children(tmp_path):
    code, out, err = _run("exit_unjoined.py", str(tmp_path), "running")
    assert err == ""
    assert code == 0
    # The non-daemonic child was joined: its output comes before the
    # parent's last words, and it exited normally. The daemonic one was
    # terminated (SIGTERM) and joined.
    assert out.splitlines() == ["parent done", "child done", "daemon exitcode -15", "child exitcode 0"], out
    assert not (tmp_path / "late").exists()


@pytest.mark.timeout(60)
def test_exit_with_a_finished_child_never_joined(tmp_path):
    code, out, err = _run("exit_unjoined.py", str(tmp_path), "finished")
    assert err == ""
    assert code == 0
    assert out.splitlines() == ["child done", "parent done", "child exitcode 0"], out
