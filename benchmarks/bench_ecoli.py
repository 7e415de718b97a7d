"""A real genome end to end: `tfbind data shard` -> `tfbind score` on E. coli K-12 MG1655 (4.6 Mb).

Run: .venv/bin/python benchmarks/bench_ecoli.py [--runs RUN ...] [--ism-windows 2000] [--actors 1]

1. `tfbind data shard` tiles the genome into 23,198 windows of 200 bp (stride 200).
2. `tfbind score --outputs prob` scores every window with the 10 default-recipe models in one pass.
3. `tfbind score --outputs ism_summary` scores the first `--ism-windows` windows with one model.
Each step is the whole command as a user runs it (a private local Ray, actor start, model load,
compilation, Parquet in and out); next to each, the bare in-process kernel on the same windows
and models in the same run (`predict` per model; `ism` per model), and their ratio.

Without --runs, the 10 models are trained here from the default recipe for a few steps on
synthetic data (speed does not depend on how well a model is trained). `make demo` leaves 10
such runs in runs/demo (pass `--runs runs/demo/*-s42-*`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tfbind_dist import config as C
from tfbind_dist.data.synthetic import synthesize
from tfbind_dist.interpret.ism import ism
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.train.loop import train_and_evaluate
from tfbind_dist.train.restore import load_model

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared" / "data" / "ecoli_genome" / "MG1655-K12.fasta.gz"
TFS = ["ARID3", "ATF2", "BACH1", "CTCF", "ELK1", "GABPA", "MAX", "REST", "SRF", "ZNF24"]


def tfbind(*args) -> tuple[float, str]:
    """Run `tfbind ARGS` as a user would; (seconds, stdout)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "XLA_FLAGS": ""})
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"tfbind {' '.join(map(str, args))}:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def train_runs(out: Path, steps: int) -> list[Path]:
    data = out / "synth"
    synthesize(data, tfs=TFS, n_train=2000, seed=0)
    runs = []
    for tf in TFS:
        cfg = C.with_overrides(C.load_recipe("default"), {"data.tf": tf, "data.path": str(data),
                                                          "train.steps": steps, "train.eval_every": steps})
        train_and_evaluate(cfg, out / tf, progress=False)
        runs.append(out / tf)
    return runs


def shard_codes(shards: Path, limit: int | None = None) -> np.ndarray:
    """(N, 200) uint8 codes of the shards, in id order (the first `limit` rows)."""
    tables = [pq.read_table(p, columns=["id", "codes"]) for p in sorted(shards.glob("part-*.parquet"))]
    table = pa.concat_tables(tables)
    codes = np.frombuffer(table.column("codes").combine_chunks().buffers()[1], np.uint8).reshape(-1, 200)
    return codes[:limit]


def bare_rate(fn, codes: np.ndarray, batch: int) -> float:
    """Rows/s of fn over codes in fixed batches (the last padded), compiled first."""
    padded = np.concatenate([codes, np.zeros((-len(codes) % batch, codes.shape[1]), np.uint8)])
    jax.block_until_ready(fn(padded[:batch]))
    started = time.perf_counter()
    for i in range(0, len(padded), batch):
        jax.block_until_ready(fn(padded[i:i + batch]))
    return len(codes) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", help="10 trained run directories (default: train short ones here)")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--ism-windows", type=int, default=2000)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--ism-batch-size", type=int, default=256)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    args = parser.parse_args()
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"device: {device}; genome {GENOME.name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [Path(r) for r in args.runs] if args.runs else train_runs(tmp / "runs", args.train_steps)
        seconds_shard, out = tfbind("data", "shard", GENOME, "--out", tmp / "shards", "--window", "200",
                                    "--rows-per-shard", "4000", "--quiet")
        print(out.strip(), flush=True)
        windows = len(shard_codes(tmp / "shards"))
        common = ["--address", "local", "--actors", args.actors, "--cpus-per-actor", "1", "--quiet",
                  "--gpus-per-actor", args.gpus_per_actor]
        seconds_prob, out = tfbind("score", "--runs", *runs, "--input", tmp / "shards", "--out", tmp / "prob",
                                   "--outputs", "prob", "--batch-size", args.batch_size, *common)
        print(out.strip(), flush=True)
        scored = sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp / "prob").glob("part-*.parquet"))
        assert scored == windows, (scored, windows)

        ism_shards = tmp / "ism_shards"
        ism_shards.mkdir()
        first = pq.read_table(sorted((tmp / "shards").glob("part-*.parquet"))[0]).slice(0, args.ism_windows)
        pq.write_table(first, ism_shards / "part-00000.parquet")
        seconds_ism, out = tfbind("score", "--runs", runs[0], "--input", ism_shards, "--out", tmp / "ism",
                                  "--outputs", "ism_summary", "--batch-size", args.ism_batch_size, *common)
        print(out.strip(), flush=True)

        codes = shard_codes(tmp / "shards")
        models = [load_model(r) for r in runs]
        bare_prob = 1 / sum(1 / bare_rate(lambda c, m=m: predict(m.module, m.variables, c), codes, args.batch_size)
                            for m in models)  # rows/s of all 10 models one after the other
        m = models[0]
        bare_ism = bare_rate(lambda c: ism(m.module, m.variables, c).delta, codes[:args.ism_windows],
                             args.ism_batch_size)
    prob_rate, ism_rate = windows / seconds_prob, args.ism_windows / seconds_ism
    print(f"\n{device}; {windows:,} windows of 200 bp; {len(runs)} models ({models[0].config.model.name})")
    print(f"tfbind data shard: {seconds_shard:.1f} s")
    print(f"{'step':34s} {'rows/s':>9s} {'seconds':>8s} {'bare kernel rows/s':>19s} {'÷ bare':>7s}")
    print(f"{'score prob, 10 models, one pass':34s} {prob_rate:9,.0f} {seconds_prob:8.1f} {bare_prob:19,.0f} "
          f"{prob_rate / bare_prob:7.1%}")
    print(f"{'score ism_summary, 1 model':34s} {ism_rate:9,.1f} {seconds_ism:8.1f} {bare_ism:19,.1f} "
          f"{ism_rate / bare_ism:7.1%}")
    print("rows/s: whole commands (Ray start, model load, compilation included); bare: in-process kernels on the "
          "same windows (prob: the 10 models one after the other)")


if __name__ == "__main__":
    main()
