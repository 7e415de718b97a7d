"""Run and sweep directories on object storage (gs://), against a GCS emulator process."""
import json
import uuid

import pytest
import yaml

from conftest import run_cli
from tfbind_dist import config as C
from tfbind_dist.storage import as_path, read_parquet
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.restore import load_model


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
    spec.write_text(yaml.safe_dump({"name": "gcs", "recipe": "chapter", "defaults": {
        "data": {"path": "synthetic", "synth_n_train": 1200}, "model": {"name": "fewer_conv_channels"},
        "train": {"steps": 10, "eval_every": 10}},  # one evaluation: the emulator takes seconds per checkpoint
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


def test_atomic_output_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    from tfbind_dist.storage import atomic_output

    target = tmp_path / "out" / "part-00000.parquet"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"whole" and sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_stale_temps_of_dead_writers_on_this_host_are_removed_and_others_kept(tmp_path):
    import os
    import subprocess
    import sys

    from tfbind_dist.storage import _writer_id, remove_stale_temps

    host = _writer_id().rpartition("-")[0]
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    files = {"dead": f".part-00001.parquet.{host}-{dead}.x1.tmp", "live": f".part-00002.parquet.{host}-{os.getpid()}.x2.tmp",
             "other_host": f".part-00003.parquet.elsewhere-{dead}.x3.tmp", "not_a_temp": "part-00004.parquet"}
    for name in files.values():
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in files.items() if k != "dead")
    assert remove_stale_temps("gs://bucket/folder") == 0  # object storage has no temp files


def test_expand_matches_local_patterns_and_keeps_plain_paths(tmp_path):
    from tfbind_dist.storage import expand

    for name in ("a-run", "b-run", "notes.txt"):
        (tmp_path / name).mkdir()
    assert expand(str(tmp_path / "*-run")) == [str(tmp_path / "a-run"), str(tmp_path / "b-run")]
    assert expand("gs://bucket/exact") == ["gs://bucket/exact"]
