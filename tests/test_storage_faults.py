"""A disk that fills up under a command: one line naming the path, exit 2, and the same command finishes once
space is freed, keeping what was finished (a real tmpfs: `small_disk`)."""
import gzip
import json
import re
import time

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, run_cli, start_cli


RAY_NOTE = re.compile(r"^\[[^]]* E \d+ \d+\] core_worker\.cc:\d+: Actor with class name")  # Ray's, at every start


def _one_line(proc_or_err: str) -> str:
    lines = [line for line in proc_or_err.splitlines() if line.strip() and not RAY_NOTE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("tfbind: error: "), proc_or_err[-3000:]
    return lines[0]


@pytest.mark.slow
def test_training_stops_in_one_line_when_the_disk_fills_and_resumes_after(small_disk, synth_dir):
    disk, fill, free = small_disk
    run = disk / "run"
    args = ["train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--model", "fewer_conv_channels",
            "--steps", "600", "--set", "train.eval_every=20", "--out", run, "--quiet"]
    driver = start_cli(*args, env_extra={"XLA_FLAGS": ""})
    latest = run / "checkpoints" / "latest"
    deadline = time.time() + 600
    while time.time() < deadline and not (latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir())):
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.05)
    fill()
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 2
    line = _one_line(err)
    assert f"{run}: no space left on the device holding it" in line and "resumes from the run's last checkpoint" in line
    kept = max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    free()
    summary = json.loads(run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True).stdout)
    assert summary["status"] == "finished" and summary["resumed_from"][-1] == kept > 0
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert sorted(metrics[metrics.split == "train"].step) == list(range(1, 601))  # every step once


@pytest.mark.slow
def test_sharding_and_scoring_stop_in_one_line_and_finish_after(small_disk, small_run, tmp_path):
    disk, fill, free = small_disk
    with gzip.open(SHARED_DATA / "ecoli_genome" / "MG1655-K12.fasta.gz", "rt") as handle:
        handle.readline()
        sequence = "".join(handle.readline().strip() for _ in range(2000))  # 140 kb
    rows = len(sequence) // 200
    shards = -(-rows // 50)
    fasta = tmp_path / "slice.fa"
    fasta.write_text(">slice\n" + sequence + "\n")
    shard = ["data", "shard", fasta, "--out", disk / "shards", "--rows-per-shard", "50", "--quiet"]
    fill()
    proc = run_cli(*shard)
    assert proc.returncode == 2 and "no space left on the device holding it" in _one_line(proc.stderr)
    assert not (disk / "shards" / "_SHARDS.json").exists()
    free()
    run_cli(*shard, check=True)
    assert json.loads((disk / "shards" / "_SHARDS.json").read_text())["rows"] == rows

    scores = disk / "scores"
    score = ["score", "--runs", small_run, "--input", disk / "shards", "--out", scores, "--outputs",
             "prob,ism_summary", "--address", "local", "--batch-size", "25", "--quiet"]
    driver = start_cli(*score, env_extra={"XLA_FLAGS": ""})
    deadline = time.time() + 600
    while time.time() < deadline and len(list((scores / "_done").glob("*.json")) if scores.exists() else []) < 2:
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.05)
    fill()
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 2
    assert f"{scores}" in _one_line(err) and "the shards already scored are kept" in err
    done = len(list((scores / "_done").glob("*.json")))
    assert 2 <= done < shards
    free()
    again = run_cli(*score, env_extra={"XLA_FLAGS": ""}, check=True)
    assert f"{done} already done" in again.stdout
    ids = pd.read_parquet(scores).id
    assert sorted(ids) == list(range(rows)) and np.all(ids.value_counts() == 1)  # every id once
