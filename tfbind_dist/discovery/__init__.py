"""De-novo motif discovery: what sequence patterns a trained model uses, named by JASPAR.

Hypothetical contributions (ISM, corrected gradients or DeepLIFT/SHAP; `inputs`) -> TF-MoDISco
seqlets clustered into motifs (modisco-lite; `modisco`) -> TOMTOM against a JASPAR collection
(memelite; `matching`) -> motifs.csv, the modisco HDF5 and one figure per motif (`report`).
`discover_motifs` is the entry point of `tfbind motifs`; it returns everything in memory and writes the
files only when given a folder.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from tfbind_dist.data import jaspar
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.discovery.inputs import Contributions
from tfbind_dist.discovery.matching import Match, match_motifs, own_matrix_ids
from tfbind_dist.discovery.modisco import ModiscoSettings, Motif, TooFewSeqlets, run_modisco
from tfbind_dist.discovery.report import motif_figure, motif_table, own_motif_rank, plot_motif
from tfbind_dist.storage import as_path, atomic_output, remove_stale_temps, save_figure, write_csv_atomic

MOTIFS_CSV = "motifs.csv"
MODISCO_H5 = "modisco_results.h5"
FIGURES = "figures"


class Discovery(NamedTuple):
    """Motifs found in a model's contributions, named against JASPAR."""

    table: pd.DataFrame  # motifs.csv: one row per motif
    motifs: list[Motif]  # in the table's order: trimmed probability and contribution matrices
    matches: list[list[Match]]  # each motif's JASPAR matches, most similar first
    own_motif_rank: int | None  # rank of the TF's own motif among the positive motifs (1 = most seqlets)
    sequences: int
    seconds: float
    tax_group: str  # the JASPAR CORE group matched against
    tf: str

    def describe(self) -> list[str]:
        """One line per motif (sign, seqlets, consensus, best match, whether it is the TF's own), then a summary."""
        lines = []
        for row in self.table.itertuples():
            own = f" <- {self.tf}" if row.is_own_tf else ""
            lines.append(f"  {row.motif} ({row.sign}) {row.seqlets:>5} seqlets {row.consensus:<24} best: {row.match_1} "
                         f"(q = {row.match_1_q:.2g}){own}")
        rank = f"the {self.tf} motif is positive motif #{self.own_motif_rank}" if self.own_motif_rank else \
            f"no discovered motif matches a {self.tf} JASPAR matrix (q < 0.05)"
        lines.append(f"motifs: {len(self.table)} motifs from {self.sequences:,} sequences in {self.seconds:.0f} s; "
                     f"{rank}")
        return lines

    def plot(self, motif: int = 0, *, axes=None):
        """Motif number `motif`'s contribution logo above its best JASPAR match (inline in a notebook)."""
        targets = {t.matrix_id: t for t in jaspar.collection(self.tax_group)}
        return plot_motif(self.motifs[motif], self.matches[motif], targets, axes=axes)


def discover_motifs(contributions: Contributions, tf: str, out_dir=None, *,
                    settings: ModiscoSettings = ModiscoSettings(), tax_group: str = "vertebrates",
                    progress: bool = True) -> Discovery:
    """Find motifs in `contributions`, name them against JASPAR; with `out_dir`, also write motifs.csv,
    modisco_results.h5 and one figure per motif there.

    Raises `TooFewSeqlets` (nothing written) when TF-MoDISco finds no motif.
    """
    started = time.time()
    say = print if progress else (lambda *a, **k: None)
    targets = jaspar.collection(tax_group)
    n, length = contributions.codes.shape
    say(f"motifs: TF-MoDISco on {n:,} sequences of {length} bp", flush=True)
    sequences = one_hot(contributions.codes, "zeros")
    if out_dir is None:
        motifs = run_modisco(sequences, contributions.hypothetical, settings)
    else:
        out = as_path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for folder in (out, out / FIGURES):  # temp files of an earlier run that was killed mid-write
            remove_stale_temps(folder)
        with atomic_output(out / MODISCO_H5) as tmp:
            motifs = run_modisco(sequences, contributions.hypothetical, settings, tmp)
            (out / MOTIFS_CSV).unlink(missing_ok=True)  # an earlier run's table no longer describes the folder
    positive = sum(m.sign == "+" for m in motifs)
    say(f"motifs: {len(motifs)} motifs ({positive} positive, {len(motifs) - positive} negative); matching them "
        f"against {len(targets):,} JASPAR {tax_group} CORE matrices", flush=True)
    matches = match_motifs([m.probabilities for m in motifs], targets)
    table = motif_table(motifs, matches, own_matrix_ids(tf, targets))
    if out_dir is not None:
        _write_report(as_path(out_dir), table, motifs, matches, {t.matrix_id: t for t in targets}, progress)
    return Discovery(table, motifs, matches, own_motif_rank(table), n, time.time() - started, tax_group, tf)


def _write_report(out, table: pd.DataFrame, motifs: list[Motif], matches: list[list[Match]], targets: dict,
                  progress: bool) -> None:
    """figures/<motif>.png (stale ones of an earlier run removed), then motifs.csv (last: the folder is complete)."""
    figures = out / FIGURES
    for motif, motif_matches in tqdm(list(zip(motifs, matches)), desc="figures", unit="motif", disable=not progress):
        save_figure(motif_figure(motif, motif_matches, targets), figures / f"{motif.name}.png", dpi=110)
    for stale in set(p.name for p in figures.glob("*.png")) - {f"{m.name}.png" for m in motifs}:
        (figures / stale).unlink()  # an earlier run's motifs that this one did not find
    write_csv_atomic(table, out / MOTIFS_CSV)


__all__ = ["Discovery", "ModiscoSettings", "Motif", "TooFewSeqlets", "discover_motifs", "MOTIFS_CSV", "MODISCO_H5",
           "FIGURES"]
