"""Peak calls and a genome in, per-TF training sets out: positives at the peaks, GC-matched background,
splits by chromosome.

What the peers do for their users (gReLU's `preprocess`, ChromBPNet's `prep nonpeaks`, bpnet-lite's
`negatives`), in the dataset format `tfbind train --data` reads (`{TF}_{split}.parquet`):

- **Positives**: the window of `window` bp centred on each peak's summit (narrowPeak column 10), else its
  midpoint; a zero-length interval (ChIP-exo points) is its point. Peaks whose centres lie within half a
  window of the previous kept peak's centre on the same chromosome are one site (the first in genome order
  is kept, the others counted as merged). A window off a chromosome end, or with more than
  `max_n_fraction` N, is dropped and counted.
- **Splits by chromosome**: `valid_chroms` / `test_chroms`, or a deterministic choice of whole chromosomes
  holding about 10% / 10% of the positives (of all TFs given together); every other chromosome trains. One
  chromosome is never in two splits (checked).
- **Negatives**: non-overlapping windows tiled over the same genome, never within `margin` bp of any peak
  of that TF or inside an `exclude` BED region, with at most `max_n_fraction` N, drawn per split from that
  split's chromosomes only (no test-chromosome base reaches training), matched to the positives' GC content
  in bins of `gc_bin_width` (a bin short of candidates borrows from its nearest bins), `negative_ratio`
  per positive, seeded. Optionally `shuffled_ratio` dinucleotide-shuffled copies of each positive too.
- **Flanks**: with `flank` J > 0 each stored sequence is `window + 2 J` bp around the same centre (GC and
  exclusion use the centred window), for random shifts of up to J bp in training.

Every row keeps its provenance (`chrom`, `start`, `end` of the centred window, `source`: the peak's name,
"background" or "shuffled:<peak>", `gc`). `_PEAKS.json` records every parameter and the counts, GC
summaries per split and the two-sample Kolmogorov-Smirnov distance between positives' and negatives' GC
(0 = the same distribution); it is written last, so a folder with it is complete. Running the same build
again is a no-op; other parameters on the same folder are refused.

The genome is read one chromosome at a time (`data.genome`); GC and N counts of every candidate window are
vectorised sums over its tile, and the exclusion test is a binary search over the merged blocked
intervals, so memory stays flat in the number of candidates (no pairwise overlap table).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from tfbind_dist.data.encoding import N_CODE, decode, encode
from tfbind_dist.data.genome import Genome, chrom_mapping
from tfbind_dist.data.io import split_path
from tfbind_dist.data.regions import read_regions
from tfbind_dist.data.shuffle import dinucleotide_shuffle
from tfbind_dist.errors import DataError
from tfbind_dist.registry import SPLITS
from tfbind_dist.storage import as_path, write_table_atomic, write_text_atomic

MANIFEST = "_PEAKS.json"
CENTERS = ("summit", "midpoint")
_TF_NAME = re.compile(r"^[A-Za-z0-9]+$")
AUTO_FRACTION = 0.1  # of the positives in each automatically chosen held-out split


@dataclass
class PeakSettings:
    """Every parameter of a build (recorded in `_PEAKS.json`; a re-run with other settings is refused)."""

    window: int = 200
    flank: int = 0
    center: str = "summit"
    valid_chroms: tuple[str, ...] | None = None
    test_chroms: tuple[str, ...] | None = None
    negative_ratio: float = 1.0
    shuffled_ratio: float = 0.0
    gc_bin_width: float = 0.02
    margin: int = 0
    exclude: str | None = None
    max_n_fraction: float = 0.01
    chrom_map: str = "none"
    seed: int = 0
    multilabel: bool = False

    def check(self) -> "PeakSettings":
        checks = [(self.window >= 2, "window", "at least 2"), (self.flank >= 0, "flank", "zero or positive"),
                  (self.center in CENTERS, "center", f"one of {', '.join(CENTERS)}"),
                  (self.negative_ratio > 0, "negative_ratio", "positive"),
                  (self.shuffled_ratio >= 0, "shuffled_ratio", "zero or positive"),
                  (1 / 250 <= self.gc_bin_width <= 1, "gc_bin_width", "in [0.004, 1]"),
                  (self.margin >= 0, "margin", "zero or positive"),
                  (0 <= self.max_n_fraction < 1, "max_n_fraction", "in [0, 1)")]
        for ok, name, rule in checks:
            if not ok:
                raise DataError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        return self


@dataclass
class TFDataset:
    """What one TF's training set holds: rows per split and kind, what was dropped, how well GC matches."""

    tf: str
    source: str
    peaks: int
    merged: int
    dropped: dict[str, int]
    rows: dict[str, dict[str, int]]  # split -> {"positive", "background", "shuffled"}
    gc: dict[str, dict[str, float]]  # split -> positives' and negatives' GC mean and sd, KS distance
    files: list[str] = field(default_factory=list)


