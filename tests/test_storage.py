"""Run and sweep directories on object storage (gs://), against a GCS emulator process."""
import json
import uuid

import pytest
import yaml

from conftest import run_cli
from tfbind_dist import config as C
from tfbind_dist.storage import as_path, read_parquet
from tfbind_dist.train.loop import train_and_evaluate
from tfbind_dist.train.restore import load_model


@pytest.mark.slow
def test_run_directory_on_gcs_resumes_from_its_checkpoint(gcs_bucket, synth_dir):
    run = f"{gcs_bucket}/{uuid.uuid4().hex[:8]}/run"
    cfg = C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "data.path": str(synth_dir), "train.steps": 20,
                                           "train.eval_every": 10, "data.eval_batch_size": 256})
    halted = train_and_evaluate(C.with_overrides(cfg, {"train.halt_after": 10}), run, progress=False)
    assert halted["status"] == "halted" and halted["step"] == 10
    names = {p.name for p in as_path(run).iterdir()}
    assert {"config.yaml", "metrics.parquet", "progress.json", "checkpoints", "tb"} <= names
    assert "summary.json" not in names

    summary = train_and_evaluate(cfg, run, progress=False)
    assert summary["status"] == "finished" and summary["resumed_from"] == [10]
    metrics = read_parquet(f"{run}/metrics.parquet")
    train_steps = metrics[(metrics.split == "train") & (metrics.metric == "loss")].step
    assert sorted(train_steps) == list(range(1, 21))  # resumed, not restarted
    assert json.loads(as_path(f"{run}/summary.json").read_text()) == summary
    assert as_path(f"{run}/learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert load_model(run).step == summary["best_step"]
    assert train_and_evaluate(cfg, run, progress=False) == summary  # finished: not trained again


@pytest.mark.slow
def test_sweep_writes_run_directories_to_gcs(gcs_bucket, ray_cluster, tmp_path):
    spec = tmp_path / "gcs.yaml"
    spec.write_text(yaml.safe_dump({"name": "gcs", "defaults": {
        "data": {"path": "synthetic", "synth_n_train": 1200}, "train": {"steps": 20, "eval_every": 10}},
        "matrix": {"data.tf": ["CTCF", "ZNF24"]}}))
    out = f"{gcs_bucket}/{uuid.uuid4().hex[:8]}/sweep"
    first = run_cli("sweep", spec, "--out", out, "--address", ray_cluster, "--quiet",
                    env_extra={"XLA_FLAGS": ""}, check=True)
    assert "2/2 jobs finished" in first.stdout
    board = read_parquet(f"{out}/leaderboard.parquet")
    assert sorted(board.tf) == ["CTCF", "ZNF24"] and set(board.node) <= {"127.0.0.2", "127.0.0.3"}
    assert "| CTCF |" in as_path(f"{out}/leaderboard.md").read_text()
    assert as_path(f"{out}/learning_curves.png").exists()
    for run in board.run:
        assert {"summary.json", "checkpoints", "attempts.jsonl"} <= {p.name for p in as_path(f"{out}/{run}").iterdir()}

    again = run_cli("sweep", spec, "--out", out, "--address", ray_cluster, "--quiet",
                    env_extra={"XLA_FLAGS": ""}, check=True)
    assert "2 already finished, 0 to run" in again.stdout
    report = run_cli("report", out, check=True)
    assert "CTCF" in report.stdout
