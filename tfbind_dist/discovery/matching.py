"""Naming discovered motifs: TOMTOM similarity of each motif to every matrix of a JASPAR collection.

memelite's `tomtom` (the "complete score" TOMTOM with Pearson-correlation columns) gives a p-value
for every (motif, matrix) pair; q-values are Benjamini-Hochberg over the collection for each
motif, as MEME's tomtom reports them per query.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from tfbind_dist.data import jaspar
from tfbind_dist.registry import JASPAR_IDS


class Match(NamedTuple):
    matrix_id: str
    name: str
    p_value: float
    q_value: float
    strand: str  # '+': the matrix as it is; '-': its reverse complement matches the motif
    offset: int  # where the motif starts within the matrix (on the matching strand); negative: it overhangs
    rank: int  # 1 = the motif's most similar matrix


def benjamini_hochberg(p_values) -> np.ndarray:
    """q-values of a 1-D array of p-values (Benjamini & Hochberg), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    scaled = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def match_motifs(motifs: Sequence[np.ndarray], targets: Sequence[jaspar.JasparMatrix]) -> list[list[Match]]:
    """Every target matrix's match to each (W, 4) probability matrix, most similar first."""
    if not motifs:
        return []
    from memelite import tomtom

    queries = [np.ascontiguousarray(np.asarray(m, np.float64).T) for m in motifs]  # tomtom wants (4, W)
    matrices = [np.ascontiguousarray(jaspar.probabilities(t.counts).T) for t in targets]
    p_values, _, offsets, _, strands = tomtom(queries, matrices)
    out = []
    for p, offset, strand in zip(np.asarray(p_values), np.asarray(offsets), np.asarray(strands)):
        q = benjamini_hochberg(p)
        order = np.argsort(p, kind="stable")
        out.append([Match(targets[j].matrix_id, targets[j].name, float(p[j]), float(q[j]),
                          "-" if strand[j] else "+", int(offset[j]), rank) for rank, j in enumerate(order, start=1)])
    return out


def own_matrix_ids(tf: str, targets: Sequence[jaspar.JasparMatrix]) -> set[str]:
    """The collection's matrices of the TF itself: its name (or a dimer naming it), or the matrix the
    synthetic data plants for it."""
    tf = tf.upper()
    planted = JASPAR_IDS.get(tf, "").split(".")[0]
    return {t.matrix_id for t in targets
            if tf in t.name.upper().split("::") or (planted and t.matrix_id.split(".")[0] == planted)}


__all__ = ["Match", "benjamini_hochberg", "match_motifs", "own_matrix_ids"]
