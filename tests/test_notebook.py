"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel, with its figures inline (the
`quickstart` fixture runs it once; the run it trains serves the motif tests too)."""
import os

import pytest


@pytest.mark.slow
def test_quickstart_notebook_runs_with_inline_figures(quickstart):
    notebook, home = quickstart
    outputs = [(cell.source, out) for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    # what a user would see in red: a cell that raised, or a traceback that a cell printed and survived
    errors = [f"{source.splitlines()[0]!r}: {out.get('ename')}: {out.get('evalue')}" for source, out in outputs
              if out.output_type == "error"]
    errors += [f"{source.splitlines()[0]!r}: {out.text[-500:]}" for source, out in outputs
               if out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text]
    assert not errors, "\n".join(errors)
    images = [source for source, out in outputs if "image/png" in out.get("data", {})]
    assert any("explained.plot(0, \"ism\")" in s for s in images), "the ISM map is shown inline"
    assert any("found.plot(0)" in s for s in images), "the motif figure is shown inline"
    assert len(images) >= 4  # also the learning curve and the DeepLIFT/SHAP logo
    text = "".join(out.get("text", "") for _, out in outputs)
    assert "the CTCF motif is positive motif #1" in text, text[-3000:]
    assert os.path.exists(home / "quickstart" / "runs" / "ctcf" / "summary.json")
