"""A real genome end to end: `tfbind data shard` -> `tfbind score` on E. coli K-12 MG1655 (4.6 Mb).

Run: .venv/bin/python benchmarks/bench_ecoli.py [--runs RUN ...] [--ism-windows 2000] [--actors 1]
     GPU: add --gpus-per-actor 1 --batch-size 4000 --ism-batch-size 500 --ism-windows 8000 (see gpu_scoring.sh)
     No shared disk: add --gcs-emulator (runs, shards, scores on a local GCS emulator; the `test` extra)
     and --address HOST:PORT (e.g. the two-node cluster of `cluster/local.sh up`)

1. `tfbind data shard` tiles the genome into 23,198 windows of 200 bp (stride 200).
2. `tfbind score --outputs prob` scores every window with the 10 default-recipe models in one pass.
3. `tfbind score --outputs ism_summary` scores the first `--ism-windows` windows with one model.
Each step is the whole command as a user runs it (a private local Ray, actor start, model load,
compilation, Parquet in and out); next to each, the bare in-process kernel on the same windows
and models in the same run (`predict` per model; `ism` per model), and their ratio. "steady" is the
rate over the shards after each actor's first (the per-shard seconds in the done markers: no
start-up, compilation or model load), the figure to project larger inputs from. The scored
probabilities are compared with the bare kernel's (max |difference|).

Without --runs, the 10 models are trained here from the default recipe for a few steps on
synthetic data (speed does not depend on how well a model is trained). `make demo` leaves 10
such runs in runs/demo (pass `--runs runs/demo/*-s42-*`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This process runs the bare kernels after the commands: it must not hold (preallocate) the GPU
# memory the scoring actors need. The commands themselves run with JAX's defaults.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tfbind_dist import config as C  # noqa: E402
from tfbind_dist.data.batching import pad_rows  # noqa: E402
from tfbind_dist.data.synthetic import synthesize  # noqa: E402
from tfbind_dist.interpret.ism import ism  # noqa: E402
from tfbind_dist.interpret.outputs import predict  # noqa: E402
from tfbind_dist.scoring.scorer import load_models  # noqa: E402
from tfbind_dist.storage import as_path, open_parquet, write_bytes_atomic  # noqa: E402
from tfbind_dist.testing import gcs_emulator  # noqa: E402
from tfbind_dist.training.loop import train_and_evaluate  # noqa: E402
from tfbind_dist.training.restore import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared" / "data" / "ecoli_genome" / "MG1655-K12.fasta.gz"
TFS = ["ARID3", "ATF2", "BACH1", "CTCF", "ELK1", "GABPA", "MAX", "REST", "SRF", "ZNF24"]


def tfbind(*args) -> tuple[float, str]:
    """Run `tfbind ARGS` as a user would; (seconds, stdout)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
                          | {"XLA_FLAGS": ""})
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


def read_parts(folder, columns=None) -> pa.Table:
    """The part-*.parquet files of a local or gs:// folder as one table, in id order."""
    tables = []
    for part in sorted(as_path(folder).glob("part-*.parquet")):
        with open_parquet(part) as source:
            tables.append(source.read(columns=columns))
    return pa.concat_tables(tables).sort_by("id")


def upload(local: Path, remote: str) -> None:
    """Copy a local folder's files to object storage."""
    for path in local.rglob("*"):
        if path.is_file():
            write_bytes_atomic(f"{remote}/{path.relative_to(local).as_posix()}", path.read_bytes())


def shard_rows(shards) -> tuple[np.ndarray, np.ndarray]:
    """Ids and (N, 200) uint8 codes of the shards, in id order."""
    table = read_parts(shards, ["id", "codes"])
    codes = np.frombuffer(table.column("codes").combine_chunks().buffers()[1], np.uint8).reshape(-1, 200)
    return table.column("id").to_numpy(), codes


def bare_rate(fn, codes: np.ndarray, batch: int) -> float:
    """Rows/s of fn over codes in fixed batches (the last padded), compiled first."""
    padded = np.concatenate([codes, np.zeros((-len(codes) % batch, codes.shape[1]), np.uint8)])
    jax.block_until_ready(fn(padded[:batch]))
    started = time.perf_counter()
    for i in range(0, len(padded), batch):
        jax.block_until_ready(fn(padded[i:i + batch]))
    return len(codes) / (time.perf_counter() - started)


def steady_rate(out) -> float | None:
    """Rows/s over the shards after each actor's first, from the done markers; None with one shard per actor."""
    records = [json.loads(p.read_text()) for p in (as_path(out) / "_done").glob("*.json")]
    first: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: r["seconds"], reverse=True):  # an actor's first shard is its slowest
        first.setdefault(r["actor"], r)
    rest = [r for r in records if r is not first[r["actor"]]]
    return sum(r["rows"] for r in rest) / sum(r["seconds"] for r in rest) if rest else None


