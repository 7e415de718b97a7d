"""TF-MoDISco (modisco-lite) on hypothetical contributions: seqlets, clustered into motifs.

A thin typed layer over `modiscolite.tfmodisco.TFMoDISco`: its settings as a dataclass, its
patterns as `Motif` records (trimmed probability and contribution matrices) next to its own
HDF5 results file, and a clear error when too few seqlets pass its FDR to form a metacluster.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tfbind_dist.errors import DataError

TRIM_THRESHOLD = 0.3  # keep the span where |contribution| >= 30% of its maximum, as modisco's report does


class TooFewSeqlets(DataError):
    """TF-MoDISco found no metacluster: too few seqlets of either sign passed its FDR."""


@dataclass(frozen=True)
class ModiscoSettings:
    """modisco-lite's main knobs, at its command line's defaults (`modisco motifs`)."""

    sliding_window_size: int = 20
    flank_size: int = 5
    target_seqlet_fdr: float = 0.05
    min_metacluster_size: int = 100
    max_seqlets_per_metacluster: int = 2000
    n_leiden_runs: int = 2
    trim_to_window_size: int = 30
    initial_flank_to_add: int = 10
    final_flank_to_add: int = 0


class Motif(NamedTuple):
    name: str  # pos_patterns.pattern_0 style, as in the HDF5
    sign: str  # '+': raises the output where it occurs; '-': lowers it
    seqlets: int
    probabilities: np.ndarray  # (W, 4) base frequencies of the aligned seqlets, trimmed
    contributions: np.ndarray  # (W, 4) mean contribution of each observed base (the CWM), trimmed


def run_modisco(one_hot: np.ndarray, hypothetical: np.ndarray, settings: ModiscoSettings,
                hdf5_path=None) -> list[Motif]:
    """Motifs of (N, L, 4) one-hot sequences and hypothetical contributions; modisco-lite's HDF5 goes to
    `hdf5_path` when given.

    TF-MoDISco runs in a fresh (spawned) process: it forks helpers, which is unsafe in a process
    where JAX's threads run. Raises `TooFewSeqlets` (with the seqlet counts) when neither sign
    has a metacluster.
    """
    if one_hot.shape[1] < settings.sliding_window_size + 2 * settings.flank_size:
        raise DataError(f"sequences of {one_hot.shape[1]} bp are shorter than TF-MoDISco's seqlet window "
                        f"({settings.sliding_window_size} + 2 x {settings.flank_size} flank)")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_modisco_process, np.ascontiguousarray(one_hot, np.float32),
                           np.ascontiguousarray(hypothetical, np.float32), settings,
                           None if hdf5_path is None else str(hdf5_path)).result()


def _modisco_process(one_hot: np.ndarray, hypothetical: np.ndarray, settings: ModiscoSettings,
                     hdf5_path: str | None) -> list[Motif]:
    from modiscolite.io import save_hdf5
    from modiscolite.tfmodisco import TFMoDISco

    advice = ("Give it more sequences (e.g. --split train, or more rows), sequences the model scores higher, or "
              "another --method")
    try:
        positive, negative = TFMoDISco(
            one_hot=one_hot, hypothetical_contribs=hypothetical,
            sliding_window_size=settings.sliding_window_size, flank_size=settings.flank_size,
            target_seqlet_fdr=settings.target_seqlet_fdr, min_metacluster_size=settings.min_metacluster_size,
            max_seqlets_per_metacluster=settings.max_seqlets_per_metacluster, n_leiden_runs=settings.n_leiden_runs,
            trim_to_window_size=settings.trim_to_window_size, initial_flank_to_add=settings.initial_flank_to_add,
            final_flank_to_add=settings.final_flank_to_add, verbose=False)
    except (ZeroDivisionError, ValueError, IndexError) as err:  # its seqlet caller on tiny or uniform inputs
        raise TooFewSeqlets(f"TF-MoDISco found no motif in {len(one_hot):,} sequences: its seqlet caller failed "
                            f"({type(err).__name__}: {err}), too few windows to estimate its null. {advice}") from None
    positive, negative = list(positive or []), list(negative or [])
    if not positive and not negative:
        counts = seqlet_counts(one_hot, hypothetical, settings)
        raise TooFewSeqlets(
            f"TF-MoDISco found no motif in {len(one_hot):,} sequences: {counts[0]} positive and {counts[1]} negative "
            f"seqlets passed its FDR of {settings.target_seqlet_fdr}, and a motif needs a group of more than "
            f"{settings.min_metacluster_size} of one sign. {advice}")
    if hdf5_path is not None:
        save_hdf5(hdf5_path, positive or None, negative or None, one_hot.shape[1])  # modisco-lite's own format
    return to_motifs(positive, negative)


def seqlet_counts(one_hot: np.ndarray, hypothetical: np.ndarray, settings: ModiscoSettings) -> tuple[int, int]:
    """How many positive and negative seqlets pass TF-MoDISco's FDR (its own seqlet caller)."""
    from modiscolite import extract_seqlets

    contributions = (one_hot * hypothetical).sum(axis=2)
    coords, threshold = extract_seqlets.extract_seqlets(
        attribution_scores=contributions, window_size=settings.sliding_window_size, flank=settings.flank_size,
        suppress=int(0.5 * settings.sliding_window_size) + settings.flank_size,
        target_fdr=settings.target_seqlet_fdr, min_passing_windows_frac=0.03, max_passing_windows_frac=0.2,
        weak_threshold_for_counting_sign=0.8)
    flank = settings.flank_size
    sums = np.array([contributions[c.example_idx, c.start + flank:c.end - flank].sum() for c in coords])
    return int((sums > threshold).sum()), int((sums < -threshold).sum())


def to_motifs(positive: list, negative: list) -> list[Motif]:
    """The patterns as `Motif` records, positive first, each sign in modisco's order (most seqlets first)."""
    motifs = []
    for sign, group, patterns in (("+", "pos_patterns", positive), ("-", "neg_patterns", negative)):
        for i, pattern in enumerate(patterns):
            cwm = np.asarray(pattern.contrib_scores, np.float64)
            start, end = trim_span(cwm)
            motifs.append(Motif(f"{group}.pattern_{i}", sign, len(pattern.seqlets),
                                np.asarray(pattern.sequence, np.float64)[start:end], cwm[start:end]))
    return motifs


def trim_span(cwm: np.ndarray, threshold: float = TRIM_THRESHOLD) -> tuple[int, int]:
    """[start, end) of the positions whose total |contribution| is at least `threshold` of the largest."""
    score = np.abs(cwm).sum(axis=1)
    keep = np.flatnonzero(score >= threshold * score.max())
    return int(keep[0]), int(keep[-1]) + 1


__all__ = ["Motif", "ModiscoSettings", "TooFewSeqlets", "run_modisco", "seqlet_counts", "to_motifs",
           "trim_span"]
