"""Genome tracks of a real genome: `tfbind tracks` on E. coli K-12 MG1655 scored at stride 50 by 10 models.

Run: .venv/bin/python benchmarks/bench_tracks.py [--runs RUN ...] [--work DIR]

1. `tfbind data shard` tiles the genome at stride 50 (92,795 windows of 200 bp) and at stride 25 (185,590: the
   input doubled).
2. The windows are scored in this process (the scoring service's actor, `--address inline`) with the 10 models:
   prob and logit; and, at stride 50, one model's corrected gradients (a per-base attribution track).
3. `tfbind tracks` runs as a user runs it, once per scores folder, in a fresh process whose peak resident
   memory (its own, from wait4) and wall time are printed, with windows/s, the bigWigs' sizes, the ratio of
   peak memory when the input doubles, and the time projected to the 15 M windows of a tiled human genome.

Without --runs, the 10 models are trained here from the default recipe for a few steps on synthetic data
(the speed of writing tracks does not depend on how well a model is trained); `make demo` leaves 10 such
runs in runs/demo (`--runs runs/demo/*-s42-*`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ecoli import GENOME, train_runs  # noqa: E402

import tfbind_dist as tb  # noqa: E402

HUMAN_WINDOWS = 15_000_000


def tracks_command(scores: Path, out: Path) -> tuple[float, float]:
    """`tfbind tracks SCORES --out OUT` in a fresh process: (seconds, peak resident memory in MB)."""
    env = {**os.environ, "XLA_FLAGS": ""}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", "tracks", str(scores), "--out", str(out),
                              "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = child.stdout.read(), child.stderr.read()
    if status:
        raise RuntimeError(f"tfbind tracks failed:\n{stderr[-3000:]}")
    print(f"    {stdout.strip()}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", help="10 run directories (default: train them here)")
    parser.add_argument("--work", help="folder for shards, scores and tracks (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=30, help="training steps when training the models here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-tracks-"))
    runs = [Path(r) for r in args.runs] if args.runs else train_runs(work / "runs", args.steps)
    print(f"{len(runs)} models; genome {GENOME.name}; work folder {work}")
    rows = []
    for stride in (50, 25):
        shards, scores = work / f"shards{stride}", work / f"scores{stride}"
        if not (shards / "_SHARDS.json").exists():
            tb.shard(GENOME, shards, window=200, stride=stride, rows_per_shard=100_000)
        started = time.perf_counter()
        summary = tb.score([str(r) for r in runs], shards, scores, "prob,logit", address="inline", progress=False)
        print(f"stride {stride}: {summary.rows:,} windows x {len(runs)} models scored (prob, logit) in "
              f"{time.perf_counter() - started:.0f} s")
        seconds, peak = tracks_command(scores, work / f"tracks{stride}")
        size = sum(p.stat().st_size for p in (work / f"tracks{stride}").glob("*.bw")) / 1e6
        rows.append((f"stride {stride}: prob + logit x {len(runs)} models", summary.rows, 2 * len(runs), seconds, peak,
                     size))
    attribution = work / "scores50_grad"
    tb.score([str(runs[0])], work / "shards50", attribution, "prob,grad_corrected", address="inline", progress=False)
    seconds, peak = tracks_command(attribution, work / "tracks50_grad")
    size = sum(p.stat().st_size for p in (work / "tracks50_grad").glob("*.bw")) / 1e6
    rows.append(("stride 50: prob + grad_corrected (per base) x 1 model", rows[0][1], 2, seconds, peak, size))
    print(f"\n{'input':<55} {'windows':>9} {'tracks':>6} {'seconds':>8} {'windows/s':>10} {'peak MB':>8} "
          f"{'bigWig MB':>9} {'15 M windows':>13}")
    for name, windows, count, seconds, peak, size in rows:
        print(f"{name:<55} {windows:>9,} {count:>6} {seconds:>8.1f} {windows / seconds:>10,.0f} {peak:>8.0f} "
              f"{size:>9.1f} {seconds * HUMAN_WINDOWS / windows / 60:>10.1f} min")
    print(f"\npeak memory, input doubled (stride 25 vs 50): {rows[1][4] / rows[0][4]:.2f}x; time {rows[1][3] / rows[0][3]:.2f}x")
    print("(whole `tfbind tracks` commands, start-up included; peak = the command's own resident memory)")


if __name__ == "__main__":
    main()
