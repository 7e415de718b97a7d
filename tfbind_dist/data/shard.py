"""Streaming sharding of large sequence inputs into fixed-window Parquet shards.

`shard_input` turns a FASTA genome, a CSV/TSV of sequences, or Parquet files into
`part-00000.parquet`, `part-00001.parquet`, ... holding a global row `id`, the
window's uint8 base `codes` as fixed-size binary (one byte per base) and the
input's metadata columns, then writes the `_SHARDS.json` manifest last. Inputs are
streamed: FASTA line by line, in chunks encoded with one lookup-table gather and
cut into windows with numpy views, so memory stays flat whatever the input size.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

from tfbind_dist.data.encoding import _LUT, ALLOWED, INVALID, N_CODE
from tfbind_dist.data.io import DataError, encode_column
from tfbind_dist.data.readers import csv_batches, input_kind, iter_lines, parquet_batches, parquet_files
from tfbind_dist.storage import AnyPath, as_path, is_remote, open_parquet, write_table_atomic, write_text_atomic

SHARD_MANIFEST = "_SHARDS.json"
SHARD_N_POLICIES = ("skip", "keep")
ID, CODES, SEQUENCE = "id", "codes", "sequence"  # a shard's columns: row id, uint8 base codes, or text
RESERVED_COLUMNS = (ID, CODES, SEQUENCE)

_PART = re.compile(r"part-\d{5}\.parquet")
_SKIPPED = object()  # the record being read past (not in --chroms)
_CHUNK_BYTES = 1 << 20  # FASTA sequence bytes encoded and tiled at a time


@dataclass(frozen=True)
class ShardSummary:
    """What `shard_input` wrote: shard and row counts, N windows skipped, window size, directory, regions dropped."""

    shards: int
    rows: int
    skipped_n: int
    window: int
    out_dir: AnyPath
    dropped: int = 0


def codes_column(codes: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(N, L) uint8 base codes as a fixed_size_binary[L] column (one byte per base), without a copy."""
    codes = np.ascontiguousarray(codes)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(codes.shape[1]), len(codes), [None, pa.py_buffer(codes)])