def scored_vs_bare(out, runs: list[str], codes: np.ndarray, ids: np.ndarray, batch: int) -> float:
    """Max |scored prob - bare prob| over every window and model."""
    table = read_parts(out)
    assert np.array_equal(table.column("id").to_numpy(), ids)
    worst = 0.0
    for key, m in load_models(runs):
        bare = np.concatenate([np.asarray(predict(m.module, m.variables, pad_rows(codes[i:i + batch], batch)))
                               for i in range(0, len(codes), batch)])[:len(codes)]
        worst = max(worst, float(np.abs(table.column(f"{key}_prob").to_numpy() - bare).max()))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", help="trained run directories (default: train 10 short ones here)")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--ism-windows", type=int, default=2000)
    parser.add_argument("--ism-shard-rows", type=int, default=2000)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--ism-batch-size", type=int, default=256)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--genome", type=Path, default=GENOME)
    parser.add_argument("--address", default="local", help="Ray cluster for the score commands (default: a private one)")
    parser.add_argument("--gcs-emulator", action="store_true",
                        help="runs, shards and scores only on a local GCS emulator (gs://), as on a cluster without "
                             "a shared disk")
    args = parser.parse_args()
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"device: {device}; genome {args.genome.name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        local_runs = [Path(r) for r in args.runs] if args.runs else train_runs(tmp / "runs", args.train_steps)
        root, runs = str(tmp), [str(r) for r in local_runs]
        if args.gcs_emulator:
            root = stack.enter_context(gcs_emulator("ecoli", tmp / "gcs.log"))
            runs = [f"{root}/runs/{r.name}" for r in local_runs]
            for local, remote in zip(local_runs, runs):
                upload(local, remote)
        seconds_shard, out = tfbind("data", "shard", args.genome, "--out", f"{root}/shards", "--window", "200",
                                    "--rows-per-shard", "4000", "--quiet")
        print(out.strip(), flush=True)
        ids, codes = shard_rows(f"{root}/shards")
        windows = len(codes)
        common = ["--address", args.address, "--actors", args.actors, "--cpus-per-actor", "1", "--quiet",
                  "--gpus-per-actor", args.gpus_per_actor]
        seconds_prob, out = tfbind("score", "--runs", *runs, "--input", f"{root}/shards", "--out", f"{root}/prob",
                                   "--outputs", "prob", "--batch-size", args.batch_size, *common)
        print(out.strip(), flush=True)

        ism_shards = tmp / "ism_shards"
        ism_shards.mkdir()
        first = read_parts(f"{root}/shards").slice(0, args.ism_windows)
        for i in range(0, first.num_rows, args.ism_shard_rows):
            pq.write_table(first.slice(i, args.ism_shard_rows), ism_shards / f"part-{i // args.ism_shard_rows:05d}.parquet")
        if args.gcs_emulator:
            upload(ism_shards, f"{root}/ism_shards")
        seconds_ism, out = tfbind("score", "--runs", runs[0], "--input", f"{root}/ism_shards", "--out", f"{root}/ism",
                                  "--outputs", "ism_summary", "--batch-size", args.ism_batch_size, *common)
        print(out.strip(), flush=True)
        steady_prob, steady_ism = steady_rate(f"{root}/prob"), steady_rate(f"{root}/ism")

        models = [load_model(r) for r in runs]
        worst = scored_vs_bare(f"{root}/prob", runs, codes, ids, args.batch_size)
        bare_prob = 1 / sum(1 / bare_rate(lambda c, m=m: predict(m.module, m.variables, c), codes, args.batch_size)
                            for m in models)  # rows/s of all the models one after the other
        m = models[0]
        bare_ism = bare_rate(lambda c: ism(m.module, m.variables, c).delta, codes[:args.ism_windows],
                             args.ism_batch_size)
    prob_rate, ism_rate = windows / seconds_prob, args.ism_windows / seconds_ism
    where = "runs, shards and scores on a GCS emulator" if args.gcs_emulator else "local disk"
    print(f"\n{device}; {windows:,} windows of 200 bp; {len(runs)} models ({models[0].config.model.name}); {where}; "
          f"Ray: {args.address}")
    print(f"tfbind data shard: {seconds_shard:.1f} s; scored probabilities vs bare kernel: max |difference| {worst:.1e}")
    print(f"{'step':34s} {'rows/s':>9s} {'seconds':>8s} {'steady rows/s':>14s} {'bare kernel rows/s':>19s} "
          f"{'÷ bare':>7s} {'steady ÷ bare':>14s}")
    for step, rate, seconds, steady, bare in (
            (f"score prob, {len(runs)} models, one pass", prob_rate, seconds_prob, steady_prob, bare_prob),
            ("score ism_summary, 1 model", ism_rate, seconds_ism, steady_ism, bare_ism)):
        steady_cols = f"{steady:14,.1f}" if steady else f"{'-':>14s}"
        steady_ratio = f"{steady / bare:14.1%}" if steady else f"{'-':>14s}"
        print(f"{step:34s} {rate:9,.1f} {seconds:8.1f} {steady_cols} {bare:19,.1f} {rate / bare:7.1%} {steady_ratio}")
    print("rows/s: whole commands (Ray start, model load, compilation included); steady: shards after each actor's "
          "first; bare: in-process kernels on the same windows (prob: the models one after the other)")


if __name__ == "__main__":
    main()
