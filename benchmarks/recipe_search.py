"""Try training-recipe variants on real data and print one row per (variant, TF, seed).

Each variant is a set of `--set`-style overrides on top of a base recipe. Rows are appended
to --csv as they finish, so a run cut short by a time budget still reports what it did.

    python benchmarks/recipe_search.py --data ../shared/data/koo_chipseq_200bp \
        --tfs GABPA REST --variants chapter motif_pool --seeds 42
"""
from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from tfbind_dist import config as C
from tfbind_dist.config import load_recipe
from tfbind_dist.training.loop import train_and_evaluate

LONG = {"train.batch_size": 64, "train.steps": 3000, "train.eval_every": 150, "train.warmup_steps": 150,
        "train.optimizer": "adamw", "train.weight_decay": 0.01, "train.learning_rate": 0.002}
AUG = {"train.augment_rc": True, "train.jitter": 3}
MP19 = {"model.name": "motif_pool", "model.overrides.kernel_size": 19}  # the first motif_pool tried; k=11 won
BASE = {**LONG, **AUG, **MP19}
EVO = {"train.evo_delete_max": 20, "train.evo_insert_max": 20, "train.evo_translocate_max": 20,
       "train.evo_mutate_frac": 0.05, "train.evo_max_per_seq": 3}

VARIANTS: dict[str, tuple[str, dict]] = {
    "chapter": ("chapter", {}),
    "conv_v2_long": ("chapter", {**LONG}),
    "conv_v2_long_aug": ("chapter", {**LONG, **AUG}),
    "motif_pool_long": ("chapter", {**LONG, **MP19}),
    "motif_pool_long_aug": ("chapter", BASE),
    "motif_pool_aug_single_strand": ("chapter", {**BASE, "model.overrides.strand_average": False}),
    "motif_pool_aug_exp": ("chapter", {**BASE, "model.overrides.activation": "exp"}),
    "motif_pool_aug_wide": ("chapter", {**BASE, "model.overrides.conv_filters": 256}),
    "motif_pool_aug_drop3": ("chapter", {**BASE, "model.overrides.dropout_rate": 0.3}),
    "motif_pool_aug_6k": ("chapter", {**BASE, "train.steps": 6000}),
    "motif_pool_aug_b128": ("chapter", {**BASE, "train.batch_size": 128, "train.learning_rate": 0.003}),
    "motif_pool_aug_k11": ("chapter", {**BASE, "model.overrides.kernel_size": 11}),  # = the default recipe
    "motif_pool_aug_wd5e-2": ("chapter", {**BASE, "train.weight_decay": 0.05}),
    "motif_pool_aug_lr1e-3": ("chapter", {**BASE, "train.learning_rate": 0.001}),
    "motif_pool_aug_jitter10": ("chapter", {**BASE, "train.jitter": 10}),
    "default": ("default", {}),
    # Evolution-inspired augmentations (EvoAug's ChIP-seq settings: deletions, insertions and translocations of up
    # to 20 bp, 5% substitutions, 1-3 of them per sequence) on top of the default, with and without fine-tuning.
    "evo": ("default", EVO),
    "evo_4k": ("default", {**EVO, "train.steps": 4000}),
    "evo_5k_ft1k": ("evoaug", {}),  # = default + EVO, 5,000 steps of which the last 1,000 fine-tune: `--recipe evoaug`
    "evo_4k_ft1k": ("default", {**EVO, "train.steps": 4000, "train.finetune_steps": 1000}),
    "evo_inv_5k_ft1k": ("default", {**EVO, "train.evo_invert_max": 20, "train.steps": 5000,
                                    "train.finetune_steps": 1000}),
    "default_4k_ft1k": ("default", {"train.steps": 4000, "train.finetune_steps": 1000}),
}


def valid_auroc_before(run: Path, step: int) -> float:
    """The best validation auROC a run reached by `step` (the end of its augmented phase)."""
    metrics = pq.read_table(run / "metrics.parquet").to_pandas()
    valid = metrics[(metrics.split == "valid") & (metrics.metric == "auroc") & (metrics.step <= step)]
    return float(valid.value.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tfs", nargs="+", default=["GABPA", "REST"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every variant")
    ap.add_argument("--csv", default="recipe_search.csv")
    ap.add_argument("--runs", help="keep each run's directory (checkpoints, metrics) under this folder, e.g. to "
                    "interpret the models afterwards; default: a temporary folder, removed at the end")
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="start no new run after this many seconds")
    args = ap.parse_args()

    started = time.time()
    fields = ["variant", "tf", "seed", "best_valid_auroc", "test_auroc", "best_step", "stopped_early_at",
              "best_valid_before_finetune", "wall_s"]
    new_file = not Path(args.csv).exists()
    with open(args.csv, "a", newline="") as handle, tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs or tmp)
        writer = csv.DictWriter(handle, fieldnames=fields)
        if new_file:
            writer.writeheader()
        print(" ".join(f"{f:>16}" for f in fields), flush=True)
        walls: dict[str, list[float]] = {variant: [] for variant in args.variants}
        # Variants innermost, so each (TF, seed) runs every variant side by side: the wall-time ratios
        # compare runs that met the same load on this shared machine.
        for tf, seed, variant in itertools.product(args.tfs, args.seeds, args.variants):
            if time.time() - started > args.budget_s:
                print(f"time budget reached; skipped {variant} {tf} s{seed} and later runs", flush=True)
                break
            recipe, overrides = VARIANTS[variant]
            cfg = C.with_overrides(load_recipe(recipe), {
                **overrides, "data.tf": tf, "data.path": args.data, "train.seed": seed,
                **C.parse_set_args(args.set)})
            t0 = time.time()
            run = runs / f"{variant}-{tf}-{seed}"
            summary = train_and_evaluate(cfg, run, progress=False)
            walls[variant].append(time.time() - t0)
            before = valid_auroc_before(run, cfg.train.steps - cfg.train.finetune_steps)
            row = {"variant": variant, "tf": tf, "seed": seed,
                   "best_valid_auroc": round(summary["best_valid_auroc"], 4),
                   "test_auroc": round(summary["test_auroc"], 4), "best_step": summary["best_step"],
                   "stopped_early_at": summary.get("stopped_early_at"),
                   "best_valid_before_finetune": round(before, 4) if cfg.train.finetune_steps else "",
                   "wall_s": round(walls[variant][-1], 1)}
            writer.writerow(row)
            handle.flush()
            print(" ".join(f"{row[f]!s:>16}" for f in fields), flush=True)
    first = args.variants[0]
    if len(args.variants) > 1 and walls[first]:
        for variant, times in walls.items():
            if times:
                print(f"{variant}: mean wall {statistics.mean(times):.1f} s over {len(times)} runs, "
                      f"{statistics.mean(times) / statistics.mean(walls[first]):.2f}x {first}", flush=True)


if __name__ == "__main__":
    main()
