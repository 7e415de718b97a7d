"""Genome tracks from a finished scoring run: what a genome browser (IGV, UCSC) or bedtools reads.

Per model (column prefix, e.g. `CTCF`), from the scores folder `tfbind score` wrote:

    {key}.prob.bw, {key}.logit.bw      the prediction of the windows over every base they cover
    {key}.ism.bw                       ISM importance per base (sum of |delta| over the three substitutions),
                                       from the `ism` or `ism_summary` output
    {key}.grad_corrected.bw, {key}.grad.bw, {key}.deeplift_shap.bw
                                       the attribution of the observed base at each position (as ChromBPNet's
                                       contribs_bw), from those outputs
    {key}.sites.bed                    predicted binding sites: windows with probability >= the threshold,
                                       merged where they touch; score = 1000 x the peak probability,
                                       thickStart/thickEnd = the centre base of the peak window
    tracks.json                        what was written, with the combining rule and threshold (written last)

Overlapping windows (a tiling with stride < window, or overlapping regions) are combined so that each
base gets one value: `center` (default) takes it from the window whose centre is nearest (ties: the
earlier window), which for a regular tiling is each window's central `stride` bases, as ChromBPNet and
CREsted write their tracks; `mean` averages every window that covers the base. Bases no scored window
covers (N-skipped windows, gaps between regions) stay empty. Windows of regions on the `-` strand
are mapped back to the genome's orientation; bases past a contig end (padded windows) are left out.

The scores stream chromosome by chromosome, in batches, from the Parquet files into every track at
once (pyBigWig appends entries in order, so memory does not grow with the genome); chromosome sizes
come from the shard manifest, so no FASTA is needed.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.data.shard import column_codes, read_shard_manifest
from tfbind_dist.errors import DataError
from tfbind_dist.rundir import RunDir, column_keys
from tfbind_dist.scoring.scores import scored_shards
from tfbind_dist.storage import AnyPath, as_path, atomic_output, open_parquet, write_text_atomic

COMBINE = ("center", "mean")
DEFAULT_THRESHOLD = 0.5
BATCH_ROWS = 8192
OBSERVED_BASE = ("grad_corrected", "grad", "deeplift_shap")  # (L x 4) outputs whose track is the observed base's
TRACKS_JSON = "tracks.json"


# ------------------------------------------------------------------------------------------- the math


def center_bounds(starts: np.ndarray, window: int, before: int | None, after: int | None) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """[lo, hi) of the bases each window owns under the `center` rule, for windows of one chromosome sorted by
    start (equal starts already removed); `before`/`after`: the starts of the windows just outside the batch.

    Base b belongs to the window whose centre is nearest b + 0.5 (ties: the earlier window); between
    neighbours starting at s and t that is the bases up to (s + t + window - 1) // 2, within each window.
    """
    starts = np.asarray(starts, np.int64)
    previous = np.concatenate([[starts[0] - window if before is None else before], starts[:-1]])
    following = np.concatenate([starts[1:], [starts[-1] + window if after is None else after]])
    lo = np.maximum(starts, (previous + starts + window - 1) // 2 + 1)
    hi = np.minimum(starts + window, (starts + following + window - 1) // 2 + 1)
    return lo, hi


def owned_values(starts: np.ndarray, lo: np.ndarray, hi: np.ndarray, per_base: np.ndarray) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """(positions, values) of the bases windows own: base p of window k gets per_base[k, p - starts[k]]."""
    lengths = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(starts)), lengths)
    offsets = np.cumsum(lengths) - lengths
    positions = lo[rows] + (np.arange(len(rows)) - offsets[rows])
    return positions, per_base[rows, positions - starts[rows]]


def runs(positions: np.ndarray) -> list[slice]:
    """Slices of `positions` (ascending) that are consecutive bases."""
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    edges = [0, *breaks.tolist(), len(positions)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


# ----------------------------------------------------------------------------------------- the writers


class BigWig:
    """One bigWig being written: entries appended in genome order (pyBigWig), the file renamed into place
    (or uploaded whole) when it is complete."""

    def __init__(self, path: AnyPath, chrom_sizes: dict[str, int], stack: contextlib.ExitStack):
        import pyBigWig

        self.path = path
        self.local = stack.enter_context(atomic_output(path))
        self.file = pyBigWig.open(str(self.local), "w")
        self.file.addHeader(list(chrom_sizes.items()), maxZooms=10)
        self.sizes = chrom_sizes
        stack.callback(self.close)  # runs before the temp file is renamed (callbacks unwind in reverse)

    def intervals(self, chrom: str, starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> None:
        """Intervals [start, end) with one value each (clipped to the contig; empty ones left out)."""
        starts, ends = np.maximum(starts, 0), np.minimum(ends, self.sizes[chrom])
        keep = ends > starts
        if keep.any():
            self.file.addEntries([chrom] * int(keep.sum()), starts[keep].astype(np.int64),
                                 ends=ends[keep].astype(np.int64), values=values[keep].astype(np.float64))

    def bases(self, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
        """One value per base at ascending `positions` (outside the contig left out), as fixed-step runs."""
        inside = (positions >= 0) & (positions < self.sizes[chrom])
        positions, values = positions[inside], values[inside].astype(np.float64)
        for run in runs(positions):
            self.file.addEntries(chrom, int(positions[run.start]), values=values[run], span=1, step=1)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@dataclass
class SiteCaller:
    """Predicted sites of one model: windows with probability >= threshold, merged where they touch."""

    sizes: dict[str, int]
    threshold: float
    key: str
    lines: list[str] = field(default_factory=list)
    current: list | None = None  # [chrom, start, end, peak, summit]
    count: int = 0

    def add(self, chrom: str, starts: np.ndarray, window: int, probability: np.ndarray) -> None:
        for i in np.flatnonzero(probability >= self.threshold):
            start, end = max(int(starts[i]), 0), min(int(starts[i]) + window, self.sizes[chrom])
            summit = min(max(int(starts[i]) + window // 2, start), end - 1)
            value = float(probability[i])
            site = self.current
            if site is not None and site[0] == chrom and start <= site[2]:
                site[2] = max(site[2], end)
                if value > site[3]:
                    site[3], site[4] = value, summit
            else:
                self.flush()
                self.current = [chrom, start, end, value, summit]

    def flush(self) -> None:
        if self.current is not None:
            chrom, start, end, peak, summit = self.current
            self.count += 1
            self.lines.append(f"{chrom}\t{start}\t{end}\t{self.key}_site{self.count}\t{round(1000 * peak)}\t.\t"
                              f"{summit}\t{summit + 1}\n")
            self.current = None


class Track:
    """One model's output combined over the windows of each chromosome into a bigWig (see the module docstring)."""

    def __init__(self, writer: BigWig, rule: str, window: int, per_base: bool):
        self.writer, self.rule, self.window, self.per_base = writer, rule, window, per_base
        self.before: int | None = None  # center: start of the last window written on this chromosome
        self.pending: tuple[int, np.ndarray] | None = None  # center: the last window seen, owned once its successor is
        self.origin, self.sums, self.counts = 0, None, None  # mean: the bases not final yet

    def add(self, chrom: str, starts: np.ndarray, values: np.ndarray) -> None:
        """A batch of windows of `chrom` (ascending starts) and their values: (n,), or (n, window) per base."""
        if self.rule == "center":
            self._center(chrom, starts, values)
        else:
            self._mean(chrom, starts, values)

    def end_chromosome(self, chrom: str) -> None:
        if self.rule == "center":
            if self.pending is not None:
                start, values = self.pending
                lo, hi = center_bounds(np.array([start]), self.window, self.before, None)
                self._write(chrom, np.array([start]), lo, hi, values[None])
            self.before = self.pending = None
        else:
            self._emit_mean(chrom, None)

    def _center(self, chrom: str, starts: np.ndarray, values: np.ndarray) -> None:
        first = np.concatenate([[True], np.diff(starts) != 0])  # equal starts: the earlier window owns them all
        if self.pending is not None:
            first[0] = starts[0] != self.pending[0]
            starts = np.concatenate([[self.pending[0]], starts[first]])
            values = np.concatenate([self.pending[1][None], values[first]])
        else:
            starts, values = starts[first], values[first]
        if len(starts) > 1:  # all but the last are owned now: their successors are known
            lo, hi = center_bounds(starts, self.window, self.before, None)
            self._write(chrom, starts[:-1], lo[:-1], hi[:-1], values[:-1])
            self.before = int(starts[-2])
        self.pending = (int(starts[-1]), values[-1])

    def _write(self, chrom: str, starts, lo, hi, values) -> None:
        if self.per_base:
            self.writer.bases(chrom, *owned_values(starts, lo, hi, values))
        else:
            self.writer.intervals(chrom, lo, hi, values)

    def _mean(self, chrom: str, starts: np.ndarray, values: np.ndarray) -> None:
        per_base = values if self.per_base else np.broadcast_to(values[:, None], (len(starts), self.window))
        if self.sums is None:
            self.origin, self.sums, self.counts = int(starts[0]), np.zeros(0), np.zeros(0, np.int64)
        span = int(starts[-1]) + self.window - self.origin
        sums, counts = np.zeros(span), np.zeros(span, np.int64)
        sums[:len(self.sums)], counts[:len(self.counts)] = self.sums, self.counts
        index = (starts[:, None] - self.origin + np.arange(self.window)).ravel()
        sums += np.bincount(index, weights=per_base.ravel().astype(np.float64), minlength=span)
        counts += np.bincount(index, minlength=span)
        self.sums, self.counts = sums, counts
        self._emit_mean(chrom, int(starts[-1]))  # later windows start at or after the batch's last start

    def _emit_mean(self, chrom: str, final_before: int | None) -> None:
        """Write the bases before `final_before` (None: all) and keep the rest for later windows."""
        if self.sums is None:
            return
        cut = len(self.sums) if final_before is None else max(0, final_before - self.origin)
        covered = np.flatnonzero(self.counts[:cut] > 0)
        if len(covered):
            self.writer.bases(chrom, covered + self.origin, self.sums[covered] / self.counts[covered])
        if final_before is None:
            self.sums = self.counts = None
        else:
            self.sums, self.counts, self.origin = self.sums[cut:], self.counts[cut:], self.origin + cut


