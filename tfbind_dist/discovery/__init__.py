"""De-novo motif discovery: what sequence patterns a trained model uses, named by JASPAR.

Hypothetical contributions (ISM, corrected gradients or DeepLIFT/SHAP; `inputs`) -> TF-MoDISco
seqlets clustered into motifs (modisco-lite; `modisco`) -> TOMTOM against a JASPAR collection
(memelite; `matching`) -> motifs.csv, the modisco HDF5 and one figure per motif (`report`).
`discover_motifs` is the entry point of `tfbind motifs`.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from tfbind_dist.data import jaspar
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.discovery.inputs import Contributions
from tfbind_dist.discovery.matching import match_motifs, own_matrix_ids
from tfbind_dist.discovery.modisco import ModiscoSettings, TooFewSeqlets, run_modisco
from tfbind_dist.discovery.report import motif_table, own_motif_rank, write_motif_figure
from tfbind_dist.storage import as_path, atomic_output, remove_stale_temps, write_csv_atomic

MOTIFS_CSV = "motifs.csv"
MODISCO_H5 = "modisco_results.h5"
FIGURES = "figures"


class Discovery(NamedTuple):
    table: pd.DataFrame  # motifs.csv
    own_motif_rank: int | None  # rank of the TF's own motif among the positive motifs (1 = most seqlets)
    sequences: int
    seconds: float


def discover_motifs(contributions: Contributions, tf: str, out_dir, *, settings: ModiscoSettings = ModiscoSettings(),
                    tax_group: str = "vertebrates", progress: bool = True) -> Discovery:
    """Find motifs in `contributions`, name them against JASPAR and write them to `out_dir`.

    Raises `TooFewSeqlets` (nothing written) when TF-MoDISco finds no motif.
    """
    started = time.time()
    say = print if progress else (lambda *a, **k: None)
    targets = jaspar.collection(tax_group)
    n, length = contributions.codes.shape
    say(f"motifs: TF-MoDISco on {n:,} sequences of {length} bp", flush=True)
    out = as_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / FIGURES):  # temp files of an earlier run that was killed mid-write
        remove_stale_temps(folder)
    with atomic_output(out / MODISCO_H5) as tmp:
        motifs = run_modisco(one_hot(contributions.codes, "zeros"), contributions.hypothetical, settings, tmp)
        (out / MOTIFS_CSV).unlink(missing_ok=True)  # an earlier run's table no longer describes the folder
    positive = sum(m.sign == "+" for m in motifs)
    say(f"motifs: {len(motifs)} motifs ({positive} positive, {len(motifs) - positive} negative); matching them "
        f"against {len(targets):,} JASPAR {tax_group} CORE matrices", flush=True)
    matches = match_motifs([m.probabilities for m in motifs], targets)
    table = motif_table(motifs, matches, own_matrix_ids(tf, targets))
    by_id = {t.matrix_id: t for t in targets}
    figures = out / FIGURES
    for motif, motif_matches in tqdm(list(zip(motifs, matches)), desc="figures", unit="motif", disable=not progress):
        write_motif_figure(motif, motif_matches, by_id, figures / f"{motif.name}.png")
    for stale in set(p.name for p in figures.glob("*.png")) - {f"{m.name}.png" for m in motifs}:
        (figures / stale).unlink()  # an earlier run's motifs that this one did not find
    write_csv_atomic(table, out / MOTIFS_CSV)  # last: its presence means the folder is complete
    return Discovery(table, own_motif_rank(table), len(contributions.codes), time.time() - started)


__all__ = ["Discovery", "ModiscoSettings", "TooFewSeqlets", "discover_motifs", "MOTIFS_CSV", "MODISCO_H5", "FIGURES"]
