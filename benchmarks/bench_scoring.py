"""Scoring-service throughput and memory: `tfbind score` (Ray Data, Parquet in/out, id bookkeeping)
against the bare in-process forward pass of the same model, in the same run.

Run: .venv/bin/python benchmarks/bench_scoring.py [--rows 1000000 --short-rows 200000] [--ism-rows 4000]
                                                  [--width-rows 20000]

Prints rows/s for predictions (1 and 2 actors; a long and a short run, whose time difference gives
the marginal, start-up-free rate), gradients and ISM with summaries (2 actors), the fraction of bare
forward throughput the service keeps, the peak private memory (USS of the driver + every Ray process, sampled every
0.2 s) of the short and the long run (run again for it: the sampling slows the service), and the projected hours for the 15 M windows of a tiled genome.
Then the driver's own peak RSS for full `--outputs ism` maps (1,600 B per row) over --width-rows rows
and a tenth of them: the driver never holds scores, so the two peaks should match.
"""
from __future__ import annotations

import argparse
import contextlib
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
from tfbind_dist.storage import write_table_atomic
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.restore import load_model

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
    """Peak summed private memory (USS) of a `tfbind` driver and every Ray process on this machine.

    USS leaves out shared pages, above all Ray's object store, which RSS would count once per
    process that touched it; the store's own size is bounded by its configured capacity.
    """

    def __init__(self, driver: str = "tfbind_dist.cli score"):
        self.driver = driver  # the driver's command line holds this
        self.peak = 0
        self.driver_peak = 0  # RSS of the driver process alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            total = 0
            for proc in psutil.process_iter(["cmdline"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if self.driver in cmd or "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd:
                    try:
                        total += proc.memory_full_info().uss
                        if self.driver in cmd:
                            self.driver_peak = max(self.driver_peak, proc.memory_info().rss)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def score(run, shards, out, outputs, actors, batch_size, driver_only=False, sample=True):
    """Run `tfbind score` as a user would; returns (seconds, peak bytes, summary line).

    The peak is of every process (USS), or of the driver alone (RSS) with `driver_only`; None without
    `sample`. Sampling USS reads every Ray process's page map: it took 0.13-0.15 of a core and made
    the service ~10% slower on the 2-core box, so throughput runs are not sampled.
    """
    cmd = [sys.executable, "-m", "tfbind_dist.cli", "score", "--runs", str(run), "--input", str(shards), "--out",
           str(out), "--outputs", outputs, "--actors", str(actors), "--quiet", "--batch-size", str(batch_size)]
    with PeakMemory() if sample else contextlib.nullcontext() as memory:
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
        seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    line = [x for x in proc.stdout.splitlines() if x.startswith("scored")][-1]
    if not sample:
        return seconds, None, line
    return seconds, memory.driver_peak if driver_only else memory.peak, line


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the long prediction run")
    parser.add_argument("--short-rows", type=int, default=200_000, help="rows of the short prediction run")
    parser.add_argument("--ism-rows", type=int, default=4_000)
    parser.add_argument("--width-rows", type=int, default=20_000, help="rows of the full-ISM driver-memory run")
    parser.add_argument("--batch-size", type=int, default=1024)
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

        for name, rows, per_shard in (("long", args.rows, 50_000), ("short", args.short_rows, 50_000),
                                      ("small", args.ism_rows, 1_000)):
            write_shards(tmp / name, rows, per_shard)
        table = []
        for actors in (1, 2):
            (t_long, _, line), (t_short, _, _) = [
                score(run, tmp / name, tmp / f"out-{name}-{actors}", "prob", actors, args.batch_size, sample=False)
                for name in ("long", "short")]
            print(line, flush=True)
            (_, peak_long, _), (_, peak_short, _) = [  # the same runs again, for their memory
                score(run, tmp / name, tmp / f"mem-{name}-{actors}", "prob", actors, args.batch_size)
                for name in ("long", "short")]
            marginal = (args.rows - args.short_rows) / (t_long - t_short)
            table.append(("prob", actors, args.rows / t_long, marginal, peak_short, peak_long))
        for label, outputs in (("prob, grad", "prob,grad"), ("prob, ism_summary", "prob,ism_summary")):
            seconds, peak, line = score(run, tmp / "small", tmp / f"out-{outputs}", outputs, 2, args.batch_size)
            print(line, flush=True)
            table.append((label, 2, args.ism_rows / seconds, None, None, peak))
        drivers = {}
        for rows in (args.width_rows // 10, args.width_rows):
            write_shards(tmp / f"width-{rows}", rows, 10_000)
            seconds, drivers[rows], line = score(run, tmp / f"width-{rows}", tmp / f"out-width-{rows}", "ism", 1,
                                                 256, driver_only=True)
            print(line, flush=True)
    print(f"\nbare in-process forward (batch 1024): {bare:,.0f} rows/s")
    print(f"{'outputs':18s} {'actors':>6s} {'rows/s':>9s} {'marginal':>9s} {'marg÷bare':>9s} {'peak GB short/long':>19s} "
          f"{'genome h':>8s}")
    for label, actors, rate, marginal, peak_short, peak_long in table:
        ratio = f"{marginal / bare:9.1%}" if marginal else f"{'-':>9s}"
        peaks = f"{peak_short / 1e9:.2f} / {peak_long / 1e9:.2f}" if peak_short else f"{peak_long / 1e9:.2f}"
        print(f"{label:18s} {actors:6d} {rate:9,.0f} {marginal or 0:9,.0f} {ratio} {peaks:>19s} "
              f"{GENOME_WINDOWS / (marginal or rate) / 3600:8.2f}")
    small, large = sorted(drivers)
    print(f"driver peak RSS, --outputs ism (1,600 B/row): {small:,} rows {drivers[small] / 1e6:.0f} MB, "
          f"{large:,} rows {drivers[large] / 1e6:.0f} MB (ratio {drivers[large] / drivers[small]:.2f})")
    print(f"rows/s: whole `tfbind score` runs of {args.rows:,} rows (prob) or {args.ism_rows:,} (grad, ISM), Ray start, "
          f"model load and compilation included; marginal = ({args.rows:,} - {args.short_rows:,}) rows / the difference "
          "of the two runs' times (start-up cancels); genome = 15 M windows at the marginal rate (else the whole-run rate)")


if __name__ == "__main__":
    main()
