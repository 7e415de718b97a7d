"""Packed training: the 10 per-TF default-recipe jobs as one vmapped program, against the same 10 jobs one
after another in one process and against today's sweep (one Ray task per job), side by side in one run;
then one job with several steps per dispatch against one step per dispatch.

Run: .venv/bin/python benchmarks/bench_packing.py [--steps 300] [--eval-every 150] [--steps-per-dispatch 1 8]
     [--skip-sweep] [--data synthetic]
Each job is the default recipe (motif_pool, batch 64) on the embedded data, with `--steps` in place of
its 3,000 steps (the per-step cost does not depend on the total). seq/s counts training sequences
(jobs x steps x batch) over the whole wall time, evaluations, checkpoints and compilation included.
On a GPU (benchmarks/gpu_run.sh) pass --skip-sweep (no Ray there).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tfbind_dist import config as C  # noqa: E402
from tfbind_dist.registry import TFS  # noqa: E402
from tfbind_dist.training.loop import train_and_evaluate, train_pack  # noqa: E402


def _configs(args, **extra):
    base = C.with_overrides(C.load_recipe(), {"data.path": args.data, "train.steps": args.steps,
                                              "train.eval_every": args.eval_every, **extra})
    return [C.with_overrides(base, {"data.tf": tf}) for tf in TFS]


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _losses(run: Path) -> np.ndarray:
    m = pd.read_parquet(run / "metrics.parquet")
    return m[m.split == "train"].sort_values("step").value.to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--steps-per-dispatch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip-sweep", action="store_true", help="leave out the Ray sweep (no Ray on the machine)")
    args = parser.parse_args()
    configs = _configs(args)
    batch = configs[0].train.batch_size
    seqs = len(configs) * args.steps * batch
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {jax.device_count()} device(s), "
          f"{os.cpu_count()} CPUs; {len(configs)} jobs x {args.steps} steps, batch {batch}, "
          f"{configs[0].model.name}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds, _ = _timed(lambda: [train_and_evaluate(c, tmp / "solo" / c.data.tf, progress=False) for c in configs])
        rows.append(("one after another (one process)", seconds))
        seconds, packed = _timed(lambda: train_pack(configs, [tmp / "pack" / c.data.tf for c in configs],
                                                    progress=False))
        rows.append((f"packed (one program of {len(configs)})", seconds))
        if not args.skip_sweep:
            from tfbind_dist.sweeps.runner import run_sweep
            from tfbind_dist.sweeps.spec import Job, SweepSpec
            from tfbind_dist.experiment import job_id

            spec = SweepSpec("per_tf", tuple(Job(job_id(c), c) for c in configs))
            seconds, final = _timed(lambda: run_sweep(spec, tmp / "sweep", address="local", cpus_per_job=1,
                                                      progress=False))
            assert (final.state == "finished").all()
            rows.append((f"sweep, one Ray task per job (1 CPU each, {os.cpu_count()} at a time)", seconds))
        gaps = [float(np.abs(_losses(tmp / "pack" / c.data.tf) - _losses(tmp / "solo" / c.data.tf)).max())
                for c in configs]
        solo_auroc = [train_and_evaluate(c, tmp / "solo" / c.data.tf, progress=False)["best_valid_auroc"]
                      for c in configs]  # finished runs: their summaries
        auroc_gap = max(abs(p["best_valid_auroc"] - s) for p, s in zip(packed, solo_auroc))

        sequential = rows[0][1]
        print(f"\n{'10 per-TF jobs':58s} {'seconds':>8s} {'seq/s':>9s} {'vs one after another':>21s}")
        for name, seconds in rows:
            print(f"{name:58s} {seconds:8.1f} {seqs / seconds:9,.0f} {sequential / seconds:20.2f}x")
        print(f"packed vs solo: largest train-loss gap {max(gaps):.2e}, largest best-valid-auROC gap {auroc_gap:.4f}")

        one = configs[0]
        print(f"\none {one.data.tf} job, {args.steps} steps: steps per dispatch")
        base_seconds = None
        for per_dispatch in args.steps_per_dispatch:
            cfg = C.with_overrides(one, {"train.steps_per_dispatch": per_dispatch})
            seconds, _ = _timed(lambda: train_and_evaluate(cfg, tmp / f"spd{per_dispatch}", progress=False))
            base_seconds = base_seconds or seconds
            print(f"  steps_per_dispatch={per_dispatch:<3d} {seconds:7.1f} s {args.steps * batch / seconds:9,.0f} seq/s "
                  f"{base_seconds / seconds:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
