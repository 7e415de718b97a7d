"""Sweeps on a real two-node local Ray cluster (cluster/local.sh), including the loss of a node mid-sweep."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, cli_fails, kill_node_under_a_checkpointed_run, run_cli, start_cli
from tfbind_dist.experiment import group_into_packs, pack_key
from tfbind_dist.sweeps.spec import load_spec



def _spec(tmp_path, steps=150):
    spec = {"name": "drill", "recipe": "chapter", "defaults": {"data": {"path": "synthetic", "synth_n_train": 1200},
                                          "train": {"steps": steps, "eval_every": 50}},
            "matrix": {"data.tf": ["CTCF", "ZNF24"], "train.seed": [1, 2]}}
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spec_validation_names_the_bad_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"defaults": {"train": {"stepz": 3}}}))
    proc = run_cli("sweep", bad, "--out", tmp_path / "s")  # one real process: exit status and stderr as a user sees
    assert proc.returncode == 2 and "train.stepz" in proc.stderr
    for spec, message in [({"matrix": {"data.tf": ["CTCF"], "model.nme": ["conv"]}}, "model.nme"),
                          ({"pack": 0}, "pack must be an integer >= 1")]:
        bad.write_text(yaml.safe_dump(spec))
        assert message in cli_fails(capsys, "sweep", bad, "--out", tmp_path / "s")
    assert not (tmp_path / "s").exists()
    spec = load_spec(REPO / "jobs" / "per_tf.yaml", {"steps": "100"})
    assert len(spec.jobs) == 10 and {j.config.train.steps for j in spec.jobs} == {100}
    assert len({j.job_id for j in spec.jobs}) == 10
    packed = load_spec(REPO / "jobs" / "per_tf_packed.yaml")
    assert packed.pack == 10 and [len(p) for p in group_into_packs(packed.jobs, lambda j: pack_key(j.config), 10)] == [10]
    # job ids name run directories that a later sweep, in another process, must find again
    code = ("from tfbind_dist.sweeps.spec import load_spec; "
            "print(' '.join(j.job_id for j in load_spec('jobs/per_tf.yaml').jobs))")
    ids = {seed: subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                                env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split() for seed in ("1", "2")}
    assert ids["1"] == ids["2"] == [j.job_id for j in load_spec(REPO / "jobs" / "per_tf.yaml").jobs]
    assert {j.config.model.name for j in load_spec(REPO / "jobs" / "ablations_znf24.yaml").jobs} == {
        "baseline", "single_conv_only", "fewer_conv_channels", "remove_MLP", "add_one_transformer_block",
        "add_two_transformer_block"}


@pytest.mark.slow
def test_multi_host_job_spans_both_nodes(ray_cluster, tmp_path):
    spec = tmp_path / "two_hosts.yaml"
    spec.write_text(yaml.safe_dump({"name": "pod", "recipe": "chapter", "resources": {"hosts": 2}, "defaults": {
        "data": {"tf": "CTCF", "path": "synthetic", "synth_n_train": 1200},
        "train": {"steps": 30, "eval_every": 10}, "model": {"overrides": {"dropout_rate": 0.0}}}}))
    proc = run_cli("sweep", spec, "--out", tmp_path / "sweep", "--address", ray_cluster, "--quiet",
                   env_extra={"XLA_FLAGS": ""}, check=True)
    assert "1/1 jobs finished" in proc.stdout
    (run,) = [p.parent for p in (tmp_path / "sweep").glob("*/summary.json")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["num_devices"] == 2
    attempts = [json.loads(line) for log in run.glob("attempts*.jsonl") for line in log.read_text().splitlines()]
    assert sorted((a["process"], a["node"]) for a in attempts) == [(0, "127.0.0.2"), (1, "127.0.0.3")] or \
        sorted((a["process"], a["node"]) for a in attempts) == [(0, "127.0.0.3"), (1, "127.0.0.2")]


@pytest.mark.slow
def test_sweep_survives_worker_node_loss_and_reruns_nothing(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    driver = start_cli("sweep", _spec(tmp_path), "--out", sweep, "--address", ray_cluster, "--max-retries", "3",
                       "--quiet", env_extra={"XLA_FLAGS": ""})
    victim = kill_node_under_a_checkpointed_run(driver, lambda: sweep.glob("*/attempts.jsonl"))
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, out + err

    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert len(summaries) == 4 and all(s["status"] == "finished" for s in summaries.values())
    resumed = summaries[victim.name]["resumed_from"]
    assert resumed and resumed[-1] > 0, summaries[victim.name]
    attempts = [json.loads(line) for line in (victim / "attempts.jsonl").read_text().splitlines()]
    assert attempts[0]["node"] == "127.0.0.3" and attempts[-1]["node"] == "127.0.0.2"
    metrics = pd.read_parquet(victim / "metrics.parquet")
    train_steps = metrics[(metrics.split == "train") & (metrics.metric == "loss")].step
    assert sorted(train_steps) == list(range(1, 151)), "the resumed run must continue, not repeat or skip steps"

    board = pd.read_parquet(sweep / "leaderboard.parquet")
    assert len(board) == 4 and board.run.is_unique and set(board.run) == set(summaries)
    assert board.set_index("run").loc[victim.name, "node"] == "127.0.0.2"  # where its last attempt ran
    assert (board.data == "synthetic").all() and (board.reference == "- (synthetic data)").all()
    assert (sweep / "learning_curves.png").exists() and (sweep / "leaderboard.md").exists()

    again = run_cli("sweep", _spec(tmp_path), "--out", sweep, "--address", ray_cluster, "--quiet",
                    env_extra={"XLA_FLAGS": ""}, check=True)
    assert "4 already finished, 0 to run" in again.stdout
    assert [json.loads(line) for line in (victim / "attempts.jsonl").read_text().splitlines()] == attempts
