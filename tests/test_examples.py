"""The example notebook runs on a real Jupyter kernel and shows what it
says (examples/tour.ipynb)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "tour.ipynb"


def _text(cell):
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


@pytest.mark.timeout(240)
def test_the_tour_notebook_runs_and_shows_its_results(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert _text(code[0]).strip() == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    assert _text(code[1]).strip().endswith("(1000, 332833500)")
    widgets = [o for o in code[1]["outputs"] if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "progress=True drew no widget in the notebook"
    assert _text(code[2]).strip() == "([0, 1, 4, 9, 16], [0, 1, 4, 9, 16])"
    stops = _text(code[3])
    assert "stopped: TimeoutError" in stops and "cancelled: True" in stops
    assert "lost: 3" in stops and "the pool goes on: 144" in stops
    assert _text(code[4]).strip() == "(4950, 0)"
    assert _text(code[5]).strip() == "'done'"
