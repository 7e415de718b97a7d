"""A `tfbind train` stopped by SIGTERM (a spot VM's or pod's stop) saves the step it reached and exits 143;
the same command resumes from that step and ends where an uninterrupted run ends."""
import json
import random
import signal
import time

import pandas as pd
import pytest

from conftest import latest_checkpoint_step, run_cli, start_cli
from tfbind_dist.training.preemption import PREEMPTED_EXIT_CODE


def _wait_until_training(driver, run):
    deadline = time.time() + 600
    while not (run / "progress.json").exists():
        assert driver.poll() is None and time.time() < deadline, driver.communicate()
        time.sleep(0.05)


def _train_steps(run):
    metrics = pd.read_parquet(run / "metrics.parquet")
    return sorted(metrics[(metrics.split == "train") & (metrics.metric == "loss")].step)


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_the_rerun_ends_as_an_uninterrupted_run(ctcf_run, synth_dir, tmp_path):
    # the settings of `ctcf_run` (trained without interruption on the same 8 devices)
    args = ["train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--steps", "150",
            "--set", "train.eval_every=50", "--out", tmp_path / "run", "--quiet"]
    run = tmp_path / "run"
    driver = start_cli(*args)
    _wait_until_training(driver, run)
    delay = random.Random().uniform(0.5, 3.0)  # somewhere in the 150 steps, on or between evaluations
    time.sleep(delay)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == PREEMPTED_EXIT_CODE, (delay, out, err[-3000:])
    stopped = json.loads(out)
    step = stopped["step"]
    assert stopped["status"] == "preempted" and stopped["signal"] == "SIGTERM" and 0 < step < 150
    assert err.strip().splitlines()[-1] == (f"tfbind: CTCF/conv_v2 stopped by SIGTERM at step {step}, its checkpoint "
                                            "saved: the same command resumes from that step")
    assert latest_checkpoint_step(run) == step  # the step reached, not the last evaluation's
    assert json.loads((run / "progress.json").read_text())["status"] == "preempted"
    assert _train_steps(run) == list(range(1, step + 1))

    summary = json.loads(run_cli(*args, check=True).stdout)
    assert summary["status"] == "finished" and summary["resumed_from"] == [step]
    assert _train_steps(run) == list(range(1, 151))  # every step once
    straight = json.loads((ctcf_run / "summary.json").read_text())
    assert summary["test_auroc"] == pytest.approx(straight["test_auroc"], abs=1e-6)
    resumed, uninterrupted = (pd.read_parquet(r / "metrics.parquet").sort_values(["split", "metric", "step"])
                              .reset_index(drop=True) for r in (run, ctcf_run))
    pd.testing.assert_frame_equal(resumed[["split", "metric", "step"]], uninterrupted[["split", "metric", "step"]])
    assert (resumed.value - uninterrupted.value).abs().max() <= 1e-6


@pytest.mark.slow
def test_a_checkpoint_that_misses_the_grace_budget_is_given_up_in_one_line(synth_dir, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--model", "fewer_conv_channels",
            "--steps", "60", "--set", "train.eval_every=20", "--out", run, "--quiet"]
    # a budget no step and save can meet: the process must still end, at the budget, saying so
    driver = start_cli(*args, "--set", "train.preempt_grace=0.001", env_extra={"XLA_FLAGS": ""})
    _wait_until_training(driver, run)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == PREEMPTED_EXIT_CODE and not out.strip(), (out, err[-3000:])
    assert err.strip().splitlines()[-1] == (
        "tfbind: CTCF/fewer_conv_channels stopped by SIGTERM: its checkpoint did not finish within "
        "train.preempt_grace=0.001 s and was given up; the same command resumes from the run's last complete "
        "checkpoint")
    # nothing left behind blocks the same command, which trains every step once
    summary = json.loads(run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True).stdout)
    assert summary["status"] == "finished" and _train_steps(run) == list(range(1, 61))
