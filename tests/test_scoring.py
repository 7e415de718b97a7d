"""`tfbind score` on a real two-node Ray cluster: killed mid-run, re-run, exact rows and exact values."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, SHARED_DATA, kill_driver_after, run_cli
from tfbind_dist import config as C
from tfbind_dist.storage import write_table_atomic
from tfbind_dist.interpret import explain
from tfbind_dist.rundir import RunDir
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.restore import load_model

ROWS, SHARDS = 2_000, 10  # 200 rows a shard: enough for a kill to land between shards


def _write_shards(out, codes, first_id=0):
    per = -(-len(codes) // SHARDS)
    for k, start in enumerate(range(0, len(codes), per)):
        chunk = np.ascontiguousarray(codes[start:start + per])
        column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(chunk.shape[1]), len(chunk),
                                                      [None, pa.py_buffer(chunk.tobytes())])
        ids = pa.array(np.arange(first_id + start, first_id + start + len(chunk)), pa.int64())
        write_table_atomic(pa.table({"id": ids, "codes": column}), out / f"part-{k:05d}.parquet")


def _markers(out):
    """Names of the done markers in a scoring output folder (local or gs://)."""
    from tfbind_dist.storage import as_path

    done = as_path(out) / "_done"
    return sorted(p.name for p in done.iterdir()) if done.is_dir() else []


def _kill_after(args, out, markers, shards, env_extra=None, timeout=1200):
    """Start `tfbind score`, SIGKILL it once `markers` shards are marked done; the markers then."""
    return kill_driver_after(args, lambda: _markers(out), markers, shards, env_extra, timeout)


@pytest.mark.slow
def test_score_killed_and_rerun_gives_exact_rows_and_values(ray_cluster, small_run, tmp_path):
    codes = np.random.default_rng(0).integers(0, 4, size=(ROWS, 200)).astype(np.uint8)
    shards, out = tmp_path / "shards", tmp_path / "scores"
    _write_shards(shards, codes)
    args = ["score", "--runs", str(small_run), "--input", str(shards), "--out", str(out), "--outputs",
            "prob,grad_corrected,ism", "--actors", "2", "--ism-dtype", "float32", "--batch-size", "500",
            "--address", ray_cluster, "--quiet"]
    done_before = len(_kill_after(args, out, 2, SHARDS))

    rerun = run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    already = int(re.search(r"(\d+) already done", rerun.stdout).group(1))  # an actor may finish one more shard
    assert done_before <= already < SHARDS and f"{SHARDS - already} to score" in rerun.stdout
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
    assert pq.read_table(tmp_path / "skip" / "errors" / "_part-00006.parquet").column("id").to_pylist() == [250]
    total = sum(pq.read_table(p).num_rows for p in (tmp_path / "skip").glob("part-*.parquet"))
    assert total == 399
    assert json.loads((tmp_path / "skip" / "_done" / "part-00006.parquet.json").read_text())["bad_rows"] == 1
    manifest = json.loads((tmp_path / "skip" / "_MANIFEST.json").read_text())
    assert (manifest["rows"], manifest["bad_rows"], len(manifest["shards"])) == (399, 1, SHARDS)


@pytest.mark.slow
def test_many_small_shards_land_one_by_one_and_a_killed_run_resumes(ray_cluster, small_run, tmp_path):
    """40 shards x 25 rows: each output lands when its shard is done, not all at the end of the run."""
    codes = np.random.default_rng(3).integers(0, 4, size=(1000, 200)).astype(np.uint8)
    shards, out = tmp_path / "shards", tmp_path / "scores"
    for k in range(40):
        chunk = codes[25 * k:25 * (k + 1)]
        column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(200), 25, [None, pa.py_buffer(chunk.tobytes())])
        write_table_atomic(pa.table({"id": pa.array(np.arange(25 * k, 25 * (k + 1)), pa.int64()), "codes": column}),
                           shards / f"part-{k:05d}.parquet")
    args = ["score", "--runs", small_run, "--input", shards, "--out", out, "--outputs", "prob,ism_summary",
            "--batch-size", "32", "--address", ray_cluster, "--quiet"]
    done = _kill_after(args, out, 3, 40)
    for marker in done:  # every shard marked done has its whole output
        assert pq.read_table(out / marker.removesuffix(".json")).num_rows == 25
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from tfbind_dist.storage import _writer_id

    host = _writer_id().rpartition("-")[0]
    stale = out / f".part-00039.parquet.{host}-{int(dead.stdout)}.abcd1234.tmp"  # a dead attempt's temp file
    stale.write_bytes(b"partial")

    rerun = run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    already = int(re.search(r"(\d+) already done", rerun.stdout).group(1))  # an actor may finish one more shard
    assert len(done) <= already < 40 and f"{already} already done, {40 - already} to score" in rerun.stdout
    assert f"scored {(40 - already) * 25:,} rows into {40 - already} shards" in rerun.stdout  # only the rest
    assert not stale.exists() and not list(out.rglob("*.tmp"))
    ids = np.concatenate([pq.read_table(p).column("id").to_numpy() for p in sorted(out.glob("part-*.parquet"))])
    assert np.array_equal(np.sort(ids), np.arange(1000))