def column_codes(column: pa.Array | pa.ChunkedArray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `codes_column`: (N, length) uint8 codes of a `codes` column (fixed-size or variable
    binary) and each row's byte length; rows of another length (or null) are zeros."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    if pa.types.is_fixed_size_binary(column.type):
        width = column.type.byte_width
        lengths = np.where(np.asarray(column.is_null()), 0, width) if column.null_count else np.full(n, width)
        if width != length:
            return np.zeros((n, length), np.uint8), lengths
        data = np.frombuffer(column.buffers()[1], np.uint8)[column.offset * width:(column.offset + n) * width]
        return np.where(lengths[:, None] == length, data.reshape(n, width), 0).astype(np.uint8), lengths
    raw = column.to_pylist()
    lengths = np.array([len(r) if r is not None else 0 for r in raw], dtype=np.int64)
    codes = np.zeros((n, length), np.uint8)
    for i in np.flatnonzero(lengths == length):
        codes[i] = np.frombuffer(raw[i], np.uint8)
    return codes, lengths


class ShardWriter:
    """The one writer of shard folders: encoded windows collect in a fixed (rows_per_shard, window) buffer,
    each full buffer becomes the next `part-NNNNN.parquet` (with the rows' `id`s and metadata columns),
    and `finish` writes `_SHARDS.json` last, so a folder with a manifest is complete."""

    def __init__(self, out_dir: AnyPath, window: int, rows_per_shard: int):
        self.out_dir = out_dir
        self.window = window
        self.buffer = np.empty((rows_per_shard, window), dtype=np.uint8)
        self.fill = 0
        self.extra: list[pa.Table] = []
        self.shards: list[dict] = []
        self.rows = 0

    def add(self, rows: np.ndarray, extra: pa.Table, index: np.ndarray | None = None) -> None:
        """Append `rows[index]` (all rows when `index` is None) with their metadata `extra`."""
        count = len(rows) if index is None else len(index)
        done = 0
        while done < count:
            take = min(len(self.buffer) - self.fill, count - done)
            dest = self.buffer[self.fill: self.fill + take]
            # fancy indexing copies only the picked rows; np.take would copy a whole strided view first
            dest[...] = rows[done: done + take] if index is None else rows[index[done: done + take]]
            self.extra.append(extra.slice(done, take))
            self.fill += take
            done += take
            if self.fill == len(self.buffer):
                self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next shard."""
        if not self.fill:
            return
        n = self.fill
        try:
            extra = pa.concat_tables(self.extra)
        except pa.ArrowInvalid as err:
            raise DataError(f"input columns differ between files or batches ({str(err).splitlines()[0]})") from None
        ids = pa.array(np.arange(self.rows, self.rows + n, dtype=np.int64))
        codes = codes_column(self.buffer[:n])
        table = pa.table([ids, codes, *extra.columns], names=["id", "codes", *extra.column_names])
        path = self.out_dir / f"part-{len(self.shards):05d}.parquet"
        write_table_atomic(table, path)
        self.shards.append({"file": path.name, "rows": n, "first_id": self.rows})
        self.rows += n
        self.fill = 0
        self.extra = []

    def finish(self, **fields) -> None:
        """Write the last shard, then the manifest: window, rows, the shards and `fields` (source, ...)."""
        self.flush()
        write_text_atomic(self.out_dir / SHARD_MANIFEST, json.dumps(
            {"window": self.window, "rows": self.rows, "shards": self.shards, **fields}, indent=1))

    def remove_written(self) -> None:
        """Delete the shards written so far (after a failure)."""
        for shard in self.shards:
            (self.out_dir / shard["file"]).unlink(missing_ok=True)


class _RecordTiler:
    """Cut one FASTA record into windows as its sequence lines arrive.

    Only the encoded tail after the next window start (< window bytes) is kept
    between chunks; positions are 0-based within the record.
    """

    def __init__(self, name: str, source: Path, window: int, stride: int, skip_n: bool, writer: ShardWriter):
        self.name, self.source, self.window, self.stride = name, source, window, stride
        self.skip_n, self.writer = skip_n, writer
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.tail = np.empty(0, dtype=np.uint8)
        self.tail_start = 0
        self.data_end = 0
        self.next_start = 0
        self.skipped = 0

    def feed(self, line: bytes) -> None:
        self.pending.append(line)
        self.pending_bytes += len(line)
        if self.pending_bytes >= _CHUNK_BYTES:
            self._process()

    def finish(self) -> int:
        """Tile what is left (a final partial window is dropped); return the N windows skipped."""
        if self.pending:
            self._process()
        return self.skipped

    def _process(self) -> None:
        raw = np.frombuffer(b"".join(self.pending), dtype=np.uint8)
        self.pending, self.pending_bytes = [], 0
        codes = _LUT[raw]
        if (codes == INVALID).any():
            at = int(np.argmax(codes == INVALID))
            raise DataError(f"{self.source} record {self.name!r}: invalid character {chr(raw[at])!r} at position "
                            f"{self.data_end + at} (allowed: {ALLOWED})")
        buf_start = self.tail_start
        buf = np.concatenate([self.tail, codes]) if len(self.tail) else codes
        self.data_end += len(raw)
        if self.next_start + self.window <= self.data_end:
            count = (self.data_end - self.window - self.next_start) // self.stride + 1
            local = (self.next_start - buf_start) + self.stride * np.arange(count, dtype=np.int64)
            self.next_start += count * self.stride
            if self.skip_n and (buf == N_CODE).any():
                n_seen = np.concatenate(([0], np.cumsum(buf == N_CODE, dtype=np.int64)))
                has_n = n_seen[local + self.window] > n_seen[local]
                self.skipped += int(has_n.sum())
                local = local[~has_n]
            starts = local + buf_start
            extra = pa.table({"chrom": pa.repeat(pa.scalar(self.name, pa.string()), len(starts)),
                              "start": starts, "end": starts + self.window})
            self.writer.add(sliding_window_view(buf, self.window), extra, index=local)
        self.tail_start = min(self.next_start, self.data_end)
        self.tail = buf[self.tail_start - buf_start:].copy()


def _shard_fasta(path: Path, writer: ShardWriter, *, window: int, stride: int, skip_n: bool,
                 progress: bool, chroms: Sequence[str] | None = None) -> tuple[int, dict[str, int]]:
    """Stream a FASTA (gzip accepted) into `writer`; the number of N windows skipped, and each tiled record's
    length. With `chroms`, only those records are tiled (the others are read past).

    Record names are the first word of each header and must be unique: they become the
    `chrom` of every window, so a repeated name would give two windows one key.
    """
    skipped, record, sizes, seen = 0, None, {}, set()
    with tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc="shard", disable=not progress) as bar:
        for line in iter_lines(path, on_progress=lambda done: bar.update(done - bar.n)):
            if not line:
                continue
            if line.startswith(b">"):
                if record not in (None, _SKIPPED):
                    skipped += record.finish()
                    sizes[record.name] = record.data_end
                tokens = line[1:].split()
                name = tokens[0].decode("utf-8", "replace") if tokens else f"record{len(seen)}"
                if name in seen:
                    raise DataError(f"{path}: record name {name!r} appears twice; windows are keyed by "
                                    f"(chrom, start, end), so record names must be unique")
                seen.add(name)
                record = _RecordTiler(name, path, window, stride, skip_n, writer) \
                    if chroms is None or name in chroms else _SKIPPED
            elif record is None:
                raise DataError(f"{path}: sequence data before the first '>' header")
            elif record is not _SKIPPED:
                record.feed(line)
        if record not in (None, _SKIPPED):
            skipped += record.finish()
            sizes[record.name] = record.data_end
    if not seen:
        raise DataError(f"{path}: no FASTA records (no '>' header)")
    missing = [c for c in chroms or () if c not in seen]
    if missing:
        raise DataError(f"--chroms: {', '.join(missing)} not in {path} (its records: {', '.join(sorted(seen)[:6])}"
                        f"{', ...' if len(seen) > 6 else ''})")
    return skipped, sizes


def _batch_codes(batch: pa.RecordBatch, source: str, window: int, row_offset: int) -> np.ndarray:
    """(rows, window) uint8 codes of a batch, from its `codes` or else its `sequence` column."""
    if CODES in batch.schema.names:
        column = batch.column(CODES)
        if not pa.types.is_fixed_size_binary(column.type) or column.type.byte_width != window:
            raise DataError(f"{source}: field 'codes' must be fixed_size_binary[{window}], found {column.type}")
        if column.null_count:
            row = int(np.argmax(np.asarray(column.is_null())))
            raise DataError(f"{source} row {row + row_offset}: field 'codes' is empty")
        codes, _ = column_codes(column, window)
        bad = (codes > N_CODE).any(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{source} row {row + row_offset}: field 'codes' holds a value above {N_CODE}")
        return codes
    column = batch.column("sequence")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{source}: field 'sequence' must be text, found {column.type}")
    lengths = pc.binary_length(column).fill_null(window).to_numpy()
    if (lengths != window).any():
        row = int(np.argmax(lengths != window))
        raise DataError(f"{source} row {row + row_offset}: field 'sequence' has length {lengths[row]}, "
                        f"expected the window {window}")
    return encode_column(column, source=source, row_offset=row_offset)


def _shard_tables(batches: Iterator[tuple[str, pa.RecordBatch]], writer: ShardWriter, *, window: int,
                  total: int | None, progress: bool) -> None:
    """Encode table batches and carry every column but `id`, `codes` and `sequence` through."""
    current, row = None, 0
    with tqdm(total=total, unit="rows", unit_scale=True, desc="shard", disable=not progress) as bar:
        for source, batch in batches:
            if source != current:
                current, row = source, 0
            if batch.num_rows:
                codes = _batch_codes(batch, source, window, row)
                extra = pa.Table.from_batches([batch]).drop_columns(
                    [c for c in RESERVED_COLUMNS if c in batch.schema.names])
                writer.add(codes, extra)
            row += batch.num_rows
            bar.update(batch.num_rows)


def prepare_out_dir(out_dir: AnyPath) -> None:
    """Refuse a directory holding another run's shards; clear an empty manifest and orphaned parts."""
    if (out_dir / SHARD_MANIFEST).exists():
        if read_shard_manifest(out_dir)["shards"]:
            raise DataError(f"{out_dir}: already holds shards ({SHARD_MANIFEST}); "
                            f"use a new directory or remove the old shards first")
        (out_dir / SHARD_MANIFEST).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    for orphan in out_dir.glob("part-*.parquet"):
        if _PART.fullmatch(orphan.name):
            orphan.unlink()


def shard_input(src: str | Path, out_dir: str | Path, *, window: int = 200, stride: int | None = None,
                rows_per_shard: int = 100_000, n_policy: str = "skip", fasta: str | Path | None = None,
                center: str = "summit", off_end: str = "pad", chrom_map: str = "none",
                chroms: Sequence[str] | None = None, progress: bool = False) -> ShardSummary:
    """Stream a FASTA, CSV/TSV or Parquet input into fixed-window Parquet shards, or the regions of a
    BED/narrowPeak file (with the genome `fasta`) into one window each (`data.regions`).

    Parameters
    ----------
    src : str or Path
        FASTA (`.fa/.fasta/.fna`), CSV/TSV (`.csv/.tsv`, with a `sequence` column), BED or narrowPeak
        (`.bed/.narrowPeak/.broadPeak`, with `fasta`), each optionally gzipped; or a Parquet file or
        directory with a `sequence` (text) or `codes` (fixed-size binary) column.
    out_dir : str or Path
        Local folder or object-store URL (gs://, s3://). Receives `part-NNNNN.parquet` shards and then `_SHARDS.json`. A directory whose
        manifest lists shards is refused; orphaned parts of an unfinished run are removed.
    window : int
        Bases per row. FASTA records are tiled into windows of this size; CSV/Parquet
        sequences must have exactly this length.
    stride : int, optional
        Step between FASTA window starts; defaults to `window`. A final partial window is dropped.
    rows_per_shard : int
        Most rows in one shard (and the size of the in-memory row buffer).
    n_policy : str
        FASTA windows holding an N (IUPAC ambiguity codes count as N): "skip" them
        (counted in `skipped_n`) or "keep" them with code 4. CSV/Parquet rows always keep N.
    progress : bool
        Show a progress bar (bytes for FASTA, rows otherwise).

    Returns
    -------
    ShardSummary

    Notes
    -----
    Shard columns: `id` (int64, row number 0..N-1 over the written rows in input order),
    `codes` (fixed_size_binary[window] of uint8 codes A=0, C=1, G=2, T=3, N=4), then
    `chrom`, `start`, `end` (0-based, half-open) for FASTA, or every input column but
    `sequence`, `codes` and `id` (an input `id` is replaced) for CSV/Parquet. Invalid
    characters raise DataError naming the file and record/row and position, and the
    shards already written are removed, so a failed run leaves no manifest.
    """
    src, out_dir = Path(src), as_path(out_dir)
    if n_policy not in SHARD_N_POLICIES:
        raise DataError(f"n_policy must be one of {SHARD_N_POLICIES}, got {n_policy!r}")
    stride = window if stride is None else stride
    for name, value in (("window", window), ("stride", stride), ("rows_per_shard", rows_per_shard)):
        if value < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not src.exists():
        raise DataError(f"{src}: no such file or directory")
    from tfbind_dist.data.regions import is_regions, shard_regions

    if is_regions(src):
        if fasta is None:
            raise DataError(f"{src}: regions need the genome they lie on: pass --fasta GENOME.fa")
        return shard_regions(src, fasta, out_dir, window=window, center=center, off_end=off_end,
                             chrom_map=chrom_map, rows_per_shard=rows_per_shard, progress=progress)
    if fasta is not None:
        raise DataError(f"--fasta {fasta}: only regions (BED/narrowPeak) are read from a genome; {src} is not one")
    kind = input_kind(src)
    if chroms is not None and kind != "fasta":
        raise DataError(f"--chroms: only a FASTA's records can be chosen; {src} is not a FASTA")
    if kind == "text":
        raise DataError(f"{src}: plain text cannot be sharded; use FASTA, CSV/TSV or Parquet")
    if src.is_dir() and not is_remote(out_dir) and src.resolve() == out_dir.resolve():
        raise DataError(f"{out_dir}: output directory is the input directory")
    prepare_out_dir(out_dir)
    writer = ShardWriter(out_dir, window, rows_per_shard)
    skipped, sizes = 0, None
    try:
        if kind == "fasta":
            skipped, sizes = _shard_fasta(src, writer, window=window, stride=stride, skip_n=n_policy == "skip",
                                          progress=progress, chroms=chroms)
        elif kind == "csv":
            _shard_tables(csv_batches(src), writer, window=window, total=None, progress=progress)
        else:
            files = parquet_files(src)
            total = sum(pq.ParquetFile(f).metadata.num_rows for f in files) if progress else None
            _shard_tables(parquet_batches(files), writer, window=window, total=total, progress=progress)
        writer.flush()
        if not writer.rows:
            raise DataError(f"{src}: no {'windows of ' + str(window) + ' bp' if kind == 'fasta' else 'rows'} to shard"
                            + (f" ({skipped} windows contained N; --n-policy keep keeps them)" if skipped else ""))
        fields = {"chrom_sizes": sizes, "kind": "tiles"} if kind == "fasta" else {}
        writer.finish(stride=stride if kind == "fasta" else None, skipped_n=skipped, source=str(src),
                      n_policy=n_policy if kind == "fasta" else "keep", **fields)
    except BaseException:
        writer.remove_written()
        raise
    return ShardSummary(shards=len(writer.shards), rows=writer.rows, skipped_n=skipped, window=window,
                        out_dir=out_dir)


def list_shards(input_dir: AnyPath, length: int) -> dict[str, int]:
    """{shard path or URL: rows} of a shard directory, checked against the models' sequence length.

    With `_SHARDS.json` (written by `tfbind data shard`) exactly the shards it lists are scored,
    so other files in the folder are left alone, and their row counts come from it (no file is
    opened: cheap on object storage). Without one, every visible Parquet file must be a shard
    (an int64 `id` and `codes` or `sequence`).
    """
    if not input_dir.is_dir():
        raise DataError(f"--input {input_dir}: not a directory of shards (make one with `tfbind data shard`)")
    if (input_dir / SHARD_MANIFEST).exists():
        manifest = read_shard_manifest(input_dir)
        if manifest.get("window") not in (None, length):
            raise DataError(f"{input_dir / SHARD_MANIFEST}: windows of {manifest['window']} bp, but the runs were "
                            f"trained on {length}-bp sequences; re-shard with --window {length}")
        return {str(input_dir / shard["file"]): int(shard["rows"]) for shard in manifest["shards"]}
    files = parquet_files(input_dir, what="Parquet shards")
    shards = {}
    for path in files:
        try:
            with open_parquet(path) as meta:
                schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"{path}: cannot read as Parquet ({str(err).splitlines()[0]})") from None
        if ID not in schema.names or not {CODES, SEQUENCE} & set(schema.names):
            raise DataError(f"{path}: not a shard (needs an '{ID}' column and '{CODES}' or '{SEQUENCE}'; found "
                            f"{schema.names})")
        if CODES in schema.names:
            codes_type = schema.field(CODES).type
            if pa.types.is_fixed_size_binary(codes_type) and codes_type.byte_width != length:
                raise DataError(f"{path}: field 'codes' holds {codes_type.byte_width}-bp windows, but the runs were "
                                f"trained on {length}-bp sequences")
        shards[str(path)] = rows
    return shards


def read_shard_manifest(shard_dir: str | Path) -> dict:
    """Load `_SHARDS.json` of a shard directory."""
    path = as_path(shard_dir) / SHARD_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{shard_dir}: no {SHARD_MANIFEST}; not a finished shard directory") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or "shards" not in manifest:
        raise DataError(f"{path}: not a shard manifest")
    return manifest