# ------------------------------------------------------------------------------------------ the stream


@dataclass(frozen=True)
class TrackPlan:
    """One track to write: a model's output, how its values come out of the scores, and the file."""

    key: str  # the model's column prefix
    output: str  # prob, logit, ism, grad_corrected, grad, deeplift_shap
    column: str  # the scores column it is read from
    per_base: bool

    @property
    def file(self) -> str:
        return f"{self.key}.{self.output}.bw"


def plan_tracks(settings: dict, keys: list[str]) -> list[TrackPlan]:
    """The tracks a scores folder can give, per model, from the outputs it was scored with."""
    outputs = set(settings["outputs"])
    plans = []
    for key in keys:
        plans += [TrackPlan(key, name, f"{key}_{name}", False) for name in ("prob", "logit") if name in outputs]
        if "ism" in outputs or "ism_summary" in outputs:
            plans.append(TrackPlan(key, "ism", f"{key}_ism" if "ism" in outputs else f"{key}_ism_importance", True))
        plans += [TrackPlan(key, name, f"{key}_{name}", True) for name in OBSERVED_BASE if name in outputs]
    return plans


def per_base_values(plan: TrackPlan, batch: pa.RecordBatch, codes: np.ndarray | None, window: int) -> np.ndarray:
    """(n, window) values of a per-base track in the windows' own orientation."""
    flat = batch.column(plan.column).flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if plan.column.endswith("_ism_importance"):
        return flat.reshape(batch.num_rows, window)
    values = flat.reshape(batch.num_rows, window, 4)
    if plan.output == "ism":
        return np.abs(values).sum(-1)
    return (values * one_hot(codes, "zeros")).sum(-1)