def _driver_peak_rss(args) -> int:
    """Peak resident memory of a `tfbind score` driver process (Ray's own processes not included)."""
    import psutil

    driver = subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], cwd=REPO,
                              env={**os.environ, "XLA_FLAGS": ""}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, proc = 0, psutil.Process(driver.pid)
    while driver.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    _, err = driver.communicate()
    assert driver.returncode == 0, err.decode()[-3000:]
    return peak


@pytest.mark.slow
def test_driver_memory_does_not_grow_with_rows_or_output_width(ray_cluster, small_run, tmp_path):
    """8,000 rows of ISM + gradients (6.4 KB per row) in one shard vs 800 rows of predictions: same driver peak."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_scoring import write_shards

    peaks = {}
    for label, rows, outputs in (("narrow", 800, "prob"), ("wide", 8_000, "prob,grad,ism")):
        write_shards(tmp_path / label, rows, rows)
        peaks[label] = _driver_peak_rss(["score", "--runs", small_run, "--input", tmp_path / label, "--out",
                                         tmp_path / f"out-{label}", "--outputs", outputs, "--ism-dtype", "float32",
                                         "--batch-size", "400", "--address", ray_cluster, "--quiet"])
    assert pq.ParquetFile(tmp_path / "out-wide" / "part-00000.parquet").metadata.num_rows == 8_000
    assert peaks["wide"] < 1.2 * peaks["narrow"], {k: f"{v / 1e6:.0f} MB" for k, v in peaks.items()}


@pytest.mark.slow
def test_scoring_with_runs_shards_and_outputs_only_on_object_storage(gcs_bucket, ray_cluster, small_run, tmp_path):
    """Two-node cluster, everything on the GCS emulator: each id scored once, exact values, a killed driver resumes.

    `--runs gs://.../*` matches the run directories (not the shard and score folders beside them).
    """
    import uuid

    from tfbind_dist.storage import as_path, open_parquet
    from tfbind_dist.training.restore import load_model as restore

    root = f"{gcs_bucket}/{uuid.uuid4().hex[:8]}"
    run = f"{root}/ctcf"
    # one evaluation, so two checkpoints: the emulator takes seconds to write each
    train_and_evaluate(C.with_overrides(RunDir(small_run).load_config(), {"train.eval_every": 40}), run,
                       progress=False)
    rng = np.random.default_rng(4)
    genome = "".join(rng.choice(list("ACGT"), 200 * 600))
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chrT test\n" + "\n".join(genome[i:i + 80] for i in range(0, len(genome), 80)) + "\n")
    run_cli("data", "shard", fasta, "--out", f"{root}/shards", "--rows-per-shard", "100", "--quiet", check=True)
    out = f"{root}/scores"
    args = ["score", "--runs", f"{root}/*", "--input", f"{root}/shards", "--out", out, "--outputs", "prob,ism_summary",
            "--actors", "2", "--batch-size", "50", "--address", ray_cluster, "--quiet"]
    done = _kill_after(args, as_path(out), 2, 6)
    rerun = run_cli(*args, check=True, timeout=900)
    already = int(re.search(r"(\d+) already done", rerun.stdout).group(1))
    assert len(done) <= already < 6 and f"scored {(6 - already) * 100:,} rows" in rerun.stdout

    parts = sorted(p for p in as_path(out).iterdir() if p.name.startswith("part-"))
    def read(path):
        with open_parquet(path) as source:
            return source.read()

    scores = pa.concat_tables([read(p) for p in parts])
    assert len(parts) == 6 and sorted(scores.column("id").to_pylist()) == list(range(600))  # each id exactly once
    model = restore(run)
    codes = np.frombuffer(genome.translate(str.maketrans("ACGT", "\0\1\2\3")).encode(), np.uint8).reshape(600, 200)
    order = np.argsort(scores.column("id").to_numpy())
    direct = explain(model.module, model.variables, codes, ["ism"])
    np.testing.assert_allclose(scores.column("CTCF_prob").to_numpy()[order], direct["prediction"], atol=1e-5)
    importance = np.array(scores.column("CTCF_ism_importance").to_pylist(), np.float32)[order]
    np.testing.assert_allclose(importance, np.abs(direct["ism"]).sum(-1), rtol=2e-3, atol=1e-3)  # float16 column
    assert scores.column("start").to_numpy()[order].tolist() == list(range(0, 120_000, 200))


@pytest.mark.slow
def test_a_slice_of_the_ecoli_genome_is_sharded_and_scored_end_to_end(ray_cluster, small_run, tmp_path):
    """The first 1,000 lines (70 kb) of the real E. coli K-12 genome: tiled, scored, equal to in-process predictions."""
    import gzip

    with gzip.open(SHARED_DATA / "ecoli_genome" / "MG1655-K12.fasta.gz", "rt") as genome:
        lines = [next(genome) for _ in range(1001)]  # the header and 1,000 sequence lines
    fasta = tmp_path / "ecoli_slice.fa"
    fasta.write_text("".join(lines))
    sequence = "".join(line.strip() for line in lines[1:])
    windows = len(sequence) // 200
    run_cli("data", "shard", fasta, "--out", tmp_path / "shards", "--rows-per-shard", "100", "--quiet", check=True)
    run_cli("score", "--runs", small_run, "--input", tmp_path / "shards", "--out", tmp_path / "scores", "--outputs",
            "prob,ism_summary,deeplift_shap", "--batch-size", "64", "--address", ray_cluster, "--quiet",
            env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    scores = pq.read_table(tmp_path / "scores").sort_by("id")  # the output folder reads as one dataset
    assert scores.num_rows == windows > 300 and set(scores.column("chrom").to_pylist()) == {"K-12-MG1655"}
    assert scores.column("start").to_pylist() == list(range(0, 200 * windows, 200))
    codes = np.frombuffer(sequence[:200 * windows].translate(str.maketrans("ACGT", "\0\1\2\3")).encode(), np.uint8)
    model = load_model(small_run)
    direct = explain(model.module, model.variables, codes.reshape(windows, 200), ["deeplift-shap"], batch_size=50)
    np.testing.assert_allclose(scores.column("CTCF_prob").to_numpy(), direct["prediction"], atol=1e-5)
    # the same references for a window in any shard and batch: in-process DeepLIFT/SHAP equals the service's,
    # whose column holds all four bases' hypothetical contributions (the observed base's is the attribution)
    hypothetical = np.array(scores.column("CTCF_deeplift_shap").to_pylist(), np.float32).reshape(windows, 200, 4)
    observed = np.eye(4, dtype=np.float32)[codes.reshape(windows, 200)]
    np.testing.assert_allclose(hypothetical * observed, direct["deeplift_shap"], atol=1e-5)
    assert np.abs(hypothetical * (1 - observed)).sum() > 0
    manifest = json.loads((tmp_path / "scores" / "_MANIFEST.json").read_text())
    assert (manifest["rows"], len(manifest["shards"])) == (windows, -(-windows // 100))


def test_a_shard_of_only_bad_rows_is_reported_not_crashed(small_run, tmp_path):
    from tfbind_dist.scoring.scorer import load_models
    from tfbind_dist.scoring.actor import ShardScorer

    codes = np.full((3, 200), 9, np.uint8)
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(200), 3, [None, pa.py_buffer(codes.tobytes())])
    shard = tmp_path / "part-00000.parquet"
    write_table_atomic(pa.table({"id": pa.array([5, 6, 7], pa.int64()), "codes": column}), shard)

    failing = ShardScorer([str(small_run)], ("prob",), tmp_path / "fail", batch_size=8)
    record = failing.score_shard(str(shard))
    assert record["error"] == "shard part-00000.parquet row id 5: invalid base code 9 at position 0 (shard not written)"
    assert not (tmp_path / "fail").exists() or not any((tmp_path / "fail").rglob("*.*"))  # nothing half-written

    skipping = ShardScorer([str(small_run)], ("prob", "ism_summary"), tmp_path / "skip", batch_size=8,
                           on_bad_rows="skip")
    record = skipping.score_shard(str(shard))
    assert (record["rows"], record["bad_rows"], record["error"]) == (0, 3, None)
    output = pq.read_table(tmp_path / "skip" / "part-00000.parquet")
    assert output.num_rows == 0 and {"id", "CTCF_prob", "CTCF_ism_importance"} <= set(output.column_names)
    assert pq.read_table(tmp_path / "skip" / "errors" / "_part-00000.parquet").column("id").to_pylist() == [5, 6, 7]
    assert (tmp_path / "skip" / "_done" / "part-00000.parquet.json").exists()
    assert load_models([small_run])[0].key == "CTCF"
