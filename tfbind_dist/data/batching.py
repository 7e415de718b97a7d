"""Applying a model function over many sequences in fixed-size batches: the one batching helper.

Every batch has the same shape (the last one padded with A's, results sliced off), so a jitted
kernel compiles once, whatever the number of sequences. Used by predict, explain and scoring.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm


def pad_rows(codes: np.ndarray, rows: int) -> np.ndarray:
    """`codes` (N, L) padded with zero rows to `rows` rows (unchanged if already that many or more)."""
    if len(codes) >= rows:
        return codes
    return np.concatenate([codes, np.zeros((rows - len(codes), *codes.shape[1:]), codes.dtype)])


def apply_in_batches(fn: Callable[[np.ndarray], Any], codes: np.ndarray, batch_size: int, *,
                     progress: bool = False, desc: str = "batches") -> Any:
    """fn over `codes` in batches of exactly min(batch_size, N) rows; results concatenated in order.

    `fn` returns an array or a dict of arrays, each with the batch as its leading axis.
    """
    codes = np.asarray(codes, dtype=np.uint8)
    size = max(1, min(batch_size, len(codes)))
    parts: list[Any] = []
    for start in tqdm(range(0, len(codes), size), disable=not progress, desc=desc, unit="batch"):
        chunk = codes[start:start + size]
        out = fn(pad_rows(chunk, size))
        n = len(chunk)
        parts.append({k: np.asarray(v)[:n] for k, v in out.items()} if isinstance(out, dict) else np.asarray(out)[:n])
    if not parts:
        return np.zeros((0,), np.float32)
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)