def _chromosome_runs(chroms: list[str]) -> list[tuple[str, slice]]:
    """(chrom, rows) of the consecutive runs of one chromosome in a batch."""
    out, start = [], 0
    for i in range(1, len(chroms) + 1):
        if i == len(chroms) or chroms[i] != chroms[start]:
            out.append((chroms[start], slice(start, i)))
            start = i
    return out


def stream_windows(scores_dir, columns: list[str], need_codes: bool, progress: bool,
                   total: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, pa.RecordBatch, np.ndarray | None]]:
    """(chrom, starts, minus strand, batch of `columns`, codes) for the scored windows in genome order, a
    chromosome's run of a batch at a time; a folder whose windows are not in genome order is refused."""
    settings, shards = scored_shards(scores_dir)
    window = read_shard_manifest(settings["input"])["window"]
    done, last = set(), (None, None)
    with tqdm(total=total, unit="window", desc="tracks", disable=not progress, dynamic_ncols=True) as bar:
        for scores_path, shard_path in shards:
            shard_codes = None
            if need_codes:
                with open_parquet(shard_path) as source:
                    shard = source.read(columns=["id", "codes"])
                shard_ids, shard_codes = shard.column("id"), shard.column("codes")
            with open_parquet(scores_path) as source:
                present = [c for c in ("id", "chrom", "start", "strand", *columns) if c in source.schema_arrow.names]
                for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=present):
                    codes = None
                    if need_codes:
                        rows = pc.index_in(batch.column("id"), shard_ids)
                        codes = column_codes(shard_codes.take(rows), window)[0]
                    chroms = batch.column("chrom").to_pylist()
                    starts = batch.column("start").to_numpy().astype(np.int64)
                    minus = (np.asarray(batch.column("strand").to_pylist()) == "-") if "strand" in present else \
                        np.zeros(batch.num_rows, bool)
                    for chrom, rows in _chromosome_runs(chroms):
                        if chrom != last[0]:
                            if chrom in done:
                                raise DataError(f"{scores_dir}: windows of {chrom} do not come together (not in genome "
                                                "order); re-shard the input with `tfbind data shard`")
                            done.add(chrom)
                            last = (chrom, None)
                        if (last[1] is not None and starts[rows][0] < last[1]) or (np.diff(starts[rows]) < 0).any():
                            raise DataError(f"{scores_dir}: windows of {chrom} are not sorted by start; re-shard the "
                                            "input with `tfbind data shard`")
                        last = (chrom, int(starts[rows][-1]))
                        yield chrom, starts[rows], minus[rows], batch.slice(rows.start, rows.stop - rows.start), \
                            None if codes is None else codes[rows]
                    bar.update(batch.num_rows)


