"""Inference with a restored run: predictions and the chapter's sanity check."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tfbind_dist.data.batching import apply_in_batches
from tfbind_dist.data.encoding import encode
from tfbind_dist.data.io import DataError
from tfbind_dist.train.restore import Model
from tfbind_dist.train.metrics import sigmoid
from tfbind_dist.train.steps import make_logits_fn

CHAPTER_CTCF_MOTIF = "CCACCAGGGGGCGC"
LOW_COMPLEXITY = ("A", "C", "G", "T", "ACGTACGT", "TCGATCGT", "TATACGCG", "CAGGCAGG")


def predict_logits(model: Model, codes: np.ndarray, batch_size: int = 1024, *, source: str = "sequences") -> np.ndarray:
    """Logits for (N, L) codes, in fixed-size batches (one compilation)."""
    if codes.shape[1] != model.length:
        raise DataError(f"{source}: length {codes.shape[1]}, but the model of {model.run} was trained on "
                        f"{model.length}-bp sequences")
    logits_fn = make_logits_fn(model.module, model.n_policy)
    return apply_in_batches(lambda chunk: logits_fn(model.params, model.batch_stats, chunk), codes, batch_size)


def predict_sequences(model: Model, sequences: list[str], batch_size: int = 1024,
                      names: list[str] | None = None) -> pd.DataFrame:
    """Table of sequence, probability, logit (`names` label rows in error messages)."""
    codes = encode(sequences, n_policy=model.n_policy, names=names)
    logits = predict_logits(model, codes, batch_size, source=names[0] if names else "sequences")
    return pd.DataFrame({"sequence": sequences, "probability": sigmoid(logits), "logit": logits})


def _tile(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def sanity_sequences(tf: str, length: int) -> list[tuple[str, str, str]]:
    """(name, expectation, sequence): the TF's motif tiled (expect high) and low-complexity repeats (expect low).

    CTCF uses the chapter's `"CCACCAGGGGGCGC" * 14 + "AAAA"`; other TFs use the consensus of
    their JASPAR matrix, tiled with a 4-bp spacer.
    """
    if tf == "CTCF":
        motif = CHAPTER_CTCF_MOTIF
        filled = CHAPTER_CTCF_MOTIF * (length // len(motif)) + "A" * (length % len(motif))
    else:
        from tfbind_dist.data.jaspar import tf_probabilities as motif_probabilities

        motif = "".join("ACGT"[i] for i in motif_probabilities(tf).argmax(axis=1))
        filled = _tile(motif + "AAAA", length)
    rows = [(f"{tf} motif {motif} tiled", "high", filled)]
    rows += [(f"{unit} repeat" if len(unit) > 1 else f"poly-{unit}", "low", _tile(unit, length)) for unit in LOW_COMPLEXITY]
    return rows


def sanity_table(model: Model) -> pd.DataFrame:
    rows = sanity_sequences(model.config.data.tf, model.length)
    preds = predict_sequences(model, [seq for _, _, seq in rows])
    return pd.DataFrame({
        "check": [name for name, _, _ in rows],
        "expected": [exp for _, exp, _ in rows],
        "probability": preds.probability.round(6),
    })
