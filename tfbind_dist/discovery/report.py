"""What `tfbind motifs` reports: the motifs table and one figure per motif (contribution logo above its match)."""
from __future__ import annotations

import pandas as pd

from tfbind_dist.data import jaspar
from tfbind_dist.data.encoding import reverse_complement_one_hot
from tfbind_dist.discovery.matching import Match
from tfbind_dist.discovery.modisco import Motif
from tfbind_dist.interpret.plots import plot_motif_match
from tfbind_dist.plotting import detached

TOP_MATCHES = 3  # best JASPAR matches listed per motif
SIGNIFICANT_Q = 0.05


def consensus(probabilities) -> str:
    return "".join("ACGT"[i] for i in probabilities.argmax(axis=1))


def motif_row(motif: Motif, matches: list[Match], own: set[str]) -> dict:
    """One row of motifs.csv: the motif, its best matches, and how well the TF's own matrix matches it."""
    row = {"motif": motif.name, "sign": motif.sign, "seqlets": motif.seqlets, "width": len(motif.probabilities),
           "consensus": consensus(motif.probabilities)}
    for k in range(TOP_MATCHES):
        match = matches[k] if k < len(matches) else None
        row[f"match_{k + 1}"] = f"{match.matrix_id} {match.name}" if match else ""
        row[f"match_{k + 1}_q"] = match.q_value if match else float("nan")
    own_match = next((m for m in matches if m.matrix_id in own), None)
    row["own_tf_match"] = f"{own_match.matrix_id} {own_match.name}" if own_match else ""
    row["own_tf_q"] = own_match.q_value if own_match else float("nan")
    row["own_tf_match_rank"] = own_match.rank if own_match else -1
    row["is_own_tf"] = bool(own_match is not None and own_match.q_value < SIGNIFICANT_Q)
    return row


def motif_table(motifs: list[Motif], matches: list[list[Match]], own: set[str]) -> pd.DataFrame:
    return pd.DataFrame([motif_row(m, ms, own) for m, ms in zip(motifs, matches)])


def own_motif_rank(table: pd.DataFrame) -> int | None:
    """1-based rank, among the positive motifs (most seqlets first), of the first that is the TF's own; None if none."""
    positive = table[table.sign == "+"].reset_index(drop=True)
    hits = positive.index[positive.is_own_tf]
    return int(hits[0]) + 1 if len(hits) else None


def plot_motif(motif: Motif, matches: list[Match], targets: dict[str, jaspar.JasparMatrix], *, axes=None):
    """A discovered motif's contribution logo above its best JASPAR match, aligned; `axes`: one per panel
    (two, or one without a match; default: a new figure). Returns the axes."""
    best = matches[0] if matches else None
    probs = None
    match_title = ""
    if best is not None:
        probs = jaspar.probabilities(targets[best.matrix_id].counts)
        if best.strand == "-":
            probs = reverse_complement_one_hot(probs)
        strand = " (reverse complement)" if best.strand == "-" else ""
        match_title = f"best JASPAR match {best.matrix_id} {best.name}{strand}: q = {best.q_value:.2g}"
    return plot_motif_match(motif.contributions, probs, axes=axes, offset=best.offset if best else 0,
                            match_title=match_title, title=f"{motif.name} ({motif.sign}), {motif.seqlets} seqlets: "
                                                           f"{consensus(motif.probabilities)}")


def motif_figure(motif: Motif, matches: list[Match], targets: dict[str, jaspar.JasparMatrix]):
    """`plot_motif` on a detached figure, for a file."""
    width = max(len(motif.probabilities), len(targets[matches[0].matrix_id].counts) if matches else 0) + 2
    panels = 2 if matches else 1
    figure, axes = detached((max(5.0, 0.35 * width), 2.4 * panels), panels, 1)
    plot_motif(motif, matches, targets, axes=axes[:, 0])
    return figure


__all__ = ["SIGNIFICANT_Q", "TOP_MATCHES", "consensus", "motif_figure", "motif_table", "own_motif_rank", "plot_motif"]
