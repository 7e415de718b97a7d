"""Synthetic 200-bp TF-binding datasets planted with real JASPAR motifs.

The package's embedded default data: for each of the ten TFs, balanced
train/valid/test splits in which positives carry instances sampled from the TF's
JASPAR matrix near the centre and negatives are accessibility-like background.
Everything that is not a real instance of the TF's own motif (GC content, decoy
motifs of the other nine TFs, weak partial matches) is drawn from the same
distribution in both classes, so composition alone does not separate them.
Per-TF knobs in `DIFFICULTY` (label noise, PWM temperature, motif-carrying
negatives) spread the achievable auROC roughly like the chapter's real data:
the `conv_v2` preset trained with the default recipe (1000 steps, batch 32)
reaches valid auROC about 0.98-0.99 on CTCF and ATF2, 0.83-0.85 on SRF, REST,
MAX and ELK1, and 0.77-0.80 on ARID3, BACH1, ZNF24 and GABPA.

Generation is fully vectorised numpy, seeded per (seed, TF, split), so the same
seed always gives identical tables.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tfbind_dist.data import io
from tfbind_dist.data.jaspar import tf_probabilities
from tfbind_dist.data.encoding import decode
from tfbind_dist.errors import DataError
from tfbind_dist.registry import JASPAR_IDS, SPLITS, TFS
from tfbind_dist.storage import write_table_atomic, write_text_atomic

SYNTHETIC_MARKER = "SYNTHETIC.md"  # written beside the splits: this folder holds synthetic data



@dataclass(frozen=True)
class Difficulty:
    """How hard one TF's synthetic task is.

    Attributes
    ----------
    motif_frac : float
        Fraction of positives that actually carry the motif; the rest are
        background only (label noise, caps auROC near 0.5 + motif_frac / 2).
    temperature : float
        PWM temperature for sampling instances: p ** (1 / T), renormalised.
        T > 1 flattens the motif towards background; T < 1 sharpens it towards
        the consensus (used for ARID3, whose 6-bp, 27-site matrix is weak).
    neg_motif_frac : float
        Fraction of negatives that carry a real but weak instance of the motif
        (bound sites that are not peaks).
    """

    motif_frac: float
    temperature: float
    neg_motif_frac: float


# Calibrated against conv_v2 (see the module docstring); label noise (motif_frac) is the main
# knob because no model can beat it, so the spread holds for stronger models too.
DIFFICULTY: dict[str, Difficulty] = {
    "CTCF": Difficulty(motif_frac=1.00, temperature=0.8, neg_motif_frac=0.00),
    "ATF2": Difficulty(motif_frac=1.00, temperature=0.8, neg_motif_frac=0.00),
    "SRF": Difficulty(motif_frac=0.74, temperature=1.0, neg_motif_frac=0.02),
    "REST": Difficulty(motif_frac=0.76, temperature=1.0, neg_motif_frac=0.02),
    "MAX": Difficulty(motif_frac=0.74, temperature=0.9, neg_motif_frac=0.02),
    "ELK1": Difficulty(motif_frac=0.74, temperature=0.9, neg_motif_frac=0.02),
    "ARID3": Difficulty(motif_frac=0.77, temperature=0.3, neg_motif_frac=0.02),
    "BACH1": Difficulty(motif_frac=0.66, temperature=0.9, neg_motif_frac=0.03),
    "ZNF24": Difficulty(motif_frac=0.66, temperature=0.9, neg_motif_frac=0.03),
    "GABPA": Difficulty(motif_frac=0.70, temperature=0.7, neg_motif_frac=0.03),
}

# Shared generation constants (both classes unless noted).
GC_MEAN = 0.45           # mean per-sequence GC fraction (Beta distributed)
GC_CONCENTRATION = 40.0  # Beta concentration a + b; sd of GC is about 0.08
CENTRE_JITTER = 20       # own-motif starts are uniform within +-20 bp of centre
DECOY_JITTER = 40        # decoy starts are uniform within +-40 bp of centre
DECOY_PROBS = (0.35, 0.40, 0.25)  # P(0, 1, 2 decoy instances of other TFs) per sequence
P_SECOND = 0.15          # P(second instance) for motif-carrying positives
P_PARTIAL = 0.30         # P(weak partial own-motif match) per sequence without a real instance
PARTIAL_RESAMPLE = 0.5   # fraction of a partial match's positions resampled uniformly
WEAK_RESAMPLE = 0.25     # fraction of a negative's weak real instance resampled uniformly
SECOND_GAP = (2, 20)     # bp between the two instances of a two-instance positive

_COMPLEMENT = np.array([3, 2, 1, 0], dtype=np.uint8)
_EMPTY = np.uint8(255)  # marks positions not yet planted, before the background fill
_SPLIT_INDEX = {name: i for i, name in enumerate(SPLITS)}


def _check_tf(tf: str) -> None:
    if tf not in JASPAR_IDS:
        raise DataError(f"unknown TF {tf!r}; choose one of: {', '.join(JASPAR_IDS)}")


def _tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    flat = probs ** (1.0 / temperature)
    return flat / flat.sum(axis=1, keepdims=True)


def _sample_instances(rng: np.random.Generator, probs: np.ndarray, n: int,
                      resample: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample n motif instances (n, W) codes and their strands (True = reverse).

    Each position is drawn from its column; a `resample` fraction of positions
    (chosen per instance) is then redrawn uniformly, which weakens the match.
    """
    width = probs.shape[0]
    cum = np.cumsum(probs, axis=1)[:, :3]
    codes = (rng.random((n, width))[:, :, None] > cum[None]).sum(axis=2).astype(np.uint8)
    n_resample = int(round(resample * width))
    if n_resample:
        which = np.argsort(rng.random((n, width)), axis=1)[:, :n_resample]
        rows = np.repeat(np.arange(n), n_resample)
        codes[rows, which.ravel()] = rng.integers(0, 4, size=n * n_resample, dtype=np.uint8)
    reverse = rng.random(n) < 0.5
    codes[reverse] = _COMPLEMENT[codes[reverse][:, ::-1]]
    return codes, reverse


