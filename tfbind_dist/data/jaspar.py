"""JASPAR matrices from pyjaspar's bundled database (offline): the one place that reads it.

Used for each TF's own matrix (the synthetic data's planted motifs, explain's motif scan) and for
naming discovered motifs (a whole collection, e.g. the vertebrate CORE matrices, latest version of each).
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from tfbind_dist.errors import DataError
from tfbind_dist.registry import JASPAR_IDS


class JasparMatrix(NamedTuple):
    matrix_id: str  # e.g. MA0139.2
    name: str  # the TF (or dimer, "FOS::JUN") the matrix describes
    counts: np.ndarray  # (W, 4) site counts, columns A, C, G, T


def _counts(motif) -> np.ndarray:
    counts = np.array([motif.counts[base] for base in "ACGT"], dtype=np.float64).T
    counts.setflags(write=False)
    return counts


@lru_cache(maxsize=None)
def matrix_counts(matrix_id: str) -> np.ndarray:
    """(W, 4) counts of one JASPAR matrix, columns A, C, G, T."""
    from pyjaspar import jaspardb

    motif = jaspardb().fetch_motif_by_id(matrix_id)
    if motif is None:
        raise DataError(f"JASPAR matrix {matrix_id} not found in pyjaspar's database")
    return _counts(motif)


@lru_cache(maxsize=None)
def collection(tax_group: str = "vertebrates", name: str = "CORE") -> tuple[JasparMatrix, ...]:
    """Every matrix of a JASPAR collection and taxonomic group (latest version of each), sorted by ID."""
    from pyjaspar import jaspardb

    with warnings.catch_warnings():  # an unknown group is reported below, in one line
        warnings.simplefilter("ignore")
        motifs = jaspardb().fetch_motifs(collection=name, tax_group=[tax_group])
    if not motifs:
        raise DataError(f"JASPAR {name} has no {tax_group!r} matrices in pyjaspar's database "
                         f"(tax groups: vertebrates, plants, insects, nematodes, fungi, urochordates)")
    return tuple(sorted((JasparMatrix(m.matrix_id, m.name, _counts(m)) for m in motifs), key=lambda m: m.matrix_id))


def tf_probabilities(tf: str) -> np.ndarray:
    """Base probabilities (W, 4; columns A, C, G, T) of the TF's JASPAR matrix (`registry.JASPAR_IDS`).

    Each column is smoothed with a sqrt(N) pseudocount spread evenly over the four bases
    (Wasserman & Sandelin), so no base has probability zero and matrices built from few sites
    (ARID3: 27) are not overconfident. What the synthetic data plants and explain scans for.
    """
    if tf not in JASPAR_IDS:
        raise DataError(f"unknown TF {tf!r}; choose one of: {', '.join(JASPAR_IDS)}")
    return _smoothed(JASPAR_IDS[tf]).copy()


@lru_cache(maxsize=None)
def _smoothed(matrix_id: str) -> np.ndarray:
    counts = matrix_counts(matrix_id)
    n = counts.sum(axis=1, keepdims=True)
    probs = (counts + np.sqrt(n) / 4) / (n + np.sqrt(n))
    probs.setflags(write=False)
    return probs


def probabilities(counts: np.ndarray, pseudocount: float = 0.0) -> np.ndarray:
    """(W, 4) base probabilities of a count matrix, with `pseudocount` added to every count."""
    counts = np.asarray(counts, dtype=np.float64) + pseudocount
    return counts / counts.sum(axis=1, keepdims=True)


__all__ = ["JasparMatrix", "collection", "matrix_counts", "probabilities", "tf_probabilities"]
