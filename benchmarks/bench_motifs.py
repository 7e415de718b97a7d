"""Motif discovery on trained runs: the rank of each TF's own motif per attribution method.

Run: .venv/bin/python benchmarks/bench_motifs.py RUN_DIR [RUN_DIR ...] --out DIR [--split valid]
     [--methods ism,grad-corrected,deeplift-shap]

For every run and method, what `tfbind motifs --run RUN --method M --split valid` does (the run's
positives), timed in two parts (contributions; TF-MoDISco + TOMTOM + files). Prints one markdown
table: motifs found (positive / negative), the rank of the TF's own motif among the positive motifs
(most seqlets first; '-' when none matches a matrix of the TF at q < 0.05), the own matrix's q-value
and rank among JASPAR matches for that motif, and the best matches of the other positive motifs
(what else the model learned). Each run's outputs land in DIR/<run name>/<method>/.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


from tfbind_dist.data.sources import load_splits
from tfbind_dist.discovery import TooFewSeqlets, discover_motifs, inputs
from tfbind_dist.interpret import DISCOVERY_METHODS
from tfbind_dist.training.restore import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--methods", default=",".join(DISCOVERY_METHODS))
    args = parser.parse_args()
    rows, others = [], []
    for run in args.runs:
        model = load_model(run)
        data = model.config.data
        split = load_splits(data, splits=(args.split,))[args.split]
        codes = split.codes[split.labels == 1]
        names = [str(i) for i in range(len(codes))]
        source = "synthetic" if data.path == "synthetic" else Path(data.path).name
        for method in args.methods.split(","):
            started = time.time()
            contributions = inputs.from_model(model, codes, names, method, progress=False)
            attribution_s = time.time() - started
            started = time.time()
            try:
                found = discover_motifs(contributions, data.tf, Path(args.out) / Path(run).name / method,
                                        progress=False)
            except TooFewSeqlets as err:
                rows.append(f"| {data.tf} | {source} | {method} | {len(codes)} | {err} | | | | |")
                continue
            table = found.table
            positive = table[table.sign == "+"].reset_index(drop=True)
            rank = found.own_motif_rank
            own = positive.iloc[rank - 1] if rank else None
            own_text = f"{own.own_tf_q:.1e} ({own.own_tf_match.split()[0]}, match #{own.own_tf_match_rank})" \
                if own is not None else "–"
            rows.append(f"| {data.tf} | {source} | {method} | {len(codes)} | {len(positive)} / "
                        f"{len(table) - len(positive)} | **{rank or '–'}** | {own_text} | "
                        f"{positive.match_1[0]} (q {positive.match_1_q[0]:.1e}, {positive.seqlets[0]} seqlets) | "
                        f"{attribution_s:.0f} + {found.seconds:.0f} |")
            for motif in positive.itertuples():
                if not motif.is_own_tf:
                    others.append(f"| {data.tf} | {method} | {motif.motif} | {motif.seqlets} | {motif.consensus} | "
                                  f"{motif.match_1} (q {motif.match_1_q:.1e}) |")
            print(f"{data.tf} {method}: own motif rank {rank}", flush=True)
    print("\n| TF | data | method | positives | motifs + / − | own motif rank | own matrix q (id, match rank) "
          "| top positive motif: best match | seconds (contributions + discovery) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nPositive motifs that are not the TF's own:\n")
    print("| TF | method | motif | seqlets | consensus | best JASPAR match |")
    print("|---|---|---|---|---|---|")
    print("\n".join(others))


if __name__ == "__main__":
    main()