def _plant(seqs: np.ndarray, rows: np.ndarray, starts: np.ndarray, codes: np.ndarray) -> None:
    """Write instance codes (n, W) into seqs at (rows, starts), in place."""
    cols = starts[:, None] + np.arange(codes.shape[1])
    seqs[rows[:, None], cols] = codes


def _fill_background(rng: np.random.Generator, seqs: np.ndarray) -> None:
    """Fill the unplanted positions (code _EMPTY) of seqs with GC-matched background, in place.

    Each sequence draws a target GC fraction from one Beta distribution for both
    classes; its background GC is set so that, with the planted bases counted,
    the whole sequence's expected GC equals the target. Planted GC-rich motifs
    (CTCF) therefore do not make positives GC-richer than negatives.
    """
    n, length = seqs.shape
    target = rng.beta(GC_MEAN * GC_CONCENTRATION, (1 - GC_MEAN) * GC_CONCENTRATION, size=n)
    free = seqs == _EMPTY
    planted_gc = ((seqs == 1) | (seqs == 2)).sum(axis=1)
    n_free = np.maximum(free.sum(axis=1), 1)
    gc = np.clip((target * length - planted_gc) / n_free, 0.05, 0.95)[:, None]
    u = rng.random((n, length))
    at = (1 - gc) / 2
    background = ((u >= at).astype(np.uint8) + (u >= at + gc / 2) + (u >= at + gc)).astype(np.uint8)
    seqs[free] = background[free]


def _plant_decoys(rng: np.random.Generator, seqs: np.ndarray, tf: str) -> None:
    """Plant 0-2 instances of the other TFs' motifs per sequence near the centre."""
    n, length = seqs.shape
    others = [t for t in JASPAR_IDS if t != tf]
    n_decoys = rng.choice(len(DECOY_PROBS), size=n, p=DECOY_PROBS)
    rows = np.repeat(np.arange(n), n_decoys)
    which = rng.integers(0, len(others), size=len(rows))
    jitter = rng.integers(-DECOY_JITTER, DECOY_JITTER + 1, size=len(rows))
    for k, other in enumerate(others):
        sel = which == k
        if not sel.any():
            continue
        probs = tf_probabilities(other)
        width = probs.shape[0]
        starts = np.clip((length - width) // 2 + jitter[sel], 0, length - width)
        codes, _ = _sample_instances(rng, probs, int(sel.sum()))
        _plant(seqs, rows[sel], starts, codes)


def _split_rng(tf: str, split: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(tf.encode()), _SPLIT_INDEX[split]])


