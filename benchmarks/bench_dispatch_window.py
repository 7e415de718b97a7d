"""What the training loop's dispatch window costs: `train_and_evaluate` with the host kept at most
DISPATCH_DEPTH steps ahead of the devices (the fix for the multi-device deadlock) vs unbounded.

Run: .venv/bin/python benchmarks/bench_dispatch_window.py [--steps 300] [--repeats 3] [--depths 4 1000000]

On one device (the unbounded loop cannot deadlock there), in one process, alternating the settings
so that machine noise hits both alike; prints the median steps/s of each and the ratio to unbounded.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax

from tfbind_dist import config as C
from tfbind_dist.data.synthetic import synthesize
from tfbind_dist.training import loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 1_000_000])
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tfbind-bench-window-"))
    synthesize(tmp / "data", tfs=["CTCF"], n_train=6000, seed=0)
    cfg = C.with_overrides(C.load_recipe("chapter"), {
        "data.tf": "CTCF", "data.path": str(tmp / "data"), "train.steps": args.steps,
        "train.eval_every": args.steps // 3, "train.batch_size": args.batch_size})
    device = jax.devices()[:1]
    train_and_evaluate = loop.train_and_evaluate
    train_and_evaluate(cfg, tmp / "warmup", progress=False, devices=device)  # compile caches, page cache

    rates: dict[int, list[float]] = {d: [] for d in args.depths}
    for repeat in range(args.repeats):
        for depth in args.depths:
            loop.DISPATCH_DEPTH = depth
            start = time.perf_counter()
            train_and_evaluate(cfg, tmp / f"d{depth}-r{repeat}", progress=False, devices=device)
            rates[depth].append(args.steps / (time.perf_counter() - start))
    reference = statistics.median(rates[max(args.depths)])
    print(f"{args.steps} steps, batch {args.batch_size}, conv_v2, 1 device, {args.repeats} runs each "
          f"(whole train_and_evaluate: evaluations, checkpoints and test evaluation included)")
    for depth in args.depths:
        median = statistics.median(rates[depth])
        label = "unbounded" if depth == max(args.depths) and len(args.depths) > 1 else f"depth {depth}"
        print(f"  {label:>10}: {median:7.1f} steps/s (runs: {', '.join(f'{r:.1f}' for r in rates[depth])}); "
              f"ratio to unbounded {median / reference:.3f}")


if __name__ == "__main__":
    main()