class TracksSummary:
    """What `write_tracks` wrote."""

    def __init__(self, out: AnyPath, files: list[str], windows: int, sites: dict[str, int], seconds: float):
        self.out, self.files, self.windows, self.sites, self.seconds = out, files, windows, sites, seconds

    def describe(self) -> str:
        bigwigs = sum(f.endswith(".bw") for f in self.files)
        sites = ", ".join(f"{key} {n:,}" for key, n in self.sites.items())
        return (f"tracks: {bigwigs} bigWigs and {len(self.sites)} site BEDs from {self.windows:,} windows in "
                f"{self.seconds:.1f} s to {self.out} (sites: {sites})")


def write_tracks(scores_dir, out, *, combine: str = "center", threshold: float = DEFAULT_THRESHOLD,
                 models: list[str] | None = None, progress: bool = True) -> TracksSummary:
    """bigWigs of every model's predictions and attributions and a BED of its predicted sites (module docstring)."""
    if combine not in COMBINE:
        raise DataError(f"--combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"--threshold must be a probability in [0, 1], got {threshold}")
    started = time.time()
    settings, _ = scored_shards(scores_dir)
    manifest = read_shard_manifest(settings["input"])
    sizes, window = manifest.get("chrom_sizes"), int(manifest["window"])
    if not sizes:
        raise DataError(f"{settings['input']}: its windows have no genome coordinates (no chromosome sizes in "
                        f"_SHARDS.json); tracks need shards tiled from a FASTA or made from BED/narrowPeak regions")
    runs = settings["runs"]
    keys = column_keys([RunDir(r).load_config().data.tf for r in runs], runs)
    if models:
        unknown = [m for m in models if m not in keys]
        if unknown:
            raise DataError(f"--models {unknown[0]}: not a model of {scores_dir} (its models: {', '.join(keys)})")
        keys = [k for k in keys if k in models]
    plans = plan_tracks(settings, keys)
    if not plans:
        raise DataError(f"{scores_dir}: scored without outputs that make tracks ({', '.join(settings['outputs'])}); "
                        "score with prob, logit, ism, ism_summary, grad, grad_corrected or deeplift_shap")
    out = as_path(out)
    out.mkdir(parents=True, exist_ok=True)
    callers = {key: SiteCaller(sizes, threshold, key) for key in keys if f"{key}_prob" in {p.column for p in plans}}
    windows = 0
    with contextlib.ExitStack() as stack:
        tracks = [(plan, Track(BigWig(out / plan.file, sizes, stack), combine, window, plan.per_base)) for plan in plans]
        need_codes = any(p.output in OBSERVED_BASE for p in plans)
        current = None
        for chrom, starts, minus, batch, codes in stream_windows(scores_dir, [p.column for p in plans], need_codes,
                                                                 progress, int(manifest["rows"])):
            if current is not None and chrom != current:
                for _, track in tracks:
                    track.end_chromosome(current)
            current = chrom
            windows += len(starts)
            for plan, track in tracks:
                if plan.per_base:
                    values = per_base_values(plan, batch, codes, window)
                    values[minus] = values[minus, ::-1]  # `-` strand windows back in the genome's orientation
                else:
                    values = batch.column(plan.column).to_numpy(zero_copy_only=False).astype(np.float64)
                track.add(chrom, starts, values)
                if plan.output == "prob" and plan.key in callers:
                    callers[plan.key].add(chrom, starts, window, values)
        if current is not None:
            for _, track in tracks:
                track.end_chromosome(current)
    for key, caller in callers.items():
        caller.flush()
        write_text_atomic(out / f"{key}.sites.bed", "".join(caller.lines))
    files = [p.file for p in plans] + [f"{key}.sites.bed" for key in callers]
    write_text_atomic(out / TRACKS_JSON, json.dumps({
        "scores": str(as_path(scores_dir)), "combine": combine, "threshold": threshold, "window": window,
        "windows": windows, "files": files, "sites": {k: c.count for k, c in callers.items()}}, indent=1))
    return TracksSummary(out, files, windows, {k: c.count for k, c in callers.items()}, time.time() - started)


# ------------------------------------------------------------------------------------------ one locus


class _ArrayWriter:
    """A `BigWig` stand-in that keeps one locus's combined values in an array (NaN: no window covers the base)."""

    def __init__(self, start: int, end: int):
        self.start, self.values = start, np.full(end - start, np.nan)

    def _put(self, positions: np.ndarray, values: np.ndarray) -> None:
        inside = (positions >= self.start) & (positions < self.start + len(self.values))
        self.values[positions[inside] - self.start] = values[inside]

    def intervals(self, chrom, starts, ends, values) -> None:
        for a, b, v in zip(starts, ends, values):
            self._put(np.arange(a, b), np.full(b - a, v))

    def bases(self, chrom, positions, values) -> None:
        self._put(positions, values)


def parse_locus(text: str) -> tuple[str, int, int]:
    """'chr1:1,000-2,000' (1-based, inclusive, as IGV and UCSC show loci) -> ('chr1', 999, 2000), 0-based half-open."""
    chrom, _, span = text.replace(",", "").rpartition(":")
    first, _, last = span.partition("-")
    try:
        start, end = int(first) - 1, int(last)
    except ValueError:
        raise DataError(f"--plot {text}: not a locus CHROM:START-END (e.g. chr1:1,000-2,000)") from None
    if not chrom or start < 0 or end <= start:
        raise DataError(f"--plot {text}: not a locus CHROM:START-END with START <= END")
    return chrom, start, end


class Locus(NamedTuple):
    """The models' combined probability over one locus, and each model's best window in it."""

    chrom: str
    start: int
    end: int
    probability: dict[str, np.ndarray]  # model -> (end - start,) per base, NaN where no window covers it
    top: dict[str, dict]  # model -> start, strand, probability, sequence, attribution (window, 4), method


def read_locus(scores_dir, locus: str, *, models: list[str] | None = None, combine: str = "center") -> Locus:
    """What `plot_locus` draws, from the scores (no FASTA, no bigWigs needed); the attribution logo of a model's
    best window comes from the scores' DeepLIFT/SHAP, corrected gradients, gradients or ISM, or, if none was
    stored, from corrected gradients of the run's model."""
    chrom, start, end = parse_locus(locus)
    settings, shards = scored_shards(scores_dir)
    manifest = read_shard_manifest(settings["input"])
    window = int(manifest["window"])
    sizes = manifest.get("chrom_sizes") or {}
    if chrom not in sizes:
        raise DataError(f"--plot {locus}: {chrom} is not one of the scored contigs ({', '.join(list(sizes)[:5])}...)")
    runs = settings["runs"]
    run_of = dict(zip(column_keys([RunDir(r).load_config().data.tf for r in runs], runs), runs))
    keys = [k for k in run_of if not models or k in models]
    parts = []
    for scores_path, shard_path in shards:
        rows = _rows_near(scores_path, chrom, start - window + 1, end)
        if rows.num_rows:
            with open_parquet(shard_path) as source:
                shard = source.read(columns=["id", "codes"])
            codes = column_codes(shard.column("codes").take(pc.index_in(rows.column("id"), shard.column("id"))),
                                 window)[0]
            parts.append((rows, codes))
    if not parts:
        raise DataError(f"--plot {locus}: no scored window overlaps it")
    table = pa.concat_tables([rows for rows, _ in parts])
    codes = np.concatenate([c for _, c in parts])
    order = np.argsort(table.column("start").to_numpy(), kind="stable")
    table, codes = table.take(order), codes[order]
    starts = table.column("start").to_numpy().astype(np.int64)
    strands = table.column("strand").to_pylist() if "strand" in table.column_names else ["+"] * len(starts)
    probability, top = {}, {}
    for key in keys:
        values = table.column(f"{key}_prob").to_numpy(zero_copy_only=False).astype(np.float64)
        writer = _ArrayWriter(start, end)
        track = Track(writer, combine, window, per_base=False)
        track.add(chrom, starts, values)
        track.end_chromosome(chrom)
        probability[key] = writer.values
        best = int(np.argmax(values))
        top[key] = {"start": int(starts[best]), "strand": strands[best], "probability": float(values[best]),
                    "sequence": "".join("ACGTN"[c] for c in codes[best]),
                    **_window_attribution(key, run_of[key], table.slice(best, 1), codes[best], window)}
    return Locus(chrom, start, end, probability, top)


def _rows_near(scores_path, chrom: str, first: int, end: int) -> pa.Table:
    """The rows of a scores file on `chrom` whose window starts in [first, end), reading only the row groups
    whose statistics allow such rows (the files are in genome order)."""
    with open_parquet(scores_path) as source:
        wanted = []
        for i in range(source.metadata.num_row_groups):
            group = source.metadata.row_group(i)
            stats = {group.column(j).path_in_schema: group.column(j).statistics for j in range(group.num_columns)}
            chroms, starts = stats.get("chrom"), stats.get("start")
            if chroms is not None and chroms.has_min_max and not chroms.min <= chrom <= chroms.max:
                continue
            if starts is not None and starts.has_min_max and (starts.max < first or starts.min >= end):
                continue
            wanted.append(i)
        table = source.read_row_groups(wanted) if wanted else source.schema_arrow.empty_table()
    mask = pc.and_(pc.equal(table.column("chrom"), chrom),
                   pc.and_(pc.greater_equal(table.column("start"), first), pc.less(table.column("start"), end)))
    return table.filter(mask)


def _window_attribution(key: str, run: str, row: pa.Table, codes: np.ndarray, window: int) -> dict:
    """{attribution (window, 4) with each observed base's contribution, method} for one scored window."""
    observed = one_hot(codes, "zeros")
    for name in ("deeplift_shap", "grad_corrected", "grad"):
        if f"{key}_{name}" in row.column_names:
            values = np.asarray(row.column(f"{key}_{name}").combine_chunks().flatten(), np.float32)
            return {"attribution": values.reshape(window, 4) * observed, "method": name.replace("_", "-")}
    if f"{key}_ism" in row.column_names:
        delta = np.asarray(row.column(f"{key}_ism").combine_chunks().flatten(), np.float32).reshape(window, 4)
        return {"attribution": -delta.sum(-1, keepdims=True) / 3 * observed, "method": "ism (mean loss on mutation)"}
    from tfbind_dist.interpret.gradients import corrected_gradients
    from tfbind_dist.training.restore import load_model

    model = load_model(run)
    grads = np.asarray(corrected_gradients(model.module, model.variables, codes[None], n_policy=model.n_policy))[0]
    return {"attribution": grads * observed, "method": "grad-corrected (computed)"}


def plot_locus(locus: Locus, *, axes=None):
    """Each model's probability track over the locus above the attribution logo of its best window there.

    `axes`: two per model (default: a new figure); returns them.
    """
    from tfbind_dist.interpret.plots import plot_attribution_logo
    from tfbind_dist.plotting import user_subplots

    keys = list(locus.probability)
    if axes is None:
        _, grid = user_subplots(2 * len(keys), 1, figsize=(12.0, 2.4 * 2 * len(keys)))
        axes = grid[:, 0]
    axes = list(np.ravel(axes))
    if len(axes) != 2 * len(keys):
        raise ValueError(f"axes must hold two axes per model ({2 * len(keys)}), got {len(axes)}")
    positions = np.arange(locus.start, locus.end)
    for i, key in enumerate(keys):
        track, logo, best = axes[2 * i], axes[2 * i + 1], locus.top[key]
        values = locus.probability[key]
        track.fill_between(positions, np.nan_to_num(values), step="post", color="tab:blue", alpha=0.4)
        track.plot(positions, values, drawstyle="steps-post", color="tab:blue", lw=1)
        track.axvspan(best["start"], best["start"] + len(best["sequence"]), color="gold", alpha=0.25)
        track.set(xlim=(locus.start, locus.end), ylim=(0, 1), ylabel="probability",
                  title=f"{key}: {locus.chrom}:{locus.start + 1:,}-{locus.end:,}")
        plot_attribution_logo(best["attribution"], best["sequence"], ax=logo,
                              title=f"{key} best window {locus.chrom}:{best['start'] + 1:,} ({best['strand']} strand, "
                                    f"p = {best['probability']:.3f}): {best['method']}")
    return axes
