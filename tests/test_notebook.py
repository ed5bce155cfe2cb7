"""The walkthrough notebook runs top to bottom without an error, as a student would run it: in
a fresh folder, on the shared TinyStories sample (``LMLAB_TRAIN_TEXT``/``LMLAB_VALID_TEXT``, the
variables at its top) and with a short training time, executed by a real Jupyter kernel
(nbclient). End to end, so marked slow; skipped without the shared data."""

import os
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(shared_data: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    text = shared_data / "tinystories"
    monkeypatch.setenv("LMLAB_TRAIN_TEXT", str(text / "train.txt"))
    monkeypatch.setenv("LMLAB_VALID_TEXT", str(text / "valid.txt"))
    monkeypatch.setenv("LMLAB_TRAIN_SECONDS", "10")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the kernel finds this lmlab
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails here, naming the cell and its traceback
    work = tmp_path / "walkthrough"
    assert (work / "runs" / "walkthrough" / "status").read_text().startswith("finished")
    assert len(list((work / "runs" / "lr").glob("lr_max-*"))) == 3
    assert "lr_max" in (work / "report" / "EXPERIMENTS.md").read_text()
    outputs = "".join(str(output.get("text", "")) for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert "temperature 0.7: Once upon a time" in outputs
    images = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 3  # the live curve, the sweep's curves, loss against the rate