@dataclass
class PeakDatasets:
    """The result of `build_peak_datasets`: one `TFDataset` per TF, the chromosomes of each split, the folder."""

    out: str
    chroms: dict[str, list[str]]
    tfs: list[TFDataset]
    settings: dict
    multilabel: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = ["splits by chromosome: " + "; ".join(f"{s} {','.join(c)}" for s, c in self.chroms.items()
                                                       if s != "train") + f"; train the other {len(self.chroms['train'])}"]
        for d in self.tfs:
            counts = ", ".join(f"{s} {r['positive']:,}+/{r['background'] + r['shuffled']:,}-" for s, r in d.rows.items())
            worst = max(g["ks_distance"] for g in d.gc.values())
            dropped = ", ".join(f"{n} {k}" for k, n in d.dropped.items() if n) or "none"
            lines.append(f"{d.tf}: {d.peaks:,} peaks ({d.merged:,} merged as duplicates), dropped: {dropped}; {counts}; "
                         f"GC of negatives vs positives: KS distance <= {worst:.3f}")
        return lines


def tf_name_of(path: str | Path) -> str:
    """A TF's name from its peak file's name: the part before the first '_', '.' or '-' (Reb1_ChIPexo.bed: Reb1)."""
    name = re.split(r"[_.\-]", Path(str(path)).name, maxsplit=1)[0]
    if not _TF_NAME.match(name):
        raise DataError(f"{path}: cannot tell the TF from the file name; pass --tf")
    return name


