"""Scheduling overhead of a Ray sweep: N tiny jobs through `run_sweep` vs the same jobs run one after
another in one process, measured in the same run.

Run: .venv/bin/python benchmarks/bench_sweep_overhead.py [--jobs 8] [--steps 20]
The Ray sweep starts a local Ray instance, and every job runs in a fresh worker process
(max_calls=1: JAX import, data load and compilation per job), up to one job per CPU at a time.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from tfbind_dist.data.synthetic import synthesize  # noqa: E402
from tfbind_dist.sweeps.runner import run_sweep  # noqa: E402
from tfbind_dist.sweeps.spec import load_spec  # noqa: E402
from tfbind_dist.training.loop import train_and_evaluate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", tfs=["CTCF"], n_train=600, seed=0)
        spec_path = tmp / "tiny.yaml"
        spec_path.write_text(yaml.safe_dump({
            "name": "tiny", "defaults": {"data": {"tf": "CTCF", "path": str(tmp / "data")},
                                         "train": {"steps": args.steps, "eval_every": args.steps}},
            "matrix": {"train.seed": list(range(args.jobs))}}))
        spec = load_spec(spec_path)

        start = time.perf_counter()
        for job in spec.jobs:
            train_and_evaluate(job.config, tmp / "sequential" / job.job_id, progress=False)
        sequential = time.perf_counter() - start

        start = time.perf_counter()
        final = run_sweep(spec, tmp / "ray", address="local", cpus_per_job=1, progress=False)
        ray_seconds = time.perf_counter() - start
        assert (final.state == "finished").all()
    cpus = os.cpu_count()
    print(f"{args.jobs} jobs x {args.steps} steps (conv_v2, batch 32), {cpus} CPUs")
    print(f"sequential in one process : {sequential:7.1f} s  ({sequential / args.jobs:.2f} s/job)")
    print(f"Ray sweep (local, 1 CPU/job): {ray_seconds:7.1f} s  ({ray_seconds / args.jobs:.2f} s/job)")
    print(f"ratio Ray / sequential    : {ray_seconds / sequential:7.2f}x")
    print(f"overhead per job          : {(ray_seconds - sequential) / args.jobs:+.2f} s "
          "(Ray start, fresh worker process, JAX import, compile; parallel slots offset it)")


if __name__ == "__main__":
    main()
