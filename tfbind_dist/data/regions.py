"""Regions (BED, narrowPeak) and a reference genome in, one scoring window per region out.

Each region becomes the window of the models' length centred on its summit (narrowPeak, column 10)
or its midpoint, read from the indexed FASTA (`data.genome`); a region on the `-` strand (column 6)
is scored as the reverse complement of its window. A window running off a chromosome end is
N-padded and flagged `off_end` (`off_end="pad"`), or dropped and counted (`"drop"`); regions on a
contig the FASTA lacks are dropped and counted too, and every dropped region is listed with its
reason in `_dropped.parquet` beside the shards. The region's line, name, coordinates and strand
travel with its window into the scores.

Windows are written in genome order (the FASTA index's contig order, then window start, then input
line), whatever the order of the input, so the scores stream chromosome by chromosome into tracks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from tfbind_dist.data.encoding import encode, reverse_complement
from tfbind_dist.data.genome import Genome, chrom_mapping
from tfbind_dist.data.readers import iter_lines
from tfbind_dist.data.shard import ShardSummary, ShardWriter, prepare_out_dir
from tfbind_dist.errors import DataError
from tfbind_dist.storage import as_path, write_table_atomic

REGION_SUFFIXES = (".bed", ".narrowpeak", ".broadpeak")
CENTERS = ("summit", "midpoint")
OFF_END = ("pad", "drop")
DROPPED = "_dropped.parquet"  # beside the shards; the leading "_" keeps it out of the shard listing
REGION_COLUMNS = ("name", "region_start", "region_end", "strand", "off_end", "line")  # carried to the scores
_SKIP = (b"#", b"track", b"browser")


@dataclass
class Regions:
    """The data lines of a BED/narrowPeak file, as columns."""

    line: np.ndarray  # 1-based line number in the file
    chrom: list[str]
    start: np.ndarray
    end: np.ndarray
    name: list[str]
    strand: np.ndarray  # '+', '-' or '.'
    summit: np.ndarray  # offset of the summit from start (narrowPeak column 10), -1 if none


def is_regions(path) -> bool:
    """Whether a file is a region file by its name: .bed, .narrowPeak or .broadPeak, optionally .gz."""
    return Path(str(path)).name.lower().removesuffix(".gz").endswith(REGION_SUFFIXES)


def _int(field: bytes, path, line: int, column: int, what: str) -> int:
    try:
        return int(field)
    except ValueError:
        raise DataError(f"{path} line {line}: column {column} ({what}) is {field.decode(errors='replace')!r}, "
                        "expected an integer") from None


def read_regions(path: str | Path, *, points: bool = False) -> Regions:
    """Every data line of a BED (3 or more columns) or narrowPeak (10 columns) file, checked; a malformed line
    is a DataError naming the file and line. With `points`, a zero-length interval (start = end: a ChIP-exo
    site, say) is its point."""
    path = Path(path)
    narrow = path.name.lower().removesuffix(".gz").endswith(".narrowpeak")
    lines, chroms, starts, ends, names, strands, summits = [], [], [], [], [], [], []
    for number, text in enumerate(iter_lines(path), start=1):
        if not text or text.startswith(_SKIP):
            continue
        fields = text.split(b"\t") if b"\t" in text else text.split()
        if len(fields) < 3 or (narrow and len(fields) < 10):
            raise DataError(f"{path} line {number}: {len(fields)} column(s); a {'narrowPeak' if narrow else 'BED'} "
                            f"line has {'10' if narrow else 'at least 3'} (chrom, start, end, ...)")
        start, end = _int(fields[1], path, number, 2, "start"), _int(fields[2], path, number, 3, "end")
        if not (0 <= start <= end if points else 0 <= start < end):
            raise DataError(f"{path} line {number}: start {start} and end {end}: need 0 <= start "
                            f"{'<=' if points else '<'} end")
        strand = fields[5].decode() if len(fields) > 5 else "."
        if strand not in ("+", "-", "."):
            raise DataError(f"{path} line {number}: column 6 (strand) is {strand!r}, expected +, - or .")
        summit = _int(fields[9], path, number, 10, "summit") if narrow else -1
        if summit > end - start:  # real narrowPeak files put a summit on the end coordinate too
            raise DataError(f"{path} line {number}: summit offset {summit} lies outside the region ({end - start} bp)")
        chrom = fields[0].decode()
        lines.append(number)
        chroms.append(chrom)
        starts.append(start)
        ends.append(end)
        names.append(fields[3].decode() if len(fields) > 3 and fields[3] != b"." else f"{chrom}:{start}-{end}")
        strands.append(strand)
        summits.append(summit)
    if not lines:
        raise DataError(f"{path}: no regions (no data lines)")
    as_int = lambda values: np.asarray(values, np.int64)  # noqa: E731
    return Regions(as_int(lines), chroms, as_int(starts), as_int(ends), names, np.asarray(strands), as_int(summits))


def shard_regions(src: str | Path, fasta: str | Path, out_dir, *, window: int = 200, center: str = "summit",
                  off_end: str = "pad", chrom_map: str = "none", rows_per_shard: int = 100_000,
                  progress: bool = False) -> ShardSummary:
    """One window per region of `src` into shards under `out_dir` (then `_SHARDS.json`); see the module docstring.

    `center`: "summit" (narrowPeak's column 10 where given, else the midpoint) or "midpoint".
    """
    if center not in CENTERS:
        raise DataError(f"--center must be one of {', '.join(CENTERS)}, got {center!r}")
    if off_end not in OFF_END:
        raise DataError(f"--off-end must be one of {', '.join(OFF_END)}, got {off_end!r}")
    regions = read_regions(src)
    genome = Genome.open(fasta)
    mapping = chrom_mapping(sorted(set(regions.chrom)), list(genome.sizes), chrom_map, f"the regions of {src}")
    order_of = {name: i for i, name in enumerate(genome.sizes)}
    chrom = [mapping[c] for c in regions.chrom]
    rank = np.array([order_of.get(c, -1) for c in chrom])
    size = np.array([genome.sizes.get(c, 0) for c in chrom])
    middle = regions.start + np.where((center == "summit") & (regions.summit >= 0), regions.summit,
                                      (regions.end - regions.start) // 2)
    start = middle - window // 2
    outside = (start < 0) | (start + window > size)
    reason = np.where(rank < 0, "contig not in the FASTA", np.where(outside & (off_end == "drop"),
                                                                    "window runs off the contig end", ""))
    keep = np.flatnonzero(reason == "")
    keep = keep[np.lexsort((regions.line[keep], start[keep], rank[keep]))]  # genome order
    out_dir = as_path(out_dir)
    prepare_out_dir(out_dir)
    writer = ShardWriter(out_dir, window, rows_per_shard)
    try:
        for batch in tqdm(np.array_split(keep, max(1, -(-len(keep) // 4096))), desc="regions", unit="batch",
                          disable=not progress or not len(keep)):
            sequences = [genome.window(chrom[i], int(start[i]), window)[0] for i in batch]
            codes = encode(sequences, names=[f"{src} line {regions.line[i]}" for i in batch]) if len(batch) else \
                np.zeros((0, window), np.uint8)
            minus = regions.strand[batch] == "-"
            codes[minus] = reverse_complement(codes[minus])
            writer.add(codes, pa.table({
                "chrom": [chrom[i] for i in batch], "start": start[batch], "end": start[batch] + window,
                "name": [regions.name[i] for i in batch], "region_start": regions.start[batch],
                "region_end": regions.end[batch], "strand": regions.strand[batch], "off_end": outside[batch],
                "line": regions.line[batch]}))
        if not writer.rows + writer.fill:
            raise DataError(f"{src}: every region was dropped ({', '.join(sorted(set(reason)))})")
        dropped = np.flatnonzero(reason != "")
        write_table_atomic(pa.table({"line": regions.line[dropped], "chrom": [regions.chrom[i] for i in dropped],
                                     "start": regions.start[dropped], "end": regions.end[dropped],
                                     "name": [regions.name[i] for i in dropped], "reason": reason[dropped]}),
                           out_dir / DROPPED)
        counts = {r: int((reason == r).sum()) for r in sorted(set(reason) - {""})}
        writer.finish(source=str(Path(src).absolute()), kind="regions", fasta=str(Path(fasta).absolute()),
                      center=center, off_end=off_end, dropped=counts, n_policy="keep", chrom_sizes=genome.sizes)
    except BaseException:
        writer.remove_written()
        raise
    return ShardSummary(shards=len(writer.shards), rows=writer.rows, skipped_n=0, window=window, out_dir=out_dir,
                        dropped=int(len(regions.line) - len(keep)))
