"""JASPAR matrices from pyjaspar's bundled database (offline): the one place that reads it.

Used for the synthetic data's planted motifs (one matrix by ID) and for naming discovered
motifs (a whole collection, e.g. the vertebrate CORE matrices, latest version of each).
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np


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
        raise ValueError(f"JASPAR matrix {matrix_id} not found in pyjaspar's database")
    return _counts(motif)


@lru_cache(maxsize=None)
def collection(tax_group: str = "vertebrates", name: str = "CORE") -> tuple[JasparMatrix, ...]:
    """Every matrix of a JASPAR collection and taxonomic group (latest version of each), sorted by ID."""
    from pyjaspar import jaspardb

    with warnings.catch_warnings():  # an unknown group is reported below, in one line
        warnings.simplefilter("ignore")
        motifs = jaspardb().fetch_motifs(collection=name, tax_group=[tax_group])
    if not motifs:
        raise ValueError(f"JASPAR {name} has no {tax_group!r} matrices in pyjaspar's database "
                         f"(tax groups: vertebrates, plants, insects, nematodes, fungi, urochordates)")
    return tuple(sorted((JasparMatrix(m.matrix_id, m.name, _counts(m)) for m in motifs), key=lambda m: m.matrix_id))


def probabilities(counts: np.ndarray, pseudocount: float = 0.0) -> np.ndarray:
    """(W, 4) base probabilities of a count matrix, with `pseudocount` added to every count."""
    counts = np.asarray(counts, dtype=np.float64) + pseudocount
    return counts / counts.sum(axis=1, keepdims=True)


__all__ = ["JasparMatrix", "collection", "matrix_counts", "probabilities"]
