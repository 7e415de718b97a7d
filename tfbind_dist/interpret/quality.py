"""Attribution quality against ground truth: how well per-position importance finds planted motifs."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.metrics import roc_auc_score


class Quality(NamedTuple):
    mean_auroc: float  # mean over sequences of the per-sequence auROC (importance vs planted positions)
    median_auroc: float
    sequences: int  # sequences scored (those with planted and unplanted positions)


def importance_auroc(importance: np.ndarray, planted: np.ndarray) -> Quality:
    """Per-sequence auROC of importance (N, L) against a boolean planted-position mask (N, L)."""
    importance, planted = np.asarray(importance), np.asarray(planted, dtype=bool)
    if importance.shape != planted.shape:
        raise ValueError(f"importance {importance.shape} and mask {planted.shape} differ in shape")
    usable = planted.any(axis=1) & ~planted.all(axis=1)
    scores = np.array([roc_auc_score(m, s) for s, m in zip(importance[usable], planted[usable])])
    if not len(scores):
        return Quality(float("nan"), float("nan"), 0)
    return Quality(float(scores.mean()), float(np.median(scores)), int(len(scores)))
