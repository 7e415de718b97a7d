"""How much a seed ensemble adds: each run's valid/test auROC next to that of the runs' mean logit.

The runs must share a TF and data (e.g. one recipe trained with several seeds by recipe_search.py --runs DIR).
An ensemble of K models costs K times one model to score, so this measures the ceiling of the idea.

    python benchmarks/seed_ensemble.py /tmp/runs/evo_5k_ft1k-GABPA-*
"""
from __future__ import annotations

import argparse
import statistics

from tfbind_dist import api
from tfbind_dist.data.sources import load_splits
from tfbind_dist.training.metrics import binary_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories of one TF")
    args = ap.parse_args()
    models = api.load_models(args.runs)
    if len({m.tf for m in models}) != 1:
        raise SystemExit(f"the runs must share a TF, got {sorted({m.tf for m in models})}")
    splits = load_splits(models[0].config.data, splits=("valid", "test"))
    print(f"{'split':>6} {'members (mean ± sd)':>22} {'ensemble':>9} {'gain':>7}   ({len(models)} runs of "
          f"{models[0].tf})")
    for name, split in splits.items():
        logit = api.predict(models, split.codes).logit  # (N, runs): a list of models gives a column each
        members = [binary_metrics(split.labels, logit[:, i])["auroc"] for i in range(len(models))]
        ensemble = binary_metrics(split.labels, logit.mean(axis=1))["auroc"]
        mean, spread = statistics.mean(members), statistics.stdev(members) if len(members) > 1 else 0.0
        print(f"{name:>6} {mean:>13.4f} ± {spread:.4f} {ensemble:>9.4f} {ensemble - mean:>+7.4f}")


if __name__ == "__main__":
    main()
