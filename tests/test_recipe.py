"""Named recipes, on-device augmentation, early stopping, the strand-averaged model and the k-mer baseline."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import KOO, REPO, run_cli
from tfbind_dist import config as C
from tfbind_dist.data.encoding import encode, one_hot
from tfbind_dist.data.encoding import reverse_complement as reverse_complement_codes
from tfbind_dist.data.encoding import reverse_complement_one_hot as reverse_complement
from tfbind_dist.models import build_model
from tfbind_dist.training import augment as A
from tfbind_dist.training.augment import strand_and_shift
from tfbind_dist.training.kmer_baseline import canonical_kmer_index, kmer_frequencies
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.state import init_variables, make_schedule


def test_chapter_recipe_is_the_chapter_and_default_differs():
    assert C.load_recipe("chapter") == C.RunConfig()  # RunConfig defaults are chapter 3's recipe
    default = C.load_recipe()
    assert default.model.name == "motif_pool" and default.train.augment_rc and default.train.jitter > 0
    assert C.load_recipe("jobs/recipes/default.yaml") == default  # jobs/recipes is the same folder
    with pytest.raises(C.ConfigError, match=r"unknown recipe 'fancy'; named recipes: \['chapter', 'default', 'evoaug'\]"):
        C.load_recipe("fancy")
    evoaug = C.load_recipe("evoaug").validate()  # the default's model, trained longer on evolved sequences
    assert evoaug.model == default.model and evoaug.data == default.data
    changed = {k for k, v in evoaug.to_dict()["train"].items() if v != default.to_dict()["train"][k]}
    assert changed == {"steps", "finetune_steps", "evo_delete_max", "evo_insert_max", "evo_translocate_max",
                       "evo_mutate_frac"}


def test_reverse_complement_codes_and_augment():
    codes = jnp.asarray(encode(["AACGTN", "GGGTTA"]))
    assert "".join("ACGTN"[c] for c in np.asarray(reverse_complement_codes(codes))[0]) == "NACGTT"
    np.testing.assert_array_equal(reverse_complement_codes(reverse_complement_codes(codes)), codes)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 4, (256, 50)), jnp.uint8)
    key = jax.random.PRNGKey(3)
    out = np.asarray(strand_and_shift(batch, key, rc=True, jitter=0))
    flipped = (out != np.asarray(batch)).any(axis=1)
    assert 80 < flipped.sum() < 176  # about half the sequences are reverse complemented
    np.testing.assert_array_equal(out[flipped], np.asarray(reverse_complement_codes(batch))[flipped])
    np.testing.assert_array_equal(out, strand_and_shift(batch, key, rc=True, jitter=0))  # a pure function of the key

    shifted = np.asarray(strand_and_shift(batch, key, rc=False, jitter=4))
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


def _batch_with_n(rows=64, length=60, seed=0):
    codes = np.random.default_rng(seed).integers(0, 4, (rows, length))
    codes[:, 5] = codes[:, 40] = 4  # every sequence has N (kept as N, or moved, never made invalid)
    return jnp.asarray(codes, jnp.uint8)


@pytest.mark.parametrize("op, strength", [(A.substitute, 0.1), (A.delete, 20), (A.insert, 20), (A.invert, 20),
                                          (A.translocate, 20)])
def test_each_evolution_augmentation_keeps_the_encoding_and_length_and_is_pure(op, strength):
    batch, key = _batch_with_n(), jax.random.PRNGKey(7)
    out = np.asarray(op(batch, key, strength))
    assert out.shape == batch.shape and out.dtype == np.uint8 and out.min() >= 0 and out.max() <= 4
    np.testing.assert_array_equal(out, op(batch, key, strength))  # a pure function of (key, batch)
    np.testing.assert_array_equal(out, jax.jit(op, static_argnums=2)(batch, key, strength))  # also when jitted
    assert not np.array_equal(out, op(batch, jax.random.PRNGKey(8), strength))
    changed = (out != np.asarray(batch)).any(axis=1)
    assert changed.mean() > 0.5  # most sequences changed (a draw of size 0 leaves one as it was)


def _rows_explained(out, src, explanations):
    """Whether every row of `out` equals one of the candidate transformations `explanations(src_row)` yields,
    compared where the candidate is not a random base (-1)."""
    for row, x in zip(out, src):
        if not any(np.array_equal(row[c >= 0], c[c >= 0]) for c in explanations(x)):
            return False
    return True


def _deletions(x, max_size=20):
    length = len(x)
    for size in range(max_size + 1):
        for start in range(length - max_size + 1):
            head = size // 2
            kept = np.concatenate([x[:start], x[start + size:]])
            yield np.concatenate([np.full(head, -1), kept, np.full(size - head, -1)])


def _insertions(x, max_size=20):
    length = len(x)
    for size in range(max_size + 1):
        for at in range(length):
            full = np.concatenate([x[:at], np.full(size, -1), x[at:]])
            yield full[size // 2: size // 2 + length]


def _inversions(x, max_size=20):
    comp = np.array([3, 2, 1, 0, 4])
    for size in range(max_size + 1):
        for start in range(len(x) - max_size + 1):
            y = x.copy()
            y[start:start + size] = comp[x[start:start + size][::-1]]
            yield y


def _rotations(x, max_shift=20):
    return (np.roll(x, s) for s in range(-max_shift, max_shift + 1))


def test_evolution_augmentations_transform_as_evoaug_defines_them():
    batch = _batch_with_n(rows=24, length=50)
    src = np.asarray(batch)
    for op, explanations in [(A.delete, _deletions), (A.insert, _insertions), (A.invert, _inversions),
                             (A.translocate, _rotations)]:
        out = np.asarray(op(batch, jax.random.PRNGKey(1), 20))
        assert _rows_explained(out, src, explanations), op.__name__
        assert not _rows_explained(out, src, lambda x: [x])  # not the identity
    # substitutions: round(0.1 / 0.75 * L) positions drawn, a quarter of them keep their base
    mutated = np.asarray(A.substitute(_batch_with_n(rows=512, length=60), jax.random.PRNGKey(2), 0.1))
    differs = (mutated != np.asarray(_batch_with_n(rows=512, length=60))).sum(axis=1)
    assert differs.max() <= 8 and 0.09 < differs.mean() / 60 < 0.11
    # each sequence gets 1..max_per_seq of the enabled ones: with one allowed, a row is a rotation or an
    # inversion, and both kinds occur
    ops = [lambda c, k: A.invert(c, k, 20), lambda c, k: A.translocate(c, k, 20)]
    one_each = np.asarray(A.evolve(batch, jax.random.PRNGKey(3), ops, max_per_seq=1))
    rotated = [any(np.array_equal(r, c) for c in _rotations(x)) for r, x in zip(one_each, src)]
    inverted = [any(np.array_equal(r, c) for c in _inversions(x)) for r, x in zip(one_each, src)]
    assert all(a or b for a, b in zip(rotated, inverted)) and any(rotated) and any(inverted)
    with pytest.raises(C.ConfigError, match="train.evo_delete_max must be smaller than the sequence length 50"):
        A.delete(batch, jax.random.PRNGKey(0), 50)


def test_evolution_and_fine_tuning_settings():
    default = C.load_recipe("default")
    evo = C.with_overrides(default, {"train.evo_delete_max": 20, "train.finetune_steps": 500})
    assert "evo_delete_max" not in default.identity()["train"]  # runs from before these settings keep their ids
    assert evo.identity()["train"]["evo_delete_max"] == 20
    for key, value, message in [("train.evo_mutate_frac", 0.8, r"in \[0, 0.75\)"),
                                ("train.evo_insert_max", -1, "zero or positive"),
                                ("train.finetune_steps", default.train.steps, "less than train.steps")]:
        with pytest.raises(C.ConfigError, match=f"{key} must be .*{message}"):
            C.with_overrides(default, {key: value}).validate()
    schedule = make_schedule(evo.train)
    main_steps = evo.train.steps - 500
    assert float(schedule(main_steps // 2)) > 1e-3 and float(schedule(main_steps - 1)) < 1e-5
    assert float(schedule(main_steps)) == float(schedule(evo.train.steps - 1)) == pytest.approx(1e-4)
    unchanged = optax.warmup_cosine_decay_schedule(0.0, 2e-3, 150, 3000)  # without fine-tuning, as before
    assert [float(make_schedule(default.train)(c)) for c in (75, 1500, 2999)] == \
        pytest.approx([float(unchanged(c)) for c in (75, 1500, 2999)], rel=1e-6)


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
    # the composition baseline beside it: the synthetic negatives share the positives' GC by design
    assert 0.3 < summary["composition_valid_auroc"] < summary["baseline_valid_auroc"]
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
    assert result["composition"].startswith("dinucleotide composition") and 0 < result["composition_test_auroc"] < 1
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
