"""s3:// wherever gs:// works, against a local S3 server (moto, IAM authentication on) started by the tests."""
import json
import re
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from conftest import kill_driver_after, run_cli
from tfbind_dist.storage import as_path, open_parquet, read_parquet


def _published(run: str) -> list[int]:
    """The steps of a run's latest checkpoint published whole on the bucket."""
    latest = as_path(f"{run}/checkpoints/latest")
    return sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit() and (p / "_PUBLISHED").exists()) \
        if latest.is_dir() else []


@pytest.mark.slow
def test_training_on_s3_killed_mid_run_resumes_exactly(s3_bucket, synth_dir, tmp_path):
    from tfbind_dist.training.restore import load_model

    run = f"{s3_bucket}/{uuid.uuid4().hex[:8]}/run"
    args = ["train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--model", "fewer_conv_channels",
            "--steps", "120", "--set", "train.eval_every=20", "--out", run, "--quiet"]
    published = kill_driver_after(args, lambda: _published(run), 1, 6)
    assert len(published) == 1  # one step on the bucket: the older one is removed once the newer is whole
    proc = run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True)
    summary = json.loads(proc.stdout)
    assert summary["status"] == "finished" and summary["resumed_from"] == published

    straight = tmp_path / "straight"  # the same command, uninterrupted, on local disk
    reference_summary = json.loads(run_cli(*args[:-3], "--out", straight, "--quiet", env_extra={"XLA_FLAGS": ""},
                                           check=True).stdout)
    assert reference_summary["best_valid_auroc"] == summary["best_valid_auroc"]
    resumed, reference = read_parquet(f"{run}/metrics.parquet"), read_parquet(straight / "metrics.parquet")
    pd.testing.assert_frame_equal(resumed.sort_values(["step", "split", "metric"], ignore_index=True),
                                  reference.sort_values(["step", "split", "metric"], ignore_index=True))
    assert _published(run) == [120] and load_model(run).step == summary["best_step"]
    names = {p.name for p in as_path(f"{run}/checkpoints/best").iterdir()}
    assert names == {str(summary["best_step"])}


@pytest.mark.slow
def test_a_sweep_on_the_two_node_cluster_keeps_its_runs_only_on_s3(s3_bucket, ray_cluster, tmp_path):
    spec = tmp_path / "s3.yaml"
    spec.write_text(yaml.safe_dump({"name": "s3", "recipe": "chapter", "defaults": {
        "data": {"path": "synthetic", "synth_n_train": 1200}, "model": {"name": "fewer_conv_channels"},
        "train": {"steps": 20, "eval_every": 10}}, "matrix": {"data.tf": ["CTCF", "ZNF24"]}}))
    out = f"{s3_bucket}/{uuid.uuid4().hex[:8]}/sweep"
    first = run_cli("sweep", spec, "--out", out, "--address", ray_cluster, "--quiet", env_extra={"XLA_FLAGS": ""},
                    check=True)
    assert "2/2 jobs finished" in first.stdout
    board = read_parquet(f"{out}/leaderboard.parquet")
    assert sorted(board.tf) == ["CTCF", "ZNF24"] and set(board.node) <= {"127.0.0.2", "127.0.0.3"}
    for name in board.run:
        assert {"summary.json", "checkpoints", "attempts.jsonl"} <= {p.name for p in as_path(f"{out}/{name}").iterdir()}
    again = run_cli("sweep", spec, "--out", out, "--address", ray_cluster, "--quiet", env_extra={"XLA_FLAGS": ""},
                    check=True)
    assert "2 already finished, 0 to run" in again.stdout
    report = run_cli("report", out, check=True)
    assert "CTCF" in report.stdout and "ZNF24" in report.stdout


@pytest.mark.slow
def test_a_search_on_s3_writes_its_trials_and_best_recipe_there(s3_bucket, ray_cluster, tmp_path):
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "s3", "recipe": "chapter", "defaults": {"data": {"path": "synthetic", "synth_n_train": 1200},
                                                        "model": {"name": "fewer_conv_channels"},
                                                        "train": {"steps": 20, "eval_every": 10}},
        "tfs": ["CTCF"], "space": {"train.learning_rate": {"grid": [0.002, 0.004]}}, "scheduler": "none",
        "resources": {"cpus": 1}, "num_samples": 1, "max_concurrent": 2}))
    out = f"{s3_bucket}/{uuid.uuid4().hex[:8]}/search"
    proc = run_cli("tune", spec, "--out", out, "--address", ray_cluster, "--quiet", env_extra={"XLA_FLAGS": ""},
                   check=True)
    assert f"{out}/best_recipe.yaml" in proc.stdout
    board = read_parquet(f"{out}/leaderboard.parquet")
    assert len(board) == 2 and set(board.state) == {"finished"} and set(board.steps) == {20}
    recipe = yaml.safe_load(as_path(f"{out}/best_recipe.yaml").read_text())
    leaders = board[board.objective == board.objective.max()]
    assert recipe["train"]["learning_rate"] in set(leaders["train.learning_rate"])
    assert len(list(as_path(f"{out}/runs").iterdir())) == 2 and as_path(f"{out}/tune").is_dir()


