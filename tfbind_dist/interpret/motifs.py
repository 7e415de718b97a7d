"""Position-weight-matrix scanning with exact p-values, to check what a model attends to.

A window's log-odds score (bits) is the sum of log2(p / background) of its bases;
both strands are scored, the reverse strand by the reverse-complemented matrix.
P-values are the null tail P(score >= s) of one window under an i.i.d.
background, computed exactly on scores rounded to 1/resolution bit by dynamic
programming over the matrix columns, as FIMO and MEME do. All scanning is
vectorised over sequences and windows; the only Python loops run over the W
columns of the matrix.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tfbind_dist.data.encoding import N_CODE

UNIFORM = (0.25, 0.25, 0.25, 0.25)


class MotifMatch(NamedTuple):
    """The best match of each sequence, arrays of shape (N,).

    `start`/`end` are the half-open span on the forward strand, `strand` is '+' or '-',
    `score` the log-odds score (bits) and `p_value` P(score >= s) for one window
    under the background (not corrected for the number of windows scanned).
    """

    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray
    score: np.ndarray
    p_value: np.ndarray


def _background(background) -> np.ndarray:
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or (bg <= 0).any() or not np.isclose(bg.sum(), 1.0):
        raise ValueError(f"background must be 4 positive probabilities (A, C, G, T) summing to 1, got {background}")
    return bg


def _matrix(matrix, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 4 or m.shape[0] == 0:
        raise ValueError(f"{name} must have shape (W, 4) with columns A, C, G, T, got {m.shape}")
    return m


def log_odds(probs: np.ndarray, background=UNIFORM) -> np.ndarray:
    """(W, 4) log2(p / background): the per-base evidence, in bits, that a window is a site."""
    p = _matrix(probs, "probs")
    if (p <= 0).any():
        raise ValueError("probs must be strictly positive (smooth the counts with a pseudocount)")
    return np.log2(p / _background(background))


def score_windows(codes: np.ndarray, log_odds_matrix: np.ndarray) -> np.ndarray:
    """(N, L - W + 1, 2) scores of every window on the forward ([..., 0]) and reverse ([..., 1]) strand.

    The reverse-strand score of the window starting at i is the score of its reverse
    complement, so both strands index windows by their forward-strand start. An N
    base scores 0 (no evidence either way).
    """
    lom = _matrix(log_odds_matrix, "log_odds_matrix")
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must have shape (N, L), got {codes.shape}")
    width, length = lom.shape[0], codes.shape[1]
    if length < width:
        raise ValueError(f"sequences of length {length} are shorter than the motif ({width})")
    if codes.size and codes.max() > N_CODE:
        raise ValueError(f"codes must be base codes 0-{N_CODE} (A, C, G, T, N)")
    # Complementing a base reverses the A, C, G, T column order, so the reverse strand
    # is scored by the matrix flipped on both axes.
    both = np.stack([lom, lom[::-1, ::-1]], axis=-1)  # (W, 4, 2)
    table = np.concatenate([both, np.zeros((width, 1, 2))], axis=1)  # (W, 5, 2): row N scores 0
    n_windows = length - width + 1
    scores = np.zeros((codes.shape[0], n_windows, 2))
    for j in range(width):
        scores += table[j][codes[:, j:j + n_windows]]
    return scores


def _null_tail(int_matrix: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """tail[k] = P(sum of a window's integer scores >= k) for non-negative (W, 4) integer scores."""
    dist = np.ones(1)
    for column in int_matrix:
        new = np.zeros(len(dist) + column.max())
        for base in range(4):
            new[column[base]:column[base] + len(dist)] += bg[base] * dist
        dist = new
    return np.append(np.cumsum(dist[::-1])[::-1], 0.0)


def score_p_values(log_odds_matrix: np.ndarray, scores, background=UNIFORM, resolution: int = 100) -> np.ndarray:
    """P(score >= s) of one background window for each of `scores` (any shape).

    Matrix entries are rounded to 1 / `resolution` bit and the exact distribution of
    the rounded sum is built column by column; the result is exact for the rounded
    matrix, and within W / (2 * resolution) bits of the true scores' tail. Scores
    above the best attainable (the consensus) get 0, those at or below the worst get 1.
    """
    lom = _matrix(log_odds_matrix, "log_odds_matrix")
    bg = _background(background)
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of steps per bit, got {resolution}")
    rounded = np.rint(lom * resolution).astype(np.int64)
    low = rounded.min(axis=1)
    tail = _null_tail(rounded - low[:, None], bg)
    s = np.asarray(scores, dtype=np.float64)
    k = np.rint(s * resolution).astype(np.int64) - low.sum()
    p = tail[np.clip(k, 0, len(tail) - 2)]
    # Rounding must not push attainable extremes off the table: the lowest score has
    # tail 1, the consensus keeps its own probability, and only unattainable scores get 0.
    eps = 1e-9 * (1.0 + np.abs(lom).sum())
    p = np.where(s <= lom.min(axis=1).sum() + eps, 1.0, p)
    return np.where(s > lom.max(axis=1).sum() + eps, 0.0, p)


def _probs_of(tf_or_probs) -> np.ndarray:
    if isinstance(tf_or_probs, str):
        from tfbind_dist.data.jaspar import tf_probabilities

        return tf_probabilities(tf_or_probs)
    return _matrix(tf_or_probs, "probs")


def best_match(codes: np.ndarray, tf_or_probs, background=UNIFORM) -> MotifMatch:
    """Highest-scoring window over both strands of each sequence.

    `tf_or_probs` is a TF name (its JASPAR matrix, `data.jaspar.tf_probabilities`)
    or a (W, 4) probability matrix. Ties go to the leftmost window, forward strand first.
    """
    lom = log_odds(_probs_of(tf_or_probs), background)
    scores = score_windows(codes, lom)
    flat = scores.reshape(len(scores), -1)
    best = flat.argmax(axis=1)
    score = flat[np.arange(len(flat)), best]
    start = best // 2
    return MotifMatch(
        start=start,
        end=start + lom.shape[0],
        strand=np.where(best % 2 == 0, "+", "-").astype("<U1"),
        score=score,
        p_value=score_p_values(lom, score, background),
    )


def hot_window(importance: np.ndarray, width: int) -> np.ndarray:
    """(N,) start of the `width`-long window with the largest summed importance in each (N, L) row.

    Used to ask whether the positions a model relies on fall on the motif match.
    Ties go to the leftmost window.
    """
    imp = np.asarray(importance, dtype=np.float64)
    if imp.ndim != 2:
        raise ValueError(f"importance must have shape (N, L), got {imp.shape}")
    if not 1 <= width <= imp.shape[1]:
        raise ValueError(f"width must be between 1 and the sequence length {imp.shape[1]}, got {width}")
    cum = np.concatenate([np.zeros((len(imp), 1)), np.cumsum(imp, axis=1)], axis=1)
    return (cum[:, width:] - cum[:, :-width]).argmax(axis=1)


def spans_overlap(a_start, a_end, b_start, b_end) -> np.ndarray:
    """Whether half-open spans [a_start, a_end) and [b_start, b_end) share a position (broadcasts)."""
    a_start, a_end, b_start, b_end = map(np.asarray, (a_start, a_end, b_start, b_end))
    return (a_start < b_end) & (b_start < a_end) & (a_start < a_end) & (b_start < b_end)
