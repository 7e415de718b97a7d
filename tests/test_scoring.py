"""`tfbind score` on a real two-node Ray cluster: killed mid-run, re-run, exact rows and exact values."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, run_cli
from tfbind_dist import config as C
from tfbind_dist.storage import write_table_atomic
from tfbind_dist.interpret import explain
from tfbind_dist.train.loop import train_and_evaluate
from tfbind_dist.train.restore import load_model

ROWS, SHARDS = 20_000, 10


def _write_shards(out, codes, first_id=0):
    per = -(-len(codes) // SHARDS)
    for k, start in enumerate(range(0, len(codes), per)):
        chunk = np.ascontiguousarray(codes[start:start + per])
        column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(chunk.shape[1]), len(chunk),
                                                      [None, pa.py_buffer(chunk.tobytes())])
        ids = pa.array(np.arange(first_id + start, first_id + start + len(chunk)), pa.int64())
        write_table_atomic(pa.table({"id": ids, "codes": column}), out / f"part-{k:05d}.parquet")


@pytest.fixture(scope="module")
def small_run(synth_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("score") / "ctcf"
    cfg = C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "data.path": str(synth_dir), "model.name":
                                           "fewer_conv_channels", "train.steps": 40, "train.eval_every": 20})
    train_and_evaluate(cfg, run, progress=False)
    return run


def _manifest_lines(out):
    path = out / "_MANIFEST.jsonl"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_score_killed_and_rerun_gives_exact_rows_and_values(ray_cluster, small_run, tmp_path):
    codes = np.random.default_rng(0).integers(0, 4, size=(ROWS, 200)).astype(np.uint8)
    shards, out = tmp_path / "shards", tmp_path / "scores"
    _write_shards(shards, codes)
    args = ["score", "--runs", str(small_run), "--input", str(shards), "--out", str(out), "--outputs",
            "prob,grad_corrected,ism", "--actors", "2", "--ism-dtype", "float32", "--batch-size", "500",
            "--address", ray_cluster, "--quiet"]
    env = {**os.environ, "XLA_FLAGS": ""}
    driver = subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 1200  # generous: the CI box may be loaded
    while len(_manifest_lines(out)) < 2 and time.time() < deadline:
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done_before = len(_manifest_lines(out))
    assert 2 <= done_before < SHARDS, "kill must land mid-run"

    rerun = run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    assert f"{done_before} already done, {SHARDS - done_before} to score" in rerun.stdout
    tables = [pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))]
    ids = np.concatenate([t.column("id").to_numpy() for t in tables])
    assert len(tables) == SHARDS and len(ids) == ROWS and np.array_equal(np.sort(ids), np.arange(ROWS))

    scores = pa.concat_tables(tables)
    sample = np.random.default_rng(1).choice(ROWS, 16, replace=False)
    rows = scores.take(pa.array([int(np.flatnonzero(ids == i)[0]) for i in sample])).to_pydict()
    model = load_model(small_run)
    direct = explain(model.module, model.variables, codes[sample], ["ism", "grad-corrected"])
    np.testing.assert_allclose(rows["CTCF_prob"], direct["prediction"], atol=1e-5)
    np.testing.assert_allclose(np.array(rows["CTCF_ism"]).reshape(16, 200, 4), direct["ism"], atol=1e-5)
    np.testing.assert_allclose(np.array(rows["CTCF_grad_corrected"]).reshape(16, 200, 4), direct["grad_corrected"],
                               atol=1e-5)


@pytest.mark.slow
def test_bad_rows_fail_their_shard_or_are_skipped(ray_cluster, small_run, tmp_path):
    codes = np.random.default_rng(2).integers(0, 4, size=(400, 200)).astype(np.uint8)
    codes[250, 17] = 9  # not a base code
    shards = tmp_path / "shards"
    _write_shards(shards, codes)
    base = ["score", "--runs", str(small_run), "--input", str(shards), "--outputs", "prob", "--address", ray_cluster,
            "--quiet", "--batch-size", "64"]
    failed = run_cli(*base, "--out", str(tmp_path / "fail"), env_extra={"XLA_FLAGS": ""}, timeout=600)
    assert failed.returncode == 1
    assert "shard part-00006.parquet row id 250: invalid base code 9 at position 17" in failed.stderr
    written = sorted(p.name for p in (tmp_path / "fail").glob("part-*.parquet"))
    assert len(written) == SHARDS - 1 and "part-00006.parquet" not in written
    run_cli(*base, "--out", str(tmp_path / "skip"), "--on-bad-rows", "skip", env_extra={"XLA_FLAGS": ""},
            check=True, timeout=600)
    assert pq.read_table(tmp_path / "skip" / "errors" / "part-00006.parquet").column("id").to_pylist() == [250]
    total = sum(pq.read_table(p).num_rows for p in (tmp_path / "skip").glob("part-*.parquet"))
    assert total == 399
    assert json.loads((tmp_path / "skip" / "_MANIFEST.jsonl").read_text().splitlines()[6])["bad_rows"] == 1


@pytest.mark.slow
def test_peak_memory_of_a_million_row_prediction_run_does_not_grow_with_input(ray_cluster, small_run, tmp_path):
    """1M rows in 20 shards peak within 25% of 250k rows in 5: the service streams end to end."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_scoring import PeakMemory, write_shards

    peaks = {}
    for rows in (250_000, 1_000_000):
        shards, out = tmp_path / f"in-{rows}", tmp_path / f"out-{rows}"
        write_shards(shards, rows, 50_000)
        with PeakMemory() as memory:
            run_cli("score", "--runs", small_run, "--input", shards, "--out", out, "--outputs", "prob",
                    "--actors", "1", "--batch-size", "4096", "--address", ray_cluster, "--quiet",
                    env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
        peaks[rows] = memory.peak
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("part-*.parquet")) == rows
    assert peaks[1_000_000] < 1.25 * peaks[250_000], {k: f"{v / 1e9:.2f} GB" for k, v in peaks.items()}


def test_a_batch_of_only_bad_rows_is_reported_not_crashed(small_run):
    from tfbind_dist.scoring.scorer import load_models
    from tfbind_dist.scoring.service import ScorerActor

    actor = ScorerActor([str(small_run)], ("prob",), "float16", batch_size=8)
    codes = np.full((3, 200), 9, np.uint8)
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(200), 3, [None, pa.py_buffer(codes.tobytes())])
    out = actor(pa.table({"id": pa.array([5, 6, 7], pa.int64()), "codes": column, "path": ["p.parquet"] * 3}))
    assert out.column("id").to_pylist() == [5, 6, 7]
    assert out.column("_error").to_pylist() == ["invalid base code 9 at position 0"] * 3
    assert load_models([small_run])[0].key == "CTCF"