@pytest.mark.slow
def test_scoring_with_everything_on_s3_resumes_after_a_driver_kill(s3_bucket, ray_cluster, small_run, tmp_path):
    from tfbind_dist.interpret import explain
    from tfbind_dist.rundir import RunDir
    from tfbind_dist.training.loop import train_and_evaluate
    from tfbind_dist.training.restore import load_model

    root = f"{s3_bucket}/{uuid.uuid4().hex[:8]}"
    run = f"{root}/ctcf"
    train_and_evaluate(RunDir(small_run).load_config(), run, progress=False)
    genome = "".join(np.random.default_rng(5).choice(list("ACGT"), 200 * 500))
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chrS\n" + "\n".join(genome[i:i + 80] for i in range(0, len(genome), 80)) + "\n")
    run_cli("data", "shard", fasta, "--out", f"{root}/shards", "--rows-per-shard", "100", "--quiet", check=True)
    out = f"{root}/scores"
    args = ["score", "--runs", f"{root}/ctc*", "--input", f"{root}/shards", "--out", out, "--outputs", "prob",
            "--batch-size", "50", "--address", ray_cluster, "--quiet"]
    done = kill_driver_after(args, lambda: sorted(p.name for p in as_path(f"{out}/_done").iterdir())
                             if as_path(f"{out}/_done").is_dir() else [], 2, 5)
    rerun = run_cli(*args, check=True, env_extra={"XLA_FLAGS": ""}, timeout=900)
    already = int(re.search(r"(\d+) already done", rerun.stdout).group(1))  # an actor may finish one more shard
    assert len(done) <= already < 5 and f"{already} already done, {5 - already} to score" in rerun.stdout
    assert f"scored {(5 - already) * 100:,} rows into {5 - already} shards" in rerun.stdout  # only the rest

    def read(path):
        with open_parquet(path) as source:
            return source.read()

    scores = pa.concat_tables([read(p) for p in sorted(as_path(out).glob("part-*.parquet"))])
    assert sorted(scores.column("id").to_pylist()) == list(range(500))  # each id exactly once
    model = load_model(run)
    codes = np.frombuffer(genome.translate(str.maketrans("ACGT", "\0\1\2\3")).encode(), np.uint8).reshape(500, 200)
    order = np.argsort(scores.column("id").to_numpy())
    direct = explain(model.module, model.variables, codes, ["grad"])
    np.testing.assert_allclose(scores.column("CTCF_prob").to_numpy()[order], direct["prediction"], atol=1e-5)


@pytest.mark.slow
def test_a_missing_bucket_and_refused_credentials_are_one_line_before_any_work(s3_bucket, synth_dir, tmp_path):
    import boto3

    base = ["train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--steps", "5", "--quiet"]
    missing = run_cli(*base, "--out", "s3://no-such-bucket/run")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "the bucket s3://no-such-bucket does not exist" in missing.stderr, missing.stderr
    run = f"{s3_bucket}/{uuid.uuid4().hex[:8]}/run"
    wrong = run_cli(*base, "--out", run, env_extra={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert wrong.returncode == 2 and wrong.stderr.strip().count("\n") == 0, wrong.stderr
    assert "s3://runs refused the credentials" in wrong.stderr and "AWS_PROFILE" in wrong.stderr
    unknown = run_cli("score", "--runs", run, "--input", f"{s3_bucket}/none", "--out", run, "--outputs", "prob",
                      env_extra={"AWS_ACCESS_KEY_ID": "AKIANOTAKEY"})
    assert unknown.returncode == 2 and "refused the credentials" in unknown.stderr
    s3 = boto3.client("s3")
    prefix = run.removeprefix(f"{s3_bucket}/").split("/")[0]
    assert s3.list_objects_v2(Bucket="runs", Prefix=prefix).get("KeyCount", 0) == 0  # nothing left behind
    assert not any(tmp_path.iterdir())
