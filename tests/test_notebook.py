"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel, with its figures inline."""
import os

import pytest

from conftest import REPO

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_with_inline_figures(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("XLA_FLAGS", "")  # the kernel is a user's notebook: one CPU device, not the tests' eight
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute()
    nbformat.write(notebook, tmp_path / "executed.ipynb")  # to look at when this test fails
    outputs = [(cell.source, out) for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [out for _, out in outputs if out.output_type == "error" or out.get("name") == "stderr"
              and "Traceback" in out.get("text", "")]
    assert not errors, errors
    images = [source for source, out in outputs if "image/png" in out.get("data", {})]
    assert any("explained.plot(0, \"ism\")" in s for s in images), "the ISM map is shown inline"
    assert any("found.plot(0)" in s for s in images), "the motif figure is shown inline"
    assert len(images) >= 4  # also the learning curve and the DeepLIFT/SHAP logo
    text = "".join(out.get("text", "") for _, out in outputs)
    assert "the CTCF motif is positive motif #1" in text, text[-3000:]
    assert os.path.exists(tmp_path / "quickstart" / "runs" / "ctcf" / "summary.json")
