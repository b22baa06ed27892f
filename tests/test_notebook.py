"""Functions and classes defined in a notebook cell work in a Pool.

A Jupyter kernel runs cells with IPython's InteractiveShell: what a cell
defines lives in a ``__main__`` that workers cannot import, so it must
travel by value. The shell runs in a subprocess, as a kernel would.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gopool

pytestmark = pytest.mark.timeout(90)

CELLS = [
    """
    from gopool import Pool
    SCALE = 3

    class Point:
        def __init__(self, x):
            self.x = x

    def scaled(x):
        return Point(x * SCALE)
    """,
    """
    with Pool(2) as pool:
        points = pool.map(scaled, range(4))
        closure_total = pool.apply(lambda: sum(p.x for p in points))
    print("cell result", [p.x for p in points], closure_total, type(points[0]) is Point)
    """,
]

DRIVER = """
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in sys.argv[1:]:
    result = shell.run_cell(cell)
    if not result.success:
        sys.exit(1)
"""


def test_pool_runs_functions_and_classes_defined_in_notebook_cells(tmp_path):
    pytest.importorskip("IPython")  # installed by `make test`; check_results rejects any skip
    env_path = str(Path(gopool.__file__).resolve().parent.parent)
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *(textwrap.dedent(c) for c in CELLS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": env_path},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cell result [0, 3, 6, 9] 18 True" in proc.stdout, proc.stdout + proc.stderr
