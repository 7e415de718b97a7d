"""`tfbind explain` as a user runs it: attributions.npz, motif table and figures."""
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from tfbind_dist.interpret import explain
from tfbind_dist.training.restore import load_model

@pytest.mark.slow
def test_explain_split_positives_all_methods(ctcf_run, tmp_path):
    out = tmp_path / "explain"
    proc = run_cli("explain", "--run", ctcf_run, "--split", "valid", "--label", "1", "--index", "0:12",
                   "--method", "ism,grad,grad-corrected", "--method", "grad-x-input", "--method", "ig",
                   "--method", "deeplift-shap", "--references", "8", "--out", out, "--plots", "1", check=True)
    data = np.load(out / "attributions.npz")
    assert {"sequences", "prediction", "ism", "grad", "grad_corrected", "grad_x_input", "ig",
            "deeplift_shap"} <= set(data.files)
    assert data["deeplift_shap"].shape == (12, 200, 4) and np.abs(data["deeplift_shap"]).sum() > 0
    assert data["ism"].shape == (12, 200, 4) and data["prediction"].shape == (12,)
    model = load_model(ctcf_run)
    from tfbind_dist.data.encoding import encode

    direct = explain(model.module, model.variables, encode(list(data["sequences"])), ["ism"])
    np.testing.assert_allclose(data["ism"], direct["ism"], atol=1e-6)
    table = pd.read_csv(out / "motifs.csv")
    assert len(table) == 12 and {"motif_start", "motif_p_value", "hot_start", "overlap"} <= set(table.columns)
    assert "CTCF motif:" in proc.stdout and "position" in proc.stdout
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "ism_0.png" in pngs and "grad_corrected_grid.png" in pngs and "ig_logo_0.png" in pngs


def test_explain_one_sequence_and_bad_input(ctcf_run, tmp_path):
    seq = "CCACCAGGGGGCGC" * 14 + "AAAA"
    run_cli("explain", "--run", ctcf_run, "--sequence", seq, "--method", "ism", "--out", tmp_path / "one", check=True)
    assert np.load(tmp_path / "one" / "attributions.npz")["ism"].shape == (1, 200, 4)
    bad = run_cli("explain", "--run", ctcf_run, "--sequence", seq[:-1] + "Q", "--method", "ism", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "invalid base 'Q' at position 199" in bad.stderr
    assert not (tmp_path / "x" / "attributions.npz").exists()
    bad = run_cli("explain", "--run", ctcf_run, "--sequence", seq, "--method", "shap", "--out", tmp_path / "y")
    assert bad.returncode == 2 and "unknown method" in bad.stderr