def _synthesize_split(tf: str, split: str, n: int, seed: int, length: int) -> pa.Table:
    """Generate one shuffled, balanced split of n rows as an Arrow table."""
    rng = _split_rng(tf, split, seed)
    knobs = DIFFICULTY[tf]
    probs = tf_probabilities(tf)
    width = probs.shape[0]
    if length < 2 * width + 2 * CENTRE_JITTER + SECOND_GAP[1]:
        raise DataError(f"{tf}: length {length} is too short for motif width {width}; "
                         f"need at least {2 * width + 2 * CENTRE_JITTER + SECOND_GAP[1]}")
    n_pos = n // 2
    labels = np.zeros(n, dtype=np.int8)
    labels[:n_pos] = 1
    seqs = np.full((n, length), _EMPTY, dtype=np.uint8)
    _plant_decoys(rng, seqs, tf)

    # Slot 1 (centre +- jitter): a real instance, a weak real instance or a partial match.
    u = rng.random(n)
    full = (labels == 1) & (u < knobs.motif_frac)
    weak = (labels == 0) & (u < knobs.neg_motif_frac)
    partial = ~full & ~weak & (rng.random(n) < P_PARTIAL)
    start1 = (length - width) // 2 + rng.integers(-CENTRE_JITTER, CENTRE_JITTER + 1, size=n)
    # Slot 2 (beside slot 1, not overlapping): a second real instance for some positives.
    second = full & (rng.random(n) < P_SECOND)
    gap = rng.integers(SECOND_GAP[0], SECOND_GAP[1] + 1, size=n)
    start2 = np.where(rng.random(n) < 0.5, start1 + width + gap, start1 - width - gap)
    start2 = np.where((start2 < 0) | (start2 > length - width), 2 * start1 - start2, start2)

    sampling = _tempered(probs, knobs.temperature)
    inst_rows, inst_starts, inst_reverse = [], [], []
    for mask, starts, resample in ((full, start1, 0.0), (weak, start1, WEAK_RESAMPLE),
                                   (partial, start1, PARTIAL_RESAMPLE), (second, start2, 0.0)):
        rows = np.flatnonzero(mask)
        codes, reverse = _sample_instances(rng, sampling, len(rows), resample)
        _plant(seqs, rows, starts[rows], codes)
        inst_rows.append(rows)
        inst_starts.append(starts[rows])
        inst_reverse.append(reverse)

    _fill_background(rng, seqs)
    order = rng.permutation(n)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    rows = inverse[np.concatenate(inst_rows)]
    starts = np.concatenate(inst_starts).astype(np.int32)
    reverse = np.concatenate(inst_reverse)
    by_row = np.lexsort((starts, rows))
    rows, starts, reverse = rows[by_row], starts[by_row], reverse[by_row]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])

    def spans(values: pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    return pa.table({
        "sequence": pa.array(decode(seqs[order]), pa.string()),
        "label": pa.array(labels[order], pa.int8()),
        "transcription_factor": pa.array([tf] * n, pa.string()),
        "subset": pa.array([split] * n, pa.string()),
        "motif_starts": spans(pa.array(starts, pa.int32())),
        "motif_ends": spans(pa.array(starts + np.int32(width), pa.int32())),
        "motif_strand": spans(pa.array(np.where(reverse, "-", "+"), pa.string())),
    })


def split_sizes(n_train: int) -> dict[str, int]:
    """Rows per split: valid = max(n_train // 7, 200), test = 2 * valid."""
    valid = max(n_train // 7, 200)
    return {"train": n_train, "valid": valid, "test": 2 * valid}


def synthesize_tf(tf: str, *, n_train: int = 6000, seed: int = 0, length: int = 200) -> dict[str, pa.Table]:
    """Generate the train/valid/test tables of one TF.

    Columns: `sequence` (uppercase ACGT), `label` (int8), `transcription_factor`,
    `subset`, and per-row lists `motif_starts`, `motif_ends` (int32, half-open)
    and `motif_strand` ("+"/"-") for every planted instance of the TF's own
    motif, including weak and partial ones planted into negatives.
    """
    _check_tf(tf)
    if n_train < 2:
        raise DataError(f"n_train must be at least 2, got {n_train}")
    return {split: _synthesize_split(tf, split, n, seed, length) for split, n in split_sizes(n_train).items()}


def _describe(tfs: Iterable[str], n_train: int, seed: int, length: int) -> str:
    sizes = split_sizes(n_train)
    lines = [
        "# Synthetic TF-binding data",
        "",
        "Generated by `tfbind_dist.data.synthetic.synthesize` from real JASPAR motifs (pyjaspar's",
        f"bundled database). Seed {seed}; sequence length {length} bp; rows per TF: "
        + ", ".join(f"{k} {v}" for k, v in sizes.items()) + " (half positive, rows shuffled).",
        "",
        "- Background: i.i.d. bases; each sequence's GC fraction ~ Beta with mean "
        f"{GC_MEAN}, concentration {GC_CONCENTRATION:g},",
        "  in both classes, with background GC adjusted so planted bases do not shift the total.",
        f"- Decoys (both classes): 0/1/2 instances of the other TFs' motifs with probabilities {DECOY_PROBS},",
        f"  starts within +-{DECOY_JITTER} bp of centre.",
        "- Positives: with probability motif_frac, one instance of the TF's motif (a second with probability",
        f"  {P_SECOND}) sampled from the PWM at the TF's temperature, start within +-{CENTRE_JITTER} bp of centre,",
        "  random strand; the rest are background only (label noise).",
        f"- Negatives: with probability neg_motif_frac, a weak real instance ({WEAK_RESAMPLE:.0%} of positions",
        "  resampled uniformly).",
        f"- Any sequence without a real instance gets a partial match with probability {P_PARTIAL}",
        f"  ({PARTIAL_RESAMPLE:.0%} of positions resampled uniformly).",
        "- `motif_starts`/`motif_ends`/`motif_strand` list every planted instance of the TF's own motif.",
        "",
        "| TF | JASPAR | width | motif_frac | temperature | neg_motif_frac |",
        "|---|---|---|---|---|---|",
    ]
    for tf in tfs:
        d = DIFFICULTY[tf]
        lines.append(f"| {tf} | {JASPAR_IDS[tf]} | {tf_probabilities(tf).shape[0]} | {d.motif_frac} | "
                     f"{d.temperature} | {d.neg_motif_frac} |")
    return "\n".join(lines) + "\n"


def synthesize(out_dir: str | Path, *, tfs: Iterable[str] = TFS, n_train: int = 6000, seed: int = 0,
               length: int = 200) -> list[Path]:
    """Write `{TF}_{split}.parquet` for each TF and split, plus SYNTHETIC.md; return the Parquet paths.

    Every file is written atomically; tables are generated before any is written.
    """
    tfs = list(tfs)
    for tf in tfs:
        _check_tf(tf)
    tables = {tf: synthesize_tf(tf, n_train=n_train, seed=seed, length=length) for tf in tfs}
    written = []
    for tf, splits in tables.items():
        for split, table in splits.items():
            path = io.split_path(out_dir, tf, split)
            write_table_atomic(table, path)
            written.append(path)
    write_text_atomic(Path(out_dir) / SYNTHETIC_MARKER, _describe(tfs, n_train, seed, length))
    return written


def planted_mask(table: pa.Table, length: int) -> np.ndarray:
    """(N, length) bool mask, True on the planted positions of the TF's own motif.

    Ground truth for attribution checks: built from `motif_starts`/`motif_ends`.
    """
    starts_col = table.column("motif_starts").combine_chunks()
    ends_col = table.column("motif_ends").combine_chunks()
    rows = np.asarray(pc.list_parent_indices(starts_col), dtype=np.int64)
    starts = np.asarray(pc.list_flatten(starts_col), dtype=np.int64)
    ends = np.asarray(pc.list_flatten(ends_col), dtype=np.int64)
    if len(starts) != len(ends) or (len(rows) and (starts.min() < 0 or ends.max() > length or (ends < starts).any())):
        raise ValueError(f"motif spans do not fit sequences of length {length}")
    diff = np.zeros((table.num_rows, length + 1), dtype=np.int32)
    np.add.at(diff, (rows, starts), 1)
    np.add.at(diff, (rows, ends), -1)
    return np.cumsum(diff, axis=1)[:, :length] > 0