def gc_fraction(codes: np.ndarray) -> np.ndarray:
    """(N, L) codes -> (N,) fraction of G or C among the bases that are not N."""
    codes = np.asarray(codes)
    gc = ((codes == 1) | (codes == 2)).sum(axis=1)
    known = (codes < N_CODE).sum(axis=1)
    return gc / np.maximum(known, 1)


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, non-overlapping union of half-open intervals."""
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, reach = starts[order], np.maximum.accumulate(ends[order])
    new = np.r_[True, starts[1:] > reach[:-1]]
    return starts[new], np.maximum.reduceat(reach, np.flatnonzero(new))


def _overlaps(blocked: tuple[np.ndarray, np.ndarray], starts: np.ndarray, width: int) -> np.ndarray:
    """Whether each window [start, start + width) overlaps any of the merged `blocked` intervals."""
    b_start, b_end = blocked
    if not len(b_start):
        return np.zeros(len(starts), bool)
    first = np.searchsorted(b_end, starts, side="right")  # the first blocked interval ending after the start
    inside = first < len(b_start)
    hit = np.zeros(len(starts), bool)
    hit[inside] = b_start[first[inside]] < starts[inside] + width
    return hit


def auto_splits(counts: dict[str, int], fraction: float = AUTO_FRACTION) -> dict[str, list[str]]:
    """Whole chromosomes for test and valid holding about `fraction` of the positives each: for each split in
    turn, chromosomes by descending count (name breaks ties) are added while that brings the split closer to
    its target. Deterministic; the rest trains."""
    total = sum(counts.values())
    remaining = sorted((c for c in counts if counts[c] > 0), key=lambda c: (-counts[c], c))
    chosen = {}
    for split in ("test", "valid"):
        target, picked, held = fraction * total, [], 0
        for chrom in list(remaining):
            if abs(held + counts[chrom] - target) < abs(held - target) and len(remaining) - len(picked) > 1:
                picked.append(chrom)
                held += counts[chrom]
        if not picked and len(remaining) > 1:  # every chromosome overshoots: the smallest one
            picked = [min(remaining, key=lambda c: (counts[c], c))]
        chosen[split] = sorted(picked)
        remaining = [c for c in remaining if c not in picked]
    return chosen


def _centres(regions, center: str) -> np.ndarray:
    length = regions.end - regions.start
    summit = (center == "summit") & (regions.summit >= 0)
    return regions.start + np.where(summit, regions.summit, length // 2)


@dataclass
class _Peaks:
    tf: str
    source: str
    chrom: np.ndarray  # FASTA contig of each kept site
    centre: np.ndarray
    name: np.ndarray
    count: int
    merged: int
    blocked: dict[str, tuple[np.ndarray, np.ndarray]]  # contig -> every peak's interval and centred window


def _read_peaks(path: Path, tf: str, genome: Genome, settings: PeakSettings) -> _Peaks:
    regions = read_regions(path, points=True)
    mapping = chrom_mapping(sorted(set(regions.chrom)), list(genome.sizes), settings.chrom_map, f"the peaks of {path}")
    chrom = np.asarray([mapping[c] for c in regions.chrom])
    missing = sorted(set(chrom) - set(genome.sizes))
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise DataError(f"{path}: {int(np.isin(chrom, missing).sum()):,} peaks lie on contigs the FASTA does not have "
                        f"({shown}); the FASTA has {', '.join(list(genome.sizes)[:6])}"
                        f"{', ...' if len(genome.sizes) > 6 else ''}{_naming_hint(missing, list(genome.sizes))}")
    centre = _centres(regions, settings.center)
    half = settings.window // 2
    lo = np.minimum(regions.start, centre - half) - settings.margin
    hi = np.maximum(regions.end, centre + half) + settings.margin
    blocked = {c: _merge(lo[chrom == c], hi[chrom == c]) for c in set(chrom)}
    rank = {c: i for i, c in enumerate(genome.sizes)}
    order = np.lexsort((regions.line, centre, np.asarray([rank[c] for c in chrom])))
    chrom, centre, names = chrom[order], centre[order], np.asarray(regions.name, dtype=object)[order]
    keep = np.ones(len(order), bool)
    last_chrom, last_centre = None, None
    for i in range(len(order)):  # duplicates and overlapping peaks: one site per half window
        if chrom[i] == last_chrom and centre[i] - last_centre < half:
            keep[i] = False
            continue
        last_chrom, last_centre = chrom[i], centre[i]
    return _Peaks(tf, str(path), chrom[keep], centre[keep], names[keep], len(order), int((~keep).sum()), blocked)


_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10, "XI": 11,
          "XII": 12, "XIII": 13, "XIV": 14, "XV": 15, "XVI": 16}


def _naming_hint(missing: list[str], fasta: list[str]) -> str:
    """A suggested mapping when the names differ only in style (chr1 / 1 / chrI)."""
    def number(name: str):
        bare = name[3:] if name.startswith("chr") else name
        return int(bare) if bare.isdigit() else _ROMAN.get(bare.upper())

    by_number = {number(c): c for c in fasta if number(c) is not None}
    pairs = [(m, by_number[number(m)]) for m in missing if number(m) in by_number]
    if not pairs:
        return ""
    shown = ", ".join(f"{a} -> {b}" for a, b in pairs[:3])
    return f"; the names look like another style of the same chromosomes ({shown}): rename them in the peak file"


def _resolve_splits(peaks: list[_Peaks], genome: Genome, settings: PeakSettings) -> dict[str, list[str]]:
    given = {"valid": settings.valid_chroms, "test": settings.test_chroms}
    for split, chroms in given.items():
        for chrom in chroms or ():
            if chrom not in genome.sizes:
                raise DataError(f"{split}_chroms: {chrom!r} is not a contig of the FASTA "
                                f"({', '.join(list(genome.sizes)[:6])}{', ...' if len(genome.sizes) > 6 else ''})")
    if given["valid"] is None or given["test"] is None:
        counts = {c: 0 for c in genome.sizes}
        for p in peaks:
            for chrom, n in zip(*np.unique(p.chrom, return_counts=True)):
                counts[chrom] += int(n)
        for split, chroms in given.items():
            for chrom in chroms or ():
                counts.pop(chrom, None)
        auto = auto_splits(counts)
        given = {s: tuple(c) if c is not None else tuple(auto[s]) for s, c in given.items()}
    twice = sorted(set(given["valid"]) & set(given["test"]))
    if twice:
        raise DataError(f"chromosome(s) {', '.join(twice)} in both valid_chroms and test_chroms: a chromosome "
                        "belongs to one split")
    held = set(given["valid"]) | set(given["test"])
    splits = {"train": [c for c in genome.sizes if c not in held], "valid": list(given["valid"]),
              "test": list(given["test"])}
    for split in SPLITS:
        if not splits[split]:
            raise DataError(f"no chromosome left for the {split} split; name fewer held-out chromosomes")
    return splits


def _read_exclusions(path: str | None, genome: Genome, chrom_map: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if path is None:
        return {}
    regions = read_regions(path, points=True)
    mapping = chrom_mapping(sorted(set(regions.chrom)), list(genome.sizes), chrom_map, f"the exclusions of {path}")
    chrom = np.asarray([mapping[c] for c in regions.chrom])
    return {c: (regions.start[chrom == c], np.maximum(regions.end[chrom == c], regions.start[chrom == c] + 1))
            for c in set(chrom)}


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) or not len(b):
        return float("nan")
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b).statistic)


def _gc_summary(positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    stat = lambda x, f: float(f(x)) if len(x) else float("nan")  # noqa: E731
    return {"positive_mean": stat(positive, np.mean), "positive_sd": stat(positive, np.std),
            "negative_mean": stat(negative, np.mean), "negative_sd": stat(negative, np.std),
            "ks_distance": _ks_distance(positive, negative)}


def gc_bin(gc: np.ndarray, width: float) -> np.ndarray:
    """GC fractions -> uint8 bin numbers of `width` (the last bin holds 1.0)."""
    return np.minimum((np.asarray(gc) / width).astype(np.int64), int(np.ceil(1 / width))).astype(np.uint8)


def _match_gc(pos_bin: np.ndarray, cand_bin: np.ndarray, ratio: float, width: float,
              rng: np.random.Generator) -> np.ndarray:
    """Indices into the candidates: `ratio` per positive, from the positive's GC bin (nearest bins when short)."""
    bins = int(np.ceil(1 / width)) + 1
    wanted = np.bincount(pos_bin, minlength=bins).astype(float) * ratio
    wanted = np.floor(wanted + rng.random(bins) * (wanted % 1 > 0))  # fractional ratios rounded at random
    pools = [rng.permutation(np.flatnonzero(cand_bin == b)) for b in range(bins)]
    used = np.zeros(bins, int)
    chosen = []
    for b in np.argsort(-wanted, kind="stable"):
        need = int(wanted[b])
        for other in sorted(range(bins), key=lambda o: (abs(o - b), o)):
            if not need:
                break
            take = pools[other][used[other]: used[other] + need]
            used[other] += len(take)
            need -= len(take)
            chosen.append(take)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, int)


