"""Attribution quality: do ISM and gradients find the motifs? Ground truth on synthetic data, motif check on real data.

Run: .venv/bin/python benchmarks/bench_attribution_quality.py [--out runs/attribution] [--n 500] [--steps 1000]

1. Synthetic (tfbind data synth): trains CTCF (easy) and ZNF24 (hard), then scores >= n test positives
   with ISM, gradients and corrected gradients; quality = mean per-sequence auROC of per-position
   importance against the planted-motif positions.
2. Real (koo_chipseq_200bp REST): trains the chapter recipe, then, on validation positives with a
   significant JASPAR REST match (p < 1e-4), the fraction whose ISM hot window overlaps the best match.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tfbind_dist import config as C
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.data.io import load_split, sequence_column_strings
from tfbind_dist.data.synthetic import planted_mask, synthesize
from tfbind_dist.interpret import explain
from tfbind_dist.interpret.quality import importance_auroc
from tfbind_dist.interpret.report import motif_table
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.restore import load_model

REPO = Path(__file__).resolve().parents[1]
METHODS = ("ism", "grad", "grad-corrected")


def position_importance(attribution, observed, method, kind):
    """(N, L) per-position importance of an (N, L, 4) attribution map."""
    if kind == "all":
        return np.abs(attribution).sum(-1)
    if method == "ism":  # substitutions of the observed base: their mean effect size
        return np.abs(attribution).sum(-1) / 3
    return np.abs((attribution * observed).sum(-1))


def trained(out: Path, tf: str, data: Path, steps: int):
    cfg = C.with_overrides(C.RunConfig(), {"data.tf": tf, "data.path": str(data), "train.steps": steps})
    summary = train_and_evaluate(cfg, out / tf, progress=False)
    return load_model(out / tf), summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "runs" / "attribution"))
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--real", default=str(REPO.parent / "shared/data/koo_chipseq_200bp"))
    args = parser.parse_args()
    out = Path(args.out)
    synth = out / "data"
    synthesize(synth, tfs=["CTCF", "ZNF24"], n_train=6000, seed=0)

    print("importance per position: 'all' = sum over bases of |attribution|; 'observed' = |attribution of the "
          "observed base| (ISM: the mean |delta| of its substitutions)")
    print(f"{'TF':6s} {'valid auROC':>11s} {'positives':>9s} {'importance':>10s} " + " ".join(f"{m:>15s}" for m in METHODS))
    for tf in ("CTCF", "ZNF24"):
        model, summary = trained(out / "synthetic", tf, synth, args.steps)
        split = load_split(synth, tf, "test")
        positives = np.flatnonzero(split.labels == 1)[: args.n]
        mask = planted_mask(split.table.take(positives), split.length)
        with_motif = mask.any(axis=1)
        arrays = explain(model.module, model.variables, split.codes[positives], METHODS, batch_size=64)
        observed = one_hot(split.codes[positives])
        for kind in ("all", "observed"):
            scores = [importance_auroc(position_importance(arrays[m.replace("-", "_")], observed, m, kind)[with_motif],
                                       mask[with_motif]) for m in METHODS]
            print(f"{tf:6s} {summary['best_valid_auroc']:11.3f} {scores[0].sequences:9d} {kind:>10s} "
                  + " ".join(f"{s.mean_auroc:15.3f}" for s in scores))

    model, summary = trained(out / "real", "REST", Path(args.real), args.steps)
    split = load_split(args.real, "REST", "valid")
    positives = np.flatnonzero(split.labels == 1)
    arrays = explain(model.module, model.variables, split.codes[positives], ["ism"], batch_size=64)
    table = motif_table(sequence_column_strings(split.table.take(positives)), np.abs(arrays["ism"]).sum(-1), "REST")
    sig = table[table.significant]
    print(f"\nREST (real, valid auROC {summary['best_valid_auroc']:.3f}): {len(sig)}/{len(table)} positives have a "
          f"significant JASPAR REST match; the ISM hot window overlaps it in {int(sig.overlap.sum())} "
          f"({sig.overlap.mean():.1%})")


if __name__ == "__main__":
    main()
