"""One training job over 2 processes x 4 CPU devices (jax.distributed, gloo, coordinator on 127.0.0.1)."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from tfbind_dist import config as C
from tfbind_dist.train.loop import train_and_evaluate

STEPS, EVAL_EVERY = 40, 10


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(synth_dir):
    return C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "data.path": str(synth_dir), "train.steps": STEPS,
                                            "train.eval_every": EVAL_EVERY, "model.overrides.dropout_rate": 0.0,
                                            "data.eval_batch_size": 256})


def _launch(config_path, out, port):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_NUM_CPU_DEVICES": "4",
           "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
    return [subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", "train", "--config", str(config_path),
                              "--out", str(out), "--quiet", "--coordinator", f"127.0.0.1:{port}",
                              "--num-processes", "2", "--process-id", str(i)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def _wait(procs, timeout=600):
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


def _losses(run):
    m = pd.read_parquet(run / "metrics.parquet")
    return m[(m.split == "train") & (m.metric == "loss")].sort_values("step")


def _latest_step(run):
    latest = run / "checkpoints" / "latest"
    steps = [int(p.name) for p in latest.iterdir() if p.name.isdigit()] if latest.exists() else []
    return max(steps, default=0)


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_after_kill(synth_dir, tmp_path):
    cfg = _config(synth_dir)
    config_path = tmp_path / "run.yaml"
    C.save(cfg, config_path)
    single = train_and_evaluate(cfg, tmp_path / "one_process", progress=False)
    assert single["num_devices"] == 8 and single["num_processes"] == 1

    _wait(_launch(config_path, tmp_path / "two", _free_port()))
    import json

    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["num_devices"] == 8 and two["num_processes"] == 2
    a, b = _losses(tmp_path / "one_process"), _losses(tmp_path / "two")
    assert list(a.step) == list(b.step) == list(range(1, STEPS + 1))
    np.testing.assert_allclose(a.value, b.value, atol=1e-4)
    assert two["best_valid_auroc"] == pytest.approx(single["best_valid_auroc"], abs=1e-4)

    killed = tmp_path / "killed"
    procs = _launch(config_path, killed, _free_port())
    deadline = time.time() + 300
    while _latest_step(killed) < 2 * EVAL_EVERY and time.time() < deadline:
        assert all(p.poll() is None for p in procs), "finished before it could be killed"
        time.sleep(0.1)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    checkpoint_step = _latest_step(killed)
    assert 0 < checkpoint_step < STEPS and not (killed / "summary.json").exists()

    _wait(_launch(config_path, killed, _free_port()))
    resumed = json.loads((killed / "summary.json").read_text())
    assert resumed["resumed_from"] and resumed["resumed_from"][-1] >= checkpoint_step
    for key in ("best_step", "best_valid_auroc", "test_auroc", "test_loss", "test_accuracy"):
        assert resumed[key] == pytest.approx(two[key], abs=1e-6), key
    np.testing.assert_allclose(_losses(killed).value, b.value, atol=1e-6)
    assert yaml.safe_load((killed / "config.yaml").read_text())["train"]["steps"] == STEPS
