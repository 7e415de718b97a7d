"""Search against the full grid on real data: `tfbind tune` with random sampling + ASHA vs the same space as
a grid with no early stopping, run one after the other in this process.

Run (from the repository root; ~25 min on 2 CPU cores with --steps 1500):
    .venv/bin/python benchmarks/bench_tune.py --data ../shared/data/koo_chipseq_200bp --steps 1500 --out runs/bench_tune
A side whose directory exists is restored (nothing retrained), so `--seed 1` reruns only the ASHA search.
Prints each side's best valid auROC (its best trial's run restores its best checkpoint), the training steps it
spent (steps trained up to each trial's last evaluation, summed), wall time, and the ratios; the goal is the
search within 0.005 of the grid's best with <= 50% of its steps.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tfbind_dist.tuning.search import run_search
from tfbind_dist.tuning.spec import load_search

REPO = Path(__file__).resolve().parents[1]
SPECS = {"grid": REPO / "jobs" / "tune_gabpa_grid.yaml", "asha": REPO / "jobs" / "tune_gabpa_asha.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset dir holding GABPA (koo_chipseq_200bp)")
    parser.add_argument("--steps", type=int, default=3000, help="train.steps of every trial (the recipe's: 3000)")
    parser.add_argument("--samples", type=int, default=8, help="trials of the ASHA search")
    parser.add_argument("--seed", type=int, default=0, help="the ASHA search's sampling seed")
    parser.add_argument("--out", default="runs/bench_tune")
    args = parser.parse_args()
    overrides = {"data.path": str(Path(args.data).absolute()), "train.steps": args.steps}
    rows = {}
    for side, path in SPECS.items():
        spec = load_search(path, overrides)
        if side == "asha":
            from dataclasses import replace

            spec = replace(spec, num_samples=args.samples, seed=args.seed)
        started = time.time()
        out = Path(args.out) / (f"{side}-seed{args.seed}" if side == "asha" and args.seed else side)
        table = run_search(spec, out, address="local", progress=False)  # an existing side is restored, not rerun
        best = table[table.state == "finished"].objective.max()
        rows[side] = {"trials": len(table), "runs": len(set(table.runs)), "stopped": int((table.state == "stopped").sum()), "best": best,
                      "steps": int(table.steps.sum()), "wall_s": time.time() - started,
                      "best_params": table.iloc[0][list(spec.space)].to_dict()}
        import ray

        ray.shutdown()
    print(f"\nGABPA, {args.steps}-step trials, {', '.join(load_search(SPECS['grid']).space)}; ASHA seed {args.seed}")
    print(f"{'side':>6} {'trials':>6} {'runs':>4} {'stopped':>7} {'best valid auROC':>16} {'steps':>7} {'wall s':>7}  best trial")
    for side, r in rows.items():
        print(f"{side:>6} {r['trials']:>6} {r['runs']:>4} {r['stopped']:>7} {r['best']:>16.4f} {r['steps']:>7} {r['wall_s']:>7.0f}  "
              f"{r['best_params']}")
    grid, asha = rows["grid"], rows["asha"]
    print(f"asha - grid best valid auROC: {asha['best'] - grid['best']:+.4f} (goal >= -0.005); "
          f"steps asha / grid: {asha['steps'] / grid['steps']:.2f} (goal <= 0.50); "
          f"wall asha / grid: {asha['wall_s'] / grid['wall_s']:.2f}")


if __name__ == "__main__":
    main()
