"""`tfbind tune`: search specs, and a search on the two-node local Ray cluster (ASHA, driver kill + resume)."""
import json
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, cli_fails, kill_node_under_a_checkpointed_run, latest_checkpoint_step, run_cli, start_cli
from tfbind_dist.tuning.spec import load_search


def _write(tmp_path, spec, name="search.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


BASE = {"name": "t", "tfs": ["CTCF"], "space": {"train.learning_rate": {"loguniform": [1.0e-4, 1.0e-2]}}}


@pytest.mark.parametrize("change, message", [
    ({"space": {"train.learning_rat": {"uniform": [0.1, 0.2]}}}, "train.learning_rat"),
    ({"space": {"model.overrides.dropout_rate": {"between": [0, 1]}}}, "space.model.overrides.dropout_rate"),
    ({"space": {"train.learning_rate": {"loguniform": [0.0, 1.0e-2]}}}, "positive low bound"),
    ({"space": {"train.batch_size": {"randint": [64, 32]}}}, "low < high"),
    ({"space": {"train.optimizer": {"choice": ["adam", "sgd"]}}}, "train.optimizer='sgd'"),
    ({"space": {"train.batch_size": {"grid": [32, 64]}}, "searcher": "optuna"}, "cannot search a `grid`"),
    ({"tfs": ["CTCF", "NOPE"]}, "unknown TF 'NOPE'"),
    ({"scheduler": {"name": "hyperband"}}, "scheduler"),
    ({"tfs": ["CTCF", "REST"], "resources": {"hosts": 2}}, "objective: per_tf"),
    ({"resource": {"cpus": 1}}, "unknown key 'resource'"),
    ({"resources": {"hosts": 0}}, "resources.hosts must be an integer >= 1"),
    ({"resources": {"cpus": 0}}, "needs cpus, gpus or tpus"),
    ({"num_samples": "many"}, "num_samples must be an integer"),
    ({"tfs": ["CTCF", "CTCF"]}, "'CTCF' is listed twice"),
    ({"pack": "yes"}, "pack must be true or false"),
    ({"pack": True, "objective": "per_tf", "resources": {"hosts": 2}}, "false with resources.hosts > 1"),
    ({"scheduler": {"name": "asha", "grace_period": 5000}}, "scheduler.grace_period=5000 is longer"),
    ({"recipe": "nope"}, "recipe: unknown recipe 'nope'"),
    ({"space": {"model.overrides.widht": {"choice": [1, 2]}}}, "space.model.overrides.widht=1"),
])
def test_search_spec_errors_name_the_key(tmp_path, capsys, change, message):
    assert message in cli_fails(capsys, "tune", _write(tmp_path, {**BASE, **change}), "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written that would block the corrected command


def test_a_search_spec_error_from_the_command_line(tmp_path):
    """The same check as a user meets it: a `tfbind tune` process exits 2 with the one line."""
    proc = run_cli("tune", _write(tmp_path, {**BASE, "tfs": ["CTCF", "NOPE"]}), "--out", tmp_path / "out")
    assert proc.returncode == 2 and "unknown TF 'NOPE'" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_shipped_search_specs_load_and_map_to_tune_domains():
    spec = load_search(REPO / "jobs" / "tune_demo.yaml", {"train.steps": 60})
    assert spec.base.train.steps == 60 and spec.tfs == ("CTCF",) and spec.scheduler.name == "asha"
    assert spec.max_steps() == 60 and spec.grace_steps() == 20
    space = spec.tune_space()
    assert set(space) == {"train.learning_rate", "model.overrides.dropout_rate", "model.overrides.kernel_size"}
    sample = {k: v.sample() for k, v in space.items()}
    config = spec.trial_config(sample, "CTCF")
    assert config.train.learning_rate == sample["train.learning_rate"] and 3e-4 <= sample["train.learning_rate"] <= 1e-2
    assert config.model.overrides["kernel_size"] in (11, 15, 19) and config.model.name == "motif_pool"
    grid = load_search(REPO / "jobs" / "tune_gabpa_grid.yaml")
    assert grid.scheduler.name == "none" and all(d == "grid" for d, _ in grid.space.values())
    assert load_search(REPO / "jobs" / "tune_gabpa_asha.yaml").space.keys() == grid.space.keys()


def test_a_search_directory_refuses_another_spec(tmp_path):
    from tfbind_dist.config import ConfigError
    from tfbind_dist.tuning.search import _check_spec

    spec = load_search(_write(tmp_path, BASE))
    _check_spec(tmp_path / "out", spec)
    _check_spec(tmp_path / "out", spec)  # the same spec continues
    other = load_search(_write(tmp_path, {**BASE, "num_samples": 9}))
    with pytest.raises(ConfigError, match="num_samples"):
        _check_spec(tmp_path / "out", other)


def _snapshot(out):
    """Each run directory: (finished, latest checkpoint step)."""
    return {run: ((run / "summary.json").exists(), latest_checkpoint_step(run)) for run in out.glob("runs/*")}


def _auroc_at(run, step):
    """The run's validation auROC at `step` (None before that evaluation or while metrics.parquet is replaced)."""
    try:
        metrics = pd.read_parquet(run / "metrics.parquet")
    except (OSError, ValueError):
        return None
    value = metrics[(metrics.split == "valid") & (metrics.metric == "auroc") & (metrics.step == step)].value
    return float(value.iloc[0]) if len(value) else None


def _leader_past(out, rung, step):
    """A run that is unfinished, checkpointed at `step` or later, and best of all runs at ASHA's rung.

    A re-run's scheduler rebuilds its rung from the results of the trials it restarts, so the run
    that led the rung keeps its place and must train to the end.
    """
    state = _snapshot(out)
    at_rung = {run: _auroc_at(run, rung) for run in state}
    best = max((v for v in at_rung.values() if v is not None), default=None)
    return [run for run, (done, ckpt) in state.items() if not done and ckpt >= step and at_rung[run] == best]


def _wait_for_training_processes_to_end(timeout=120):
    """After the driver's death Ray kills its trials and their training processes; wait until it has."""
    raylets = subprocess.run(["pgrep", "-f", "raylet.*--node_ip_address=127.0.0.[23]"], capture_output=True,
                             text=True).stdout.split()
    assert raylets, "the test cluster's raylets"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subprocess.run(["pgrep", "-P", ",".join(raylets), "-f", "ray::train_process"],
                          capture_output=True).returncode:
            return
        time.sleep(0.5)
    raise AssertionError("training processes outlived the killed driver's trials")


@pytest.mark.slow
def test_search_with_asha_survives_a_driver_kill_and_its_best_recipe_trains(ray_cluster, synth_dir, tmp_path):
    # 200 steps, ASHA's only early-stopping rung at step 20 (reduction factor 20). The kill lands while the
    # rung's leader trains past step 100: after the re-run it must finish, resumed from its checkpoint.
    spec = _write(tmp_path, {
        "name": "drill", "recipe": "default",
        "defaults": {"model": {"name": "fewer_conv_channels"}, "train": {"eval_every": 20, "warmup_steps": 0}},
        "tfs": ["CTCF"],
        "space": {"train.learning_rate": {"loguniform": [1.0e-5, 3.0e-2]},
                  "model.overrides.dropout_rate": {"uniform": [0.0, 0.3]}},
        "scheduler": {"name": "asha", "grace_period": 20, "reduction_factor": 20},
        "resources": {"cpus": 1}, "max_concurrent": 2, "num_samples": 5, "seed": 3})
    out = tmp_path / "search"
    args = ["tune", spec, "--out", out, "--address", ray_cluster, "--data", synth_dir, "--set", "train.steps=200",
            "--quiet"]
    driver = start_cli(*args, env_extra={"XLA_FLAGS": ""})
    deadline = time.time() + 900  # generous: the CI box may be loaded
    while time.time() < deadline:
        assert driver.poll() is None, driver.communicate()
        interrupted = _leader_past(out, 20, 100)
        if interrupted:
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _wait_for_training_processes_to_end()
    at_kill = _snapshot(out)
    assert interrupted and not at_kill[interrupted[0]][0], f"the kill must land mid-trial: {at_kill}"

    rerun = run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    assert "continuing the search" in rerun.stdout
    table = pd.read_parquet(out / "leaderboard.parquet")
    assert len(table) == 5 and set(table.state) <= {"finished", "stopped"}
    assert (table.state == "stopped").sum() >= 1, table  # ASHA stopped a weak trial early
    stopped = table[table.state == "stopped"]
    assert (stopped.last_step < 200).all() and (table[table.state == "finished"].last_step == 200).all()
    for run, (done, step) in at_kill.items():
        attempts = (run / "attempts.jsonl").read_text().strip().splitlines()
        if done:
            assert len(attempts) == 1, f"{run} finished before the kill and was trained again"
        elif len(attempts) > 1:  # restarted by the re-run: from its checkpoint, never from scratch
            resumed = json.loads((run / "progress.json").read_text())["resumed_from"]
            assert resumed and resumed[-1] >= step > 0, (run, resumed, step)
    for run in interrupted:
        assert (run / "summary.json").exists() and len((run / "attempts.jsonl").read_text().splitlines()) == 2

    assert {"learning_curves.png", "objective_vs_params.png", "leaderboard.md"} <= {p.name for p in out.iterdir()}
    best = table[table.state == "finished"].iloc[0]
    recipe = yaml.safe_load((out / "best_recipe.yaml").read_text())
    assert recipe["train"]["learning_rate"] == pytest.approx(best["train.learning_rate"])
    trained = run_cli("train", "--recipe", out / "best_recipe.yaml", "--data", synth_dir, "--out", tmp_path / "best",
                      "--set", "train.steps=20", "--quiet", env_extra={"XLA_FLAGS": ""}, check=True)
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert summary["model"] == "fewer_conv_channels" and summary["steps"] == 20, trained.stdout


@pytest.mark.slow
def test_per_tf_optuna_search_of_two_host_trials(ray_cluster, synth_dir, tmp_path):
    spec = _write(tmp_path, {
        "name": "pod", "recipe": "chapter", "defaults": {"model": {"name": "fewer_conv_channels"}, "train": {"steps": 20, "eval_every": 10}},
        "tfs": ["CTCF", "ZNF24"], "objective": "per_tf",
        "space": {"train.learning_rate": {"loguniform": [1.0e-3, 1.0e-2]}},
        "searcher": "optuna", "scheduler": "none", "resources": {"cpus": 1, "hosts": 2}, "num_samples": 1,
        "max_concurrent": 1})
    out = tmp_path / "search"
    run_cli("tune", spec, "--out", out, "--address", ray_cluster, "--data", synth_dir, "--quiet",
            env_extra={"XLA_FLAGS": ""}, check=True)
    table = pd.read_parquet(out / "leaderboard.parquet")
    assert sorted(table.search) == ["CTCF", "ZNF24"] and set(table.state) == {"finished"}
    for tf in ("CTCF", "ZNF24"):
        assert yaml.safe_load((out / tf / "best_recipe.yaml").read_text())["data"]["tf"] == tf
        for run in (out / tf / "runs").glob(f"{tf}-*"):
            summary = json.loads((run / "summary.json").read_text())
            assert summary["num_processes"] == 2 and summary["tf"] == tf
            nodes = {json.loads(line)["node"] for log in run.glob("attempts*.jsonl") for line in log.read_text().splitlines()}
            assert nodes == {"127.0.0.2", "127.0.0.3"}  # one process on each node (STRICT_SPREAD)


@pytest.mark.slow
def test_a_trial_whose_node_dies_resumes_from_its_checkpoint(ray_cluster, synth_dir, tmp_path):
    spec = _write(tmp_path, {
        "name": "loss", "recipe": "chapter", "defaults": {"model": {"name": "fewer_conv_channels"}, "train": {"steps": 150, "eval_every": 50}},
        "tfs": ["CTCF"], "space": {"train.learning_rate": {"grid": [0.001, 0.003]}}, "scheduler": "none",
        "resources": {"cpus": 1}, "num_samples": 1, "max_concurrent": 2})
    out = tmp_path / "search"
    driver = start_cli("tune", spec, "--out", out, "--address", ray_cluster, "--data", synth_dir, "--quiet",
                       env_extra={"XLA_FLAGS": ""})
    victim = kill_node_under_a_checkpointed_run(driver, lambda: out.glob("runs/*/attempts.jsonl"))
    stdout, stderr = driver.communicate(timeout=900)
    assert driver.returncode == 0, stdout + stderr

    table = pd.read_parquet(out / "leaderboard.parquet")
    assert len(table) == 2 and set(table.state) == {"finished"}, (table.to_string(), stdout[-3000:], stderr[-3000:])
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["resumed_from"] and summary["resumed_from"][-1] > 0, summary
    attempts = [json.loads(line) for line in (victim / "attempts.jsonl").read_text().splitlines()]
    assert attempts[0]["node"] == "127.0.0.3" and attempts[-1]["node"] == "127.0.0.2"
    metrics = pd.read_parquet(victim / "metrics.parquet")
    train_steps = metrics[(metrics.split == "train") & (metrics.metric == "loss")].step
    assert sorted(train_steps) == list(range(1, 151)), "the resumed run must continue, not repeat or skip steps"


def test_a_trial_reports_each_evaluation_once_and_its_last_only_after_its_runs_end():
    from tfbind_dist.tuning.search import new_reports

    records = [{"step": s, "valid_auroc": s / 100} for s in (10, 20, 30)]
    assert [r["step"] for r in new_reports(records, -1, 30, finished=False)] == [10, 20]
    assert [r["step"] for r in new_reports(records, 20, 30, finished=False)] == []
    assert [r["step"] for r in new_reports(records, 20, 30, finished=True)] == [30]
    assert [r["step"] for r in new_reports(records[:2], 10, 30, finished=True)] == [20]  # stopped early (patience)


@pytest.mark.slow
def test_trials_that_draw_the_same_parameters_share_one_run(ray_cluster, synth_dir, tmp_path):
    spec = _write(tmp_path, {
        "name": "same", "recipe": "chapter", "defaults": {"model": {"name": "fewer_conv_channels"}, "train": {"steps": 30, "eval_every": 10}},
        "tfs": ["CTCF"], "space": {"train.learning_rate": {"choice": [0.002]}}, "scheduler": "none",
        "searcher": "optuna", "resources": {"cpus": 1}, "num_samples": 3, "max_concurrent": 1})
    out = tmp_path / "search"
    run_cli("tune", spec, "--out", out, "--address", ray_cluster, "--data", synth_dir, "--quiet",
            env_extra={"XLA_FLAGS": ""}, check=True)
    table = pd.read_parquet(out / "leaderboard.parquet")
    (run,) = list(out.glob("runs/*"))
    assert len(table) == 3 and set(table.state) == {"finished"} and set(table.runs) == {f"runs/{run.name}"}
    assert sorted(table.steps) == [0, 0, 30]  # trained once, counted once
    assert len((run / "attempts.jsonl").read_text().splitlines()) == 1
    assert table.objective.nunique() == 1
    # one trial at a time: Optuna suggests the second and third after the first reported (the only end-to-end
    # search where it does), and the best recipe comes out of three trials
    assert yaml.safe_load((out / "best_recipe.yaml").read_text())["train"]["learning_rate"] == pytest.approx(0.002)


@pytest.mark.slow
def test_a_packed_trial_trains_its_tfs_as_one_program(ray_cluster, synth_dir, tmp_path):
    spec = _write(tmp_path, {
        "name": "packed", "recipe": "chapter", "defaults": {"model": {"name": "fewer_conv_channels"},
                                                            "train": {"steps": 20, "eval_every": 10}},
        "tfs": ["CTCF", "ZNF24"], "space": {"train.learning_rate": {"grid": [0.001, 0.003]}}, "scheduler": "none",
        "resources": {"cpus": 1}, "num_samples": 1, "pack": True})
    out = tmp_path / "search"
    run_cli("tune", spec, "--out", out, "--address", ray_cluster, "--data", synth_dir, "--quiet",
            env_extra={"XLA_FLAGS": ""}, check=True)
    table = pd.read_parquet(out / "leaderboard.parquet")
    assert len(table) == 2 and set(table.state) == {"finished"}
    runs = list(out.glob("runs/*"))
    assert len(runs) == 4 and {json.loads((r / "summary.json").read_text())["pack_size"] for r in runs} == {2}
    attempts = [json.loads(line) for r in runs for line in (r / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 4 and {a["pack"] for a in attempts} == {2}
    assert len({a["pid"] for a in attempts}) == 2  # one process per trial