def _table(tf: str, split: str, sequences: list[str], label: np.ndarray, chrom, start, source, gc, window) -> pa.Table:
    start = np.asarray(start, np.int64)
    return pa.table({"sequence": pa.array(sequences, pa.string()), "label": pa.array(label, pa.int8()),
                     "transcription_factor": pa.array([tf] * len(label), pa.string()),
                     "subset": pa.array([split] * len(label), pa.string()),
                     "chrom": pa.array(chrom, pa.string()), "start": start, "end": start + window,
                     "source": pa.array(source, pa.string()), "gc": pa.array(gc, pa.float32())})


def build_peak_datasets(peaks: Sequence[str | Path], fasta: str | Path, out: str | Path, *,
                        tfs: Sequence[str] | None = None, settings: PeakSettings | None = None,
                        progress: bool = True) -> PeakDatasets:
    """Per-TF training sets from peak files (BED/narrowPeak, one per TF) and the genome FASTA; see the module
    docstring. `tfs`: one name per file (default: from each file's name)."""
    settings = (settings or PeakSettings()).check()
    peaks = [Path(p) for p in peaks]
    if not peaks:
        raise DataError("no peak files given")
    names = list(tfs) if tfs else [tf_name_of(p) for p in peaks]
    if len(names) != len(peaks):
        raise DataError(f"{len(names)} TF name(s) for {len(peaks)} peak file(s): give one --tf per file")
    for name in names:
        if not _TF_NAME.match(name):
            raise DataError(f"tf {name!r}: a TF name is letters and digits only")
    if len(set(names)) != len(names):
        raise DataError(f"TF {sorted(n for n in names if names.count(n) > 1)[0]!r} is given twice: one peak file per TF")
    for path in peaks:
        if not path.exists():
            raise DataError(f"{path}: no such file")
    out = as_path(out)
    record = {"peaks": [str(p.resolve()) for p in peaks], "tfs": names, "fasta": str(Path(fasta).resolve()),
              **{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()}}
    if (out / MANIFEST).exists():
        old = json.loads((out / MANIFEST).read_text())
        if old["settings"] != record:
            diff = sorted(k for k in record if old["settings"].get(k) != record[k])
            raise DataError(f"{out} holds training sets built with other settings ({', '.join(diff)}); use another "
                            "--out")
        return _from_manifest(old, str(out))
    genome = Genome.open(fasta)
    sites = [_read_peaks(p, tf, genome, settings) for p, tf in zip(peaks, names)]
    splits = _resolve_splits(sites, genome, settings)
    split_of = {c: s for s, chroms in splits.items() for c in chroms}
    exclusions = _read_exclusions(settings.exclude, genome, settings.chrom_map)
    rng = np.random.default_rng(settings.seed)
    w, j = settings.window, settings.flank
    half, stored = w // 2, w + 2 * settings.flank

    # pass 1, one chromosome at a time: positives' sequences and GC; every candidate background window's GC
    positives = {p.tf: [] for p in sites}
    candidates = {(p.tf, s): [] for p in sites for s in SPLITS}
    dropped = {p.tf: {"off_chromosome_end": 0, "too_many_n": 0} for p in sites}
    codes = tile_codes = None
    for chrom in tqdm(list(genome.sizes), desc="peaks: chromosomes", unit="chrom", disable=not progress):
        size = genome.sizes[chrom]
        codes = tile_codes = None  # the previous chromosome goes before the next one is read: one at a time
        codes = encode([genome.fetch(chrom, 0, size)])[0]
        tiles = size // w
        tile_codes = codes[: tiles * w].reshape(tiles, w)
        tile_gc = gc_fraction(tile_codes)
        tile_n = (tile_codes == N_CODE).mean(axis=1)
        tile_start = np.arange(tiles, dtype=np.int64) * w
        split = split_of[chrom]
        for p in sites:
            on = p.chrom == chrom
            centre, name = p.centre[on], p.name[on]
            start = centre - half
            inside = (start - j >= 0) & (start + w + j <= size)
            dropped[p.tf]["off_chromosome_end"] += int((~inside).sum())
            start, name = start[inside], name[inside]
            windows = codes[start[:, None] + np.arange(-j, w + j)] if len(start) else np.zeros((0, stored), np.uint8)
            centred = windows[:, j: j + w]
            clean = (centred == N_CODE).mean(axis=1) <= settings.max_n_fraction
            dropped[p.tf]["too_many_n"] += int((~clean).sum())
            positives[p.tf].append((split, chrom, start[clean], windows[clean], list(name[clean]),
                                    gc_fraction(centred[clean])))
            own = p.blocked.get(chrom, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            other = exclusions.get(chrom, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            blocked = _merge(np.r_[own[0], other[0]], np.r_[own[1], other[1]])
            free = ~_overlaps(blocked, tile_start - j, w + 2 * j)
            free &= (tile_n <= settings.max_n_fraction) & (tile_start - j >= 0) & (tile_start + w + j <= size)
            # 5 bytes a candidate (its tile and GC bin): a human genome's 15 million tiles take 75 MB per TF
            candidates[(p.tf, split)].append((chrom, np.flatnonzero(free).astype(np.uint32),
                                              gc_bin(tile_gc[free], settings.gc_bin_width)))

    # matching per TF and split, then pass 2: the chosen negatives' sequences
    chosen = {}
    for p in sites:
        for split in SPLITS:
            parts = candidates[(p.tf, split)]
            bins = np.concatenate([b for _, _, b in parts]) if parts else np.zeros(0, np.uint8)
            pos_gc = np.concatenate([g for s, *_, g in positives[p.tf] if s == split] or [np.zeros(0)])
            if not len(pos_gc):
                raise DataError(f"{p.source}: no {p.tf} peak on the {split} chromosomes ({', '.join(splits[split])}); "
                                "choose other held-out chromosomes")
            if not len(bins):
                raise DataError(f"{p.source}: no background window left on the {split} chromosomes "
                                f"({', '.join(splits[split])}) once the peaks (margin {settings.margin} bp)"
                                + (f" and the exclusions of {settings.exclude}" if settings.exclude else "")
                                + f" and windows with more than {settings.max_n_fraction:g} N are left out")
            picked = _match_gc(gc_bin(pos_gc, settings.gc_bin_width), bins, settings.negative_ratio,
                               settings.gc_bin_width, rng)
            offsets = np.cumsum([0] + [len(t) for _, t, _ in parts])
            part = np.searchsorted(offsets, picked, side="right") - 1  # which chromosome's candidates
            tiles = np.concatenate([t for _, t, _ in parts]) if parts else np.zeros(0, np.uint32)
            chosen[(p.tf, split)] = (np.asarray([parts[k][0] for k in part], dtype=object),
                                     tiles[picked].astype(np.int64) * w)
    negatives = {key: [] for key in chosen}
    for chrom in tqdm(list(genome.sizes), desc="peaks: background", unit="chrom", disable=not progress):
        wanted = {key: np.flatnonzero(c == chrom) for key, (c, _) in chosen.items()}
        if not any(len(v) for v in wanted.values()):
            continue
        codes = None
        codes = encode([genome.fetch(chrom, 0, genome.sizes[chrom])])[0]
        for key, rows in wanted.items():
            starts = chosen[key][1][rows]
            windows = codes[starts[:, None] + np.arange(-j, w + j)] if len(rows) else np.zeros((0, stored), np.uint8)
            negatives[key].append((starts, windows, gc_fraction(windows[:, j: j + w]), chrom))

    results, files = [], []
    for p in sites:
        rows, gc_summary, written = {}, {}, []
        for split in SPLITS:
            pos = [x for x in positives[p.tf] if x[0] == split]
            pos_codes = np.concatenate([x[3] for x in pos]) if pos else np.zeros((0, stored), np.uint8)
            pos_start = np.concatenate([x[2] for x in pos]) if pos else np.zeros(0, np.int64)
            pos_chrom = [x[1] for x in pos for _ in range(len(x[2]))]
            pos_name = [n for x in pos for n in x[4]]
            pos_gc = np.concatenate([x[5] for x in pos]) if pos else np.zeros(0)
            neg = negatives[(p.tf, split)]
            neg_codes = np.concatenate([x[1] for x in neg]) if neg else np.zeros((0, stored), np.uint8)
            neg_start = np.concatenate([x[0] for x in neg]) if neg else np.zeros(0, np.int64)
            neg_chrom = [x[3] for x in neg for _ in range(len(x[0]))]
            neg_gc = np.concatenate([x[2] for x in neg]) if neg else np.zeros(0)
            shuffled = int(round(settings.shuffled_ratio * len(pos_codes)))
            shuf_rows = rng.choice(len(pos_codes), shuffled, replace=shuffled > len(pos_codes)) if shuffled else \
                np.zeros(0, int)
            shuf_codes = np.stack([dinucleotide_shuffle(pos_codes[r], 1, rng)[0] for r in shuf_rows]) if shuffled else \
                np.zeros((0, stored), np.uint8)
            sequences = decode(np.concatenate([pos_codes, neg_codes, shuf_codes]))
            table = _table(p.tf, split, sequences,
                           np.r_[np.ones(len(pos_codes), np.int8), np.zeros(len(neg_codes) + shuffled, np.int8)],
                           pos_chrom + neg_chrom + [pos_chrom[r] for r in shuf_rows],
                           np.r_[pos_start, neg_start, pos_start[shuf_rows]],
                           pos_name + ["background"] * len(neg_codes) + [f"shuffled:{pos_name[r]}" for r in shuf_rows],
                           np.r_[pos_gc, neg_gc, gc_fraction(shuf_codes[:, j: j + w])], w)
            path = split_path(out, p.tf, split)
            write_table_atomic(table, path)
            written.append(path.name)
            rows[split] = {"positive": len(pos_codes), "background": len(neg_codes), "shuffled": shuffled}
            gc_summary[split] = _gc_summary(pos_gc, neg_gc)
        files += written
        results.append(TFDataset(p.tf, p.source, p.count, p.merged, dropped[p.tf], rows, gc_summary, written))
    multilabel = _write_multilabel(out, sites, settings) if settings.multilabel else []
    manifest = {"settings": record, "chroms": splits, "multilabel": multilabel,
                "tfs": [vars(r) for r in results]}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return _from_manifest(manifest, str(out))


def _write_multilabel(out, sites: list[_Peaks], settings: PeakSettings) -> list[str]:
    """`multilabel_{split}.parquet`: every window of every TF's set once, a 0/1 column per TF (1 where that TF
    has a kept peak centre inside the window's centred `window` bp)."""
    from tfbind_dist.data.io import load_split

    written = []
    for split in SPLITS:
        tables = [load_split(out, p.tf, split).table for p in sites]
        table = pa.concat_tables([t.select(["sequence", "chrom", "start", "end"]) for t in tables])
        keys = np.char.add(np.asarray(table.column("chrom").to_pylist(), str),
                           np.asarray(table.column("start").to_numpy(), str))
        _, first = np.unique(keys, return_index=True)
        table = table.take(pa.array(np.sort(first)))
        chrom = np.asarray(table.column("chrom").to_pylist(), dtype=object)
        start, end = table.column("start").to_numpy(), table.column("end").to_numpy()
        for p in sites:
            label = np.zeros(len(start), np.int8)
            for c in np.unique(chrom):
                rows = np.flatnonzero(chrom == c)
                centres = np.sort(p.centre[p.chrom == c])
                label[rows] = np.searchsorted(centres, end[rows]) > np.searchsorted(centres, start[rows])
            table = table.append_column(p.tf, pa.array(label, pa.int8()))
        path = out / f"multilabel_{split}.parquet"
        write_table_atomic(table, path)
        written.append(path.name)
    return written


def _from_manifest(manifest: dict, out: str) -> PeakDatasets:
    return PeakDatasets(out, manifest["chroms"], [TFDataset(**t) for t in manifest["tfs"]], manifest["settings"],
                        manifest.get("multilabel", []))


__all__ = ["PeakDatasets", "PeakSettings", "TFDataset", "auto_splits", "build_peak_datasets", "gc_fraction",
           "gc_bin", "tf_name_of"]
