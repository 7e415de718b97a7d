"""Scoring-service throughput and memory: `tfbind score` (Ray Data, Parquet in/out, id bookkeeping)
against the bare in-process forward pass of the same model, in the same run.

Run: .venv/bin/python benchmarks/bench_scoring.py [--rows 200000] [--ism-rows 4000] [--run RUN_DIR]

Prints rows/s for predictions (1 and 2 actors), gradients and ISM with summaries (2 actors), the
fraction of bare forward throughput the service keeps, the peak memory (driver + every Ray worker,
sampled every 0.2 s), and the projected hours for the 15 M windows of a tiled human genome.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

from tfbind_dist import config as C
from tfbind_dist.data.io import write_table_atomic
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.train.loop import load_model, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]
GENOME_WINDOWS = 15_000_000


def write_shards(out: Path, rows: int, per_shard: int) -> None:
    rng = np.random.default_rng(0)
    for k, start in enumerate(range(0, rows, per_shard)):
        n = min(per_shard, rows - start)
        codes = rng.integers(0, 4, size=(n, 200), dtype=np.uint8)
        column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(200), n, [None, pa.py_buffer(codes.tobytes())])
        write_table_atomic(pa.table({"id": pa.array(np.arange(start, start + n), pa.int64()), "codes": column}),
                           out / f"part-{k:05d}.parquet")


class PeakMemory:
    """Peak summed RSS of a process tree plus every Ray worker/raylet on this machine."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            total = 0
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if "tfbind_dist.cli score" in cmd or "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd:
                    total += proc.info["memory_info"].rss if proc.info["memory_info"] else 0
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def score(run, shards, out, outputs, actors):
    cmd = [sys.executable, "-m", "tfbind_dist.cli", "score", "--runs", str(run), "--input", str(shards), "--out",
           str(out), "--outputs", outputs, "--actors", str(actors), "--quiet", "--batch-size", "1024"]
    with PeakMemory() as memory:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    line = [x for x in proc.stdout.splitlines() if x.startswith("scored")][-1]
    rate = float(line.split("(")[1].split(" rows/s")[0].replace(",", ""))
    return rate, memory.peak / 1e9, line


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--ism-rows", type=int, default=4_000)
    parser.add_argument("--run", help="a trained run directory (default: train conv_v2 on synthetic CTCF briefly)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.run
        if run is None:
            run = tmp / "run"
            cfg = C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "train.steps": 50, "train.eval_every": 50})
            train_and_evaluate(cfg, run, progress=False)
        model = load_model(run)
        codes = np.random.default_rng(1).integers(0, 4, size=(65_536, 200), dtype=np.uint8)
        predict(model.module, model.variables, codes[:1024]).block_until_ready()
        start = time.perf_counter()
        for i in range(0, len(codes), 1024):
            predict(model.module, model.variables, codes[i:i + 1024]).block_until_ready()
        bare = len(codes) / (time.perf_counter() - start)

        write_shards(tmp / "big", args.rows, 50_000)
        write_shards(tmp / "small", args.ism_rows, 1_000)
        rows = []
        for label, shards, outputs, actors in [("prob", "big", "prob", 1), ("prob", "big", "prob", 2),
                                               ("grad", "small", "prob,grad", 2),
                                               ("ism + summary", "small", "prob,ism_summary", 2)]:
            rate, peak, line = score(run, tmp / shards, tmp / f"out-{label}-{actors}".replace(" ", ""), outputs, actors)
            rows.append((label, actors, rate, peak))
            print(line, flush=True)
    print(f"\nbare in-process forward (batch 1024): {bare:,.0f} rows/s")
    print(f"{'outputs':15s} {'actors':>6s} {'rows/s':>10s} {'÷ bare fwd':>10s} {'peak GB':>8s} {'genome h':>9s}")
    for label, actors, rate, peak in rows:
        print(f"{label:15s} {actors:6d} {rate:10,.0f} {rate / bare:10.1%} {peak:8.2f} "
              f"{GENOME_WINDOWS / rate / 3600:9.2f}")
    print(f"(rows: {args.rows:,} for prob, {args.ism_rows:,} for grad/ISM; genome = {GENOME_WINDOWS:,} windows; "
          "the times include Ray start and model load)")


if __name__ == "__main__":
    main()
