"""De-novo motif discovery (`tfbind motifs`): TF-MoDISco on hypothetical contributions, TOMTOM against JASPAR."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import false_discovery_control

from conftest import run_cli
from tfbind_dist.data import jaspar
from tfbind_dist.discovery import MODISCO_H5, MOTIFS_CSV, TooFewSeqlets, discover_motifs
from tfbind_dist.discovery import inputs
from tfbind_dist.discovery.inputs import Contributions
from tfbind_dist.data.encoding import reverse_complement_one_hot as reverse_complement
from tfbind_dist.discovery.matching import benjamini_hochberg, match_motifs, own_matrix_ids
from tfbind_dist.interpret import center_bases

CTCF = "MA0139.2"


def planted(n=600, length=200, seed=0, signal=True):
    """Random sequences, half carrying a sampled CTCF site whose bases get their log-odds as contributions."""
    rng = np.random.default_rng(seed)
    probs = jaspar.probabilities(jaspar.matrix_counts(CTCF), pseudocount=0.5)
    codes = rng.integers(0, 4, (n, length)).astype(np.uint8)
    hypothetical = rng.normal(0, 0.05, (n, length, 4)).astype(np.float32)
    width = len(probs)
    for row in rng.choice(n, n // 2, replace=False):
        start = rng.integers(0, length - width)
        codes[row, start:start + width] = [rng.choice(4, p=p) for p in probs]
        if signal:
            hypothetical[row, start:start + width] = np.log2(probs / 0.25)
    return Contributions(codes, hypothetical, [f"row {i}" for i in range(n)])


def test_benjamini_hochberg_equals_scipy():
    p = np.random.default_rng(0).uniform(0, 1, 500) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p), rtol=1e-12)


def test_a_jaspar_matrix_slice_matches_its_own_matrix_on_either_strand():
    targets = jaspar.collection()
    assert len(targets) > 800 and all(t.counts.shape[1] == 4 for t in targets)
    probs = jaspar.probabilities(jaspar.matrix_counts(CTCF))
    forward, reverse = match_motifs([probs[3:14], reverse_complement(probs)[2:13]], targets)
    assert forward[0].matrix_id == CTCF and forward[0].strand == "+" and forward[0].offset == 3
    assert forward[0].q_value < 1e-5 and forward[0].rank == 1 and len(forward) == len(targets)
    assert reverse[0].matrix_id == CTCF and reverse[0].strand == "-" and reverse[0].offset == 2
    assert [m.p_value for m in forward] == sorted(m.p_value for m in forward)


def test_own_matrices_are_found_by_name_dimer_or_planted_id():
    targets = jaspar.collection()
    assert {"MA0139.2", "MA1929.2", "MA1930.2"} <= own_matrix_ids("CTCF", targets)
    assert "MA0151.1" in own_matrix_ids("ARID3", targets)  # planted matrix: ARID3A
    assert own_matrix_ids("REST", targets) == {"MA0138.3"}
    assert own_matrix_ids("NOT_A_TF", targets) == set()


@pytest.mark.slow
def test_planted_ctcf_contributions_give_the_ctcf_motif_and_the_outputs(tmp_path):
    found = discover_motifs(planted(), "CTCF", tmp_path, progress=False)
    table = pd.read_csv(tmp_path / MOTIFS_CSV)
    top = table.iloc[0]
    assert top.sign == "+" and top.match_1.split()[0] in own_matrix_ids("CTCF", jaspar.collection())
    assert top.match_1_q < 0.05 and top.is_own_tf and found.own_motif_rank == 1
    assert top.seqlets > 100 and found.sequences == 600
    import h5py

    with h5py.File(tmp_path / MODISCO_H5) as h5:
        assert "pattern_0" in h5["pos_patterns"] and h5["pos_patterns/pattern_0/seqlets/n_seqlets"][()] == top.seqlets
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(f"{m}.png" for m in table.motif)


@pytest.mark.slow
def test_too_few_seqlets_is_one_clear_error_and_writes_nothing(tmp_path):
    message = r"TF-MoDISco found no motif in 60 sequences: \d+ positive and \d+ negative"
    with pytest.raises(TooFewSeqlets, match=message):
        discover_motifs(planted(n=60), "CTCF", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / MOTIFS_CSV).exists() and not (tmp_path / "out" / MODISCO_H5).exists()


def test_stored_ism_becomes_hypothetical_by_centring_over_bases():
    delta = np.random.default_rng(0).normal(size=(3, 10, 4)).astype(np.float32)
    centred = center_bases(delta)
    np.testing.assert_allclose(centred.sum(-1), 0, atol=1e-6)
    np.testing.assert_allclose(centred - delta, np.broadcast_to(-delta.mean(-1, keepdims=True), delta.shape), atol=1e-6)


def test_strongest_keeps_the_largest_total_contributions_in_order():
    found = planted(n=40, length=30, signal=False)
    hypothetical = found.hypothetical.copy()
    hypothetical[[5, 17, 33]] *= 100
    kept = inputs.strongest(found._replace(hypothetical=hypothetical), 3)
    assert kept.names == ["row 5", "row 17", "row 33"]
    np.testing.assert_array_equal(kept.codes, found.codes[[5, 17, 33]])


@pytest.mark.slow
def test_motifs_cli_finds_the_planted_ctcf_motif(quickstart, ctcf_motif_run, tmp_path):
    out = tmp_path / "motifs"
    proc = run_cli("motifs", "--run", ctcf_motif_run, "--split", "train", "--method", "deeplift-shap",
                   "--references", "8", "--max-sequences", "500", "--out", out, "--quiet", check=True, timeout=1200,
                   env_extra={"XLA_FLAGS": ""})  # one CPU device, as the notebook's kernel
    table = pd.read_csv(out / MOTIFS_CSV)
    positive = table[table.sign == "+"].reset_index(drop=True)
    assert positive.match_1[0].split()[0] in own_matrix_ids("CTCF", jaspar.collection()), table.to_string()
    assert positive.match_1_q[0] < 0.05 and positive.is_own_tf[0]
    assert "the CTCF motif is positive motif #1" in proc.stdout
    assert (out / MODISCO_H5).exists() and (out / "figures" / f"{positive.motif[0]}.png").exists()
    # the same discovery from Python, in memory: the notebook's `tb.discover_motifs` of this run with these
    # settings found the same table, and wrote nothing
    home = quickstart[1]
    found = pd.read_pickle(home / "discovery_table.pkl")
    pd.testing.assert_frame_equal(found.drop(columns=[c for c in table if c.endswith("_q")]),
                                  table.drop(columns=[c for c in table if c.endswith("_q")]).fillna(""),
                                  check_dtype=False)
    np.testing.assert_allclose(found.match_1_q, table.match_1_q, rtol=1e-6)
    record = json.loads((home / "discovery.json").read_text())
    assert record["own_motif_rank"] == 1 and record["motifs"] == len(table) and record["first_q"] < 0.05
    assert not (home / "quickstart" / MOTIFS_CSV).exists() and not list(home.rglob(MODISCO_H5))
    # too few sequences for a motif: one line naming the seqlet counts, exit 2, nothing written
    few = tmp_path / "few.txt"
    few.write_text("\n".join(["ACGT" * 50] * 3 + ["".join(np.random.default_rng(0).choice(list("ACGT"), 200))]))
    proc = run_cli("motifs", "--run", ctcf_motif_run, "--input", few, "--method", "grad-corrected", "--out",
                   tmp_path / "few", "--quiet")
    assert proc.returncode == 2 and "TF-MoDISco found no motif in 4 sequences" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "few" / MOTIFS_CSV).exists()


@pytest.mark.slow
def test_from_scores_reads_the_service_contributions_without_recomputing(small_run, ray_cluster, tmp_path):
    """Any trained run will do: what is checked is that stored contributions are read back, not what they show."""
    from tfbind_dist.data.io import sequence_column_strings
    from tfbind_dist.data.sources import load_splits
    from tfbind_dist.training.restore import load_model

    model = load_model(small_run)
    split = load_splits(model.config.data, splits=("valid",))["valid"]
    rows = np.flatnonzero(split.labels == 1)[:60]
    sequences = sequence_column_strings(split.table.take(rows))
    pq.write_table(pa.table({"sequence": sequences}), tmp_path / "positives.parquet")
    run_cli("data", "shard", tmp_path / "positives.parquet", "--out", tmp_path / "shards", "--rows-per-shard", "30",
            "--quiet", check=True)
    run_cli("score", "--runs", small_run, "--input", tmp_path / "shards", "--out", tmp_path / "scores",
            "--outputs", "prob,ism,deeplift_shap", "--batch-size", "32", "--address", ray_cluster, "--quiet",
            env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    for method in ("deeplift-shap", "ism"):
        stored = inputs.from_scores(tmp_path / "scores", str(small_run), method, keep=1000, progress=False)
        assert len(stored.codes) == 60 and stored.names[0] == "id 0"
        direct = inputs.from_model(model, stored.codes, stored.names, method, progress=False)
        np.testing.assert_array_equal(stored.codes, split.codes[rows])  # joined to the right sequences by id
        tolerance = 1e-5 if method == "deeplift-shap" else 2e-3  # ISM is stored as float16
        np.testing.assert_allclose(stored.hypothetical, direct.hypothetical, atol=tolerance)
        strongest = inputs.from_scores(tmp_path / "scores", str(small_run), method, keep=10, progress=False)
        assert len(strongest.codes) == 10
        assert inputs.observed_total(strongest.codes, strongest.hypothetical).min() >= \
            np.sort(inputs.observed_total(stored.codes, stored.hypothetical))[-10] - 1e-6
    missing = run_cli("motifs", "--run", small_run, "--from-scores", tmp_path / "scores", "--method",
                      "grad-corrected", "--out", tmp_path / "m")
    assert missing.returncode == 2 and "scored without the 'grad_corrected' output" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    settings = json.loads((tmp_path / "scores" / "_SCORE.json").read_text())
    assert settings["outputs"] == sorted(["prob", "ism", "deeplift_shap"])
