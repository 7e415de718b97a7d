"""Training on real multi-device meshes, resume equivalence, and the CLI run as a user would."""
import json

import jax
import numpy as np
import pandas as pd
import pytest

from conftest import cli_fails, run_cli
from tfbind_dist.cli import main
from tfbind_dist import config as C
from tfbind_dist.rundir import RunConfigMismatch
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.restore import load_model


def _config(synth_dir, **overrides):
    base = {"data.tf": "CTCF", "data.path": str(synth_dir), "train.steps": 20, "train.eval_every": 10,
            "data.eval_batch_size": 256}
    return C.with_overrides(C.RunConfig(), {**base, **overrides})


def _train_losses(workdir):
    m = pd.read_parquet(workdir / "metrics.parquet")
    return m[(m.split == "train") & (m.metric == "loss")].sort_values("step").value.to_numpy()


def test_eight_devices_match_one_device(synth_dir, tmp_path):
    assert jax.device_count() == 8
    cfg = _config(synth_dir, **{"model.overrides.dropout_rate": 0.0})
    one = train_and_evaluate(cfg, tmp_path / "one", progress=False, devices=jax.devices()[:1])
    eight = train_and_evaluate(cfg, tmp_path / "eight", progress=False)
    assert one["num_devices"] == 1 and eight["num_devices"] == 8
    a, b = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "eight")
    assert len(a) == len(b) == 20
    assert a[-1] < a[0]  # it learns
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert abs(one["best_valid_auroc"] - eight["best_valid_auroc"]) < 1e-3


def test_batch_must_divide_over_devices(synth_dir, tmp_path):
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        train_and_evaluate(_config(synth_dir, **{"train.batch_size": 12}), tmp_path / "r", progress=False)


# Halted at an evaluation; and halted off one, with every augmentation on and the resumed part crossing
# into the fine-tuning phase (from step 25): the resumed run draws the augmentations the straight one drew.
EVERY_AUGMENTATION = {"train.augment_rc": True, "train.jitter": 3, "train.evo_delete_max": 20,
                      "train.evo_insert_max": 20, "train.evo_invert_max": 20, "train.evo_translocate_max": 20,
                      "train.evo_mutate_frac": 0.05, "train.finetune_steps": 15}


@pytest.mark.parametrize("halt_after, augmentation",
                         [(20, {}), pytest.param(13, EVERY_AUGMENTATION, marks=pytest.mark.slow)])
def test_resume_gives_the_same_final_metrics(synth_dir, tmp_path, halt_after, augmentation):
    cfg = _config(synth_dir, **{"train.steps": 40, "train.eval_every": 20, **augmentation})
    straight = train_and_evaluate(cfg, tmp_path / "straight", progress=False)
    halted = train_and_evaluate(C.with_overrides(cfg, {"train.halt_after": halt_after}), tmp_path / "resumed",
                                progress=False)
    assert halted == {"status": "halted", "step": halt_after, "tf": "CTCF", "model": "conv_v2"}
    assert not (tmp_path / "resumed" / "summary.json").exists()
    assert load_model(tmp_path / "resumed", which="latest").step == halt_after
    resumed = train_and_evaluate(cfg, tmp_path / "resumed", progress=False)
    for key in ("best_step", "best_valid_auroc", "test_auroc", "test_accuracy", "test_loss"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
    a = pd.read_parquet(tmp_path / "straight" / "metrics.parquet")
    b = pd.read_parquet(tmp_path / "resumed" / "metrics.parquet")
    assert len(a) == len(b)
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), atol=1e-6)


def test_rerun_with_other_settings_is_refused(synth_dir, tmp_path):
    cfg = _config(synth_dir, **{"train.steps": 10, "train.eval_every": 10})
    train_and_evaluate(cfg, tmp_path / "r", progress=False)
    with pytest.raises(RunConfigMismatch, match="train.learning_rate"):
        train_and_evaluate(C.with_overrides(cfg, {"train.learning_rate": 0.01}), tmp_path / "r", progress=False)


@pytest.mark.slow
def test_cli_train_synthetic_ctcf_end_to_end(tmp_path, capsys):
    """The README path: train on the embedded synthetic data, then evaluate, predict and sanity-check."""
    run = tmp_path / "ctcf"
    one_device = {"XLA_FLAGS": ""}
    proc = run_cli("train", "--tf", "CTCF", "--data", "synthetic", "--steps", "300", "--out", run,
                   env_extra=one_device, check=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_valid_auroc"] >= 0.95, summary
    assert summary["num_devices"] == 1 and summary["steps"] == 300
    for name in ("config.yaml", "metrics.parquet", "learning_curve.png", "checkpoints/best", "checkpoints/latest"):
        assert (run / name).exists(), name
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    assert json.loads(proc.stdout)["test_auroc"] == summary["test_auroc"]
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert set(metrics.columns) == {"step", "split", "metric", "value"}
    assert set(metrics[metrics.split == "valid"].metric) == {"loss", "accuracy", "auroc", "auprc"}

    ev = json.loads(run_cli("evaluate", "--run", run, "--split", "test", env_extra=one_device, check=True).stdout)
    assert ev["auroc"] == pytest.approx(summary["test_auroc"], abs=1e-6)

    sanity = run_cli("sanity", "--run", run, env_extra=one_device, check=True).stdout
    lines = sanity.strip().splitlines()
    motif_prob = float(lines[1].split()[-1])
    low_probs = [float(line.split()[-1]) for line in lines[2:]]
    assert len(low_probs) == 8 and motif_prob > max(low_probs), sanity

    out = tmp_path / "pred.csv"
    seqs = tmp_path / "seqs.txt"
    seqs.write_text("A" * 200 + "\n" + "CCACCAGGGGGCGC" * 14 + "AAAA\n")
    run_cli("predict", "--run", run, "--input", seqs, "--output", out, env_extra=one_device, check=True)
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["sequence", "probability", "logit"] and len(pred) == 2
    assert pred.probability[1] > pred.probability[0]
    assert "invalid base 'X' at position 199" in cli_fails(capsys, "predict", "--run", run, "--sequence",
                                                           "ACGT" * 49 + "ACGX")
    assert main(["train", "--tf", "CTCF", "--data", "synthetic", "--steps", "300", "--out", str(run)]) == 0
    assert json.loads(capsys.readouterr().out) == summary  # finished runs are not trained again


def test_resume_after_a_kill_between_best_and_latest_saves(synth_dir, tmp_path):
    """A run killed after saving a new best but before its latest checkpoint resumes cleanly."""
    import shutil

    cfg = _config(synth_dir, **{"train.steps": 40, "train.eval_every": 20})
    straight = train_and_evaluate(cfg, tmp_path / "straight", progress=False)
    assert straight["best_step"] == 40
    run = tmp_path / "run"
    train_and_evaluate(C.with_overrides(cfg, {"train.halt_after": 20}), run, progress=False)
    best = run / "checkpoints" / "best"
    shutil.rmtree(best / "20")  # as if killed right after best/40 was written (and best/20 pruned)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "best" / "40", best / "40")
    resumed = train_and_evaluate(cfg, run, progress=False)
    assert resumed["resumed_from"] == [20]
    for key in ("best_step", "best_valid_auroc", "test_auroc"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
