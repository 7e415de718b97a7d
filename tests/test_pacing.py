"""Multi-device training must not deadlock at evaluation/checkpoint time, and must never hang for good.

The deadlock (train/pacing.py) needed the host to run more than 32 steps ahead of the devices,
which the loop did between evaluations; these runs leave 100 steps between evaluations and
evaluate and checkpoint beside two busy-looping processes (the 8-device run twice; the 2 x 4 job
once, after resuming from its stall drill). With the loop's dispatch window removed they abort or
hang within the first evaluation. `TFBIND_STRESS_REPEATS=20` repeats each run (CI runs each once).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO, busy_loops, launch_two_processes, wait_all
from tfbind_dist import config as C
from tfbind_dist.training.pacing import STALL_EXIT_CODE

REPEATS = int(os.environ.get("TFBIND_STRESS_REPEATS", "1"))
STEPS, EVAL_EVERY = 200, 100  # 2 evaluations and saves, each after 100 undisturbed steps
STALL_TIMEOUT = 120  # a deadlock in these runs exits within this many seconds instead of hanging the suite


def _write_config(synth_dir, path, **overrides):
    settings = {"data.tf": "CTCF", "data.path": str(synth_dir), "train.steps": STEPS, "train.eval_every": EVAL_EVERY,
                "data.eval_batch_size": 256, "train.stall_timeout": STALL_TIMEOUT, **overrides}
    C.save(C.with_overrides(C.RunConfig(), settings), path)
    return path


def _check_finished(run, num_processes):
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["num_devices"] == 8
    assert summary["num_processes"] == num_processes
    metrics = pd.read_parquet(run / "metrics.parquet")
    valid_steps = sorted(metrics[(metrics.split == "valid") & (metrics.metric == "auroc")].step)
    assert valid_steps == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(REPEATS))
def test_one_process_eight_devices_evaluates_and_saves_under_load(synth_dir, tmp_path, cpu_hog, repeat):
    config = _write_config(synth_dir, tmp_path / "run.yaml")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, "-m", "tfbind_dist.cli", "train", "--config", str(config),
                           "--out", str(tmp_path / "run"), "--quiet"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_finished(tmp_path / "run", num_processes=1)


def _latest_step(run):
    latest = run / "checkpoints" / "latest"
    return max((int(p.name) for p in latest.iterdir() if p.name.isdigit()), default=0) if latest.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(REPEATS))
def test_a_stuck_collective_exits_then_the_job_resumes_and_evaluates_under_load(synth_dir, tmp_path, repeat):
    """Freeze one process of a 2 x 4 job: its peer's all-reduce can never finish. The peer must exit with the
    stall status and a line naming the step and phase. The job then resumes beside two busy-looping processes
    and evaluates and saves after 100 undisturbed steps (where the deadlock struck), and finishes."""
    run = tmp_path / "run"
    frozen = _write_config(synth_dir, tmp_path / "frozen.yaml", **{"train.stall_timeout": 15})
    procs = launch_two_processes(frozen, run)
    deadline = time.time() + 600
    while _latest_step(run) < EVAL_EVERY and time.time() < deadline:
        assert all(p.poll() is None for p in procs), "finished or failed before it could be frozen"
        time.sleep(0.1)
    assert _latest_step(run) == EVAL_EVERY
    procs[1].send_signal(signal.SIGSTOP)
    try:
        _, err = procs[0].communicate(timeout=300)  # 15 s of stall, plus the watchdog's poll and a loaded box
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert procs[0].returncode == STALL_EXIT_CODE, err[-3000:]
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("tfbind: training CTCF/conv_v2 stalled: no progress for ")
    assert " at step " in last_line and " during " in last_line and "train.stall_timeout=15" in last_line
    assert not (run / "summary.json").exists()

    with busy_loops(2):  # the resumed job keeps the default 120 s stall timeout of a loaded box
        wait_all(launch_two_processes(_write_config(synth_dir, tmp_path / "run.yaml"), run), timeout=900)
    _check_finished(run, num_processes=2)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == [EVAL_EVERY]
