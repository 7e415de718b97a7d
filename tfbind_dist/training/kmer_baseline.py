"""The k-mer baseline: logistic regression on strand-merged k-mer frequencies (scikit-learn).

A deep model is only worth its cost if it is clearly above this; `tfbind baseline` fits it
on its own and `train.with_baseline` records it next to a run's own auROC.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from tfbind_dist.data.encoding import N_CODE
from tfbind_dist.data.io import SplitData

C_GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)


def canonical_kmer_index(k: int) -> tuple[np.ndarray, int]:
    """Map each of the 4**k k-mers to the id of {k-mer, its reverse complement}; returns (map, count)."""
    kmers = np.arange(4 ** k)
    digits = (kmers[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4
    rc = ((3 - digits[:, ::-1]) * 4 ** np.arange(k - 1, -1, -1)).sum(axis=1)
    canonical = np.minimum(kmers, rc)
    ids, mapping = np.unique(canonical, return_inverse=True)
    return mapping.astype(np.int64), len(ids)


def kmer_frequencies(codes: np.ndarray, k: int = 6) -> np.ndarray:
    """(N, L) uint8 codes -> (N, F) float32 frequencies of strand-merged k-mers; k-mers with N are left out."""
    codes = np.asarray(codes)
    mapping, count = canonical_kmer_index(k)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)  # (N, L-k+1, k)
    index = (windows.astype(np.int64) * 4 ** np.arange(k - 1, -1, -1)).sum(axis=-1)
    valid = (windows < N_CODE).all(axis=-1)
    rows = np.broadcast_to(np.arange(len(codes))[:, None], index.shape)
    flat = rows[valid] * count + mapping[index[valid]]
    counts = np.bincount(flat, minlength=len(codes) * count).reshape(len(codes), count)
    return (counts / np.maximum(valid.sum(axis=1, keepdims=True), 1)).astype(np.float32)


@dataclass(frozen=True)
class BaselineResult:
    k: int
    C: float
    valid_auroc: float
    test_auroc: float | None

    @property
    def description(self) -> str:
        what = "dinucleotide composition" if self.k == COMPOSITION_K else f"{self.k}-mer"
        return f"{what} (both strands) logistic regression, C={self.C:g}"


COMPOSITION_K = 2  # the composition baseline: how much of an auROC sequence composition alone explains


def fit_composition_baseline(splits: dict[str, SplitData], *, seed: int = 0) -> BaselineResult:
    """The dinucleotide-frequency logistic regression: near 0.5 on GC-matched negatives; far above it, the
    negatives differ from the positives in composition, and a model's auROC is partly that."""
    return fit_kmer_baseline(splits, k=COMPOSITION_K, seed=seed)


def fit_kmer_baseline(splits: dict[str, SplitData], *, k: int = 6, seed: int = 0,
                      c_grid: tuple[float, ...] = C_GRID) -> BaselineResult:
    """Fit on `train`, pick the L2 strength C on `valid`, report valid (and test when given) auROC."""
    scaler = StandardScaler()
    x_train = scaler.fit_transform(kmer_frequencies(splits["train"].codes, k))
    x_valid = scaler.transform(kmer_frequencies(splits["valid"].codes, k))
    best: tuple[float, float, LogisticRegression] | None = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, splits["train"].labels)
        auroc = roc_auc_score(splits["valid"].labels, model.decision_function(x_valid))
        if best is None or auroc > best[0]:
            best = (float(auroc), c, model)
    valid_auroc, c, model = best
    test_auroc = None
    if "test" in splits:
        x_test = scaler.transform(kmer_frequencies(splits["test"].codes, k))
        test_auroc = float(roc_auc_score(splits["test"].labels, model.decision_function(x_test)))
    return BaselineResult(k, c, valid_auroc, test_auroc)
