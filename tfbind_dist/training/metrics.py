"""Classification metrics over a whole split, from logits (scikit-learn for the ranking metrics)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def binary_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Loss (mean sigmoid BCE), accuracy at probability 0.5, auROC and auPRC."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    loss = np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "loss": float(loss),
        "accuracy": float(np.mean((logits >= 0) == (labels == 1))),
        "auroc": float(roc_auc_score(labels, logits)) if both_classes else float("nan"),
        "auprc": float(average_precision_score(labels, logits)) if both_classes else float("nan"),
    }
