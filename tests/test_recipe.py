"""Named recipes, on-device augmentation, early stopping, the strand-averaged model and the k-mer baseline."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import KOO, REPO, run_cli
from tfbind_dist import config as C
from tfbind_dist.data.encoding import encode, one_hot
from tfbind_dist.data.encoding import reverse_complement as reverse_complement_codes
from tfbind_dist.data.encoding import reverse_complement_one_hot as reverse_complement
from tfbind_dist.models import build_model
from tfbind_dist.training.kmer_baseline import canonical_kmer_index, kmer_frequencies
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.state import init_variables
from tfbind_dist.training.steps import augment


def test_chapter_recipe_is_the_chapter_and_default_differs():
    assert C.load_recipe("chapter") == C.RunConfig()  # RunConfig defaults are chapter 3's recipe
    default = C.load_recipe()
    assert default.model.name == "motif_pool" and default.train.augment_rc and default.train.jitter > 0
    assert C.load_recipe("jobs/recipes/default.yaml") == default  # jobs/recipes is the same folder
    with pytest.raises(C.ConfigError, match=r"unknown recipe 'fancy'; named recipes: \['chapter', 'default'\]"):
        C.load_recipe("fancy")


def test_reverse_complement_codes_and_augment():
    codes = jnp.asarray(encode(["AACGTN", "GGGTTA"]))
    assert "".join("ACGTN"[c] for c in np.asarray(reverse_complement_codes(codes))[0]) == "NACGTT"
    np.testing.assert_array_equal(reverse_complement_codes(reverse_complement_codes(codes)), codes)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 4, (256, 50)), jnp.uint8)
    key = jax.random.PRNGKey(3)
    out = np.asarray(augment(batch, key, rc=True, jitter=0))
    flipped = (out != np.asarray(batch)).any(axis=1)
    assert 80 < flipped.sum() < 176  # about half the sequences are reverse complemented
    np.testing.assert_array_equal(out[flipped], np.asarray(reverse_complement_codes(batch))[flipped])
    np.testing.assert_array_equal(out, augment(batch, key, rc=True, jitter=0))  # a pure function of the key

    shifted = np.asarray(augment(batch, key, rc=False, jitter=4))
    for row, src in zip(shifted, np.asarray(batch)):
        n = int((row == 4).sum())
        assert n <= 4
        if n and row[0] == 4:  # shifted right: the sequence starts n bases later
            np.testing.assert_array_equal(row[n:], src[:-n])
        elif n:
            np.testing.assert_array_equal(row[:-n], src[n:])
        else:
            np.testing.assert_array_equal(row, src)
    assert (shifted == 4).any()


def test_motif_pool_scores_both_strands_alike():
    model = build_model("motif_pool")
    x = one_hot(jnp.asarray(np.random.default_rng(1).integers(0, 4, (4, 200)), jnp.uint8))
    variables = init_variables(model, 200, seed=0)
    forward = model.apply(variables, x, is_training=False)
    backward = model.apply(variables, reverse_complement(x), is_training=False)
    np.testing.assert_allclose(forward, backward, atol=1e-5)
    single = build_model("motif_pool", strand_average=False)
    assert not np.allclose(single.apply(variables, x, is_training=False),
                           single.apply(variables, reverse_complement(x), is_training=False), atol=1e-3)


def test_kmer_frequencies_merge_strands():
    mapping, count = canonical_kmer_index(2)
    assert count == 10  # 16 dinucleotides, 4 of them their own reverse complement
    seqs = ["ACGTTGCAAC", "GTTGCAACGT"]  # the second is the first's reverse complement
    freqs = kmer_frequencies(encode(seqs), k=3)
    np.testing.assert_allclose(freqs[0], freqs[1])
    np.testing.assert_allclose(freqs.sum(axis=1), 1.0, rtol=1e-6)
    with_n = kmer_frequencies(encode(["ACGNACGT"]), k=3)  # k-mers across N are left out
    assert with_n.sum() == pytest.approx(1.0) and (with_n > 0).sum() <= 3


def test_early_stopping_and_baseline_in_summary(synth_dir, tmp_path):
    cfg = C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "data.path": str(synth_dir), "train.steps": 200,
                                           "train.eval_every": 10, "train.learning_rate": 0.0, "train.patience": 2, "model.name": "conv",
                                           "train.with_baseline": True, "data.eval_batch_size": 256})
    summary = train_and_evaluate(cfg, tmp_path / "r", progress=False)
    # no BatchNorm and a zero learning rate: the first evaluation stays the best one; two more without gain stop the run
    assert summary["best_step"] == 10 and summary["stopped_early_at"] == 30
    assert 0.6 < summary["baseline_valid_auroc"] <= 1.0 and "6-mer" in summary["baseline"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == summary


@pytest.mark.slow
def test_cli_recipes_baseline_and_sweep_spec(synth_dir, tmp_path):
    one_device = {"XLA_FLAGS": ""}
    run_cli("train", "--tf", "CTCF", "--data", synth_dir, "--steps", "40", "--set", "eval_every=20",
            "--out", tmp_path / "default", "--quiet", env_extra=one_device, check=True)
    run_cli("train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--steps", "20",
            "--out", tmp_path / "chapter", "--quiet", env_extra=one_device, check=True)
    default = C.load(tmp_path / "default" / "config.yaml")
    chapter = C.load(tmp_path / "chapter" / "config.yaml")
    assert default.model.name == "motif_pool" and default.train.augment_rc
    assert chapter.model.name == "conv_v2" and chapter.train.batch_size == 32 and not chapter.train.augment_rc

    proc = run_cli("baseline", "--tf", "CTCF", "--data", synth_dir, "-k", "5", check=True)
    result = json.loads(proc.stdout)
    assert result["baseline"].startswith("5-mer") and 0.5 < result["valid_auroc"] <= 1.0
    missing = run_cli("baseline", "--tf", "SRF", "--data", synth_dir)
    assert missing.returncode == 2 and "no data for TF 'SRF' (data.tf); found CTCF, ZNF24" in missing.stderr

    from tfbind_dist.sweeps.spec import load_spec

    spec = load_spec(REPO / "jobs" / "recipe_default.yaml", {"data.path": str(synth_dir)})
    assert len(spec.jobs) == 6 and {j.config.model.name for j in spec.jobs} == {"motif_pool"}
    assert all(j.config.train.with_baseline and j.config.train.steps == 3000 for j in spec.jobs)


@pytest.mark.skipif(not KOO.exists(), reason="needs ../shared/data/koo_chipseq_200bp")
def test_kmer_baseline_on_real_rest_data():
    from tfbind_dist.config import DataConfig
    from tfbind_dist.data.sources import load_splits
    from tfbind_dist.training.kmer_baseline import fit_kmer_baseline

    result = fit_kmer_baseline(load_splits(DataConfig(tf="REST", path=str(KOO))))
    assert 0.82 < result.valid_auroc < 0.87 and 0.82 < result.test_auroc < 0.87
