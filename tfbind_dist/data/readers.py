"""The one place that opens sequence files: FASTA, CSV/TSV, Parquet and plain text, gzip accepted.

Used by `predict`, `explain`, `data import` and `data shard`. Readers stream (FASTA line by line,
CSV and Parquet in record batches), so a genome never has to fit in memory, and every failure is a
`DataError` naming the file and, where there is one, the record or row (rows are 0-based data rows,
not counting a CSV header). A gzip file is recognised by its magic bytes, whatever its name; a
truncated or corrupt one is reported, not half-read.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO, Callable, Iterator, NamedTuple

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tfbind_dist.errors import DataError
from tfbind_dist.storage import as_path

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_SUFFIXES = (".txt",)
_CSV_BLOCK_BYTES = 1 << 22
_BATCH_ROWS = 65_536
_GZIP_MAGIC = b"\x1f\x8b"


def input_kind(path: str | Path) -> str:
    """'fasta', 'csv', 'parquet' (a file or a directory of files) or 'text', from the name."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if path.is_dir() or name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(FASTA_SUFFIXES):
        return "fasta"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    raise DataError(f"{path}: unknown input kind; expected FASTA ({', '.join(FASTA_SUFFIXES)}), CSV/TSV, "
                    f"Parquet (a file or a directory of files) or .txt (one sequence per line), each optionally .gz")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _gzip_error(path: Path, err: BaseException) -> DataError:
    if isinstance(err, EOFError):
        return DataError(f"{path}: truncated gzip file (it ends before its compressed stream does)")
    return DataError(f"{path}: not a valid gzip file ({str(err).splitlines()[0]})")


def iter_lines(path: str | Path, on_progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Yield the stripped lines of a text file (gzip by magic bytes), reporting bytes read every 4,096 lines."""
    path = Path(path)
    _check_exists(path)
    if path.name.endswith(".gz") and not is_gzip(path):
        raise DataError(f"{path}: named .gz but not gzip-compressed")
    with open(path, "rb") as raw:
        handle: IO[bytes] = gzip.GzipFile(fileobj=raw) if is_gzip(path) else raw
        count = 0
        try:
            for line in handle:
                count += 1
                if on_progress is not None and not count % 4096:
                    on_progress(raw.tell())
                yield line.strip()
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise _gzip_error(path, err) from None
        if on_progress is not None:
            on_progress(raw.tell())


def iter_fasta(path: str | Path) -> Iterator[tuple[str, str]]:
    """Yield (header, sequence) records of a FASTA file; refuses text before the first header."""
    header, chunks = None, []
    for line in iter_lines(path):
        if not line:
            continue
        if line.startswith(b">"):
            if header is not None:
                yield header, "".join(chunks)
            header, chunks = line[1:].decode("utf-8", "replace").strip(), []
        elif header is None:
            raise DataError(f"{path}: sequence data before the first '>' header")
        else:
            chunks.append(line.decode("ascii", "replace"))
    if header is not None:
        yield header, "".join(chunks)


def _csv_reader(path: Path, column_types: dict[str, pa.DataType]):
    _check_exists(path)
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    compression = "gzip" if is_gzip(path) else None
    stream = pa.input_stream(str(path), compression=compression)
    return pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                          parse_options=pacsv.ParseOptions(delimiter=delimiter),
                          convert_options=pacsv.ConvertOptions(column_types=column_types))


def csv_batches(path: str | Path, *, require: str | None = "sequence",
                column_types: dict[str, pa.DataType] | None = None) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Stream a CSV/TSV in record batches (`sequence` and the given columns read as text)."""
    path = Path(path)
    types = {"sequence": pa.string(), **(column_types or {})}
    try:
        reader = _csv_reader(path, types)
        if require and require not in reader.schema.names:
            raise DataError(f"{path}: no '{require}' column; found {reader.schema.names}")
        for batch in reader:
            yield str(path), batch
    except (pa.ArrowInvalid, OSError, EOFError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "Empty CSV file" in message:
            raise DataError(f"{path}: empty file (no header, no rows)") from None
        raise DataError(f"{path}: cannot read as CSV ({message})") from None


def read_csv_table(path: str | Path, column_types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """A whole CSV/TSV as one table (the chapter's split files)."""
    batches = [batch for _, batch in csv_batches(path, require=None, column_types=column_types)]
    if not batches:
        return _csv_reader(Path(path), {"sequence": pa.string(), **(column_types or {})}).schema.empty_table()
    return pa.Table.from_batches(batches)


def parquet_files(path, what: str = "Parquet files") -> list:
    """A Parquet file, or the visible `*.parquet` files of a directory (local or object storage)."""
    path = as_path(path)
    _check_exists(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        raise DataError(f"{path}: no {what}")
    return files


def parquet_batches(files: list[Path], columns=("sequence", "codes")) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Stream Parquet files in record batches; each must hold one of `columns`."""
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
            if not set(columns) & set(parquet.schema_arrow.names):
                raise DataError(f"{file}: no {' or '.join(repr(c) for c in columns)} column; "
                                f"found {parquet.schema_arrow.names}")
            for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
                yield str(file), batch
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{file}: cannot read as Parquet ({str(err).splitlines()[0]})") from None


class Sequences(NamedTuple):
    """Sequences read whole from a file, with a name per sequence for messages and outputs."""

    sequences: list[str]
    names: list[str]


def read_sequences(path: str | Path) -> Sequences:
    """Every sequence of a FASTA (records), CSV/TSV or Parquet (a `sequence` column) or text file (lines).

    Names (for messages and outputs) are `FILE record NAME` for FASTA, `FILE line N` (1-based) for
    text and `FILE row N` for CSV/Parquet (0-based data rows, the header not counted).
    An input without sequences is an error.
    """
    path = Path(path)
    _check_exists(path)
    kind = input_kind(path)
    label = path.name
    if kind == "fasta":
        records = list(iter_fasta(path))
        seqs = [seq for _, seq in records]
        names = [f"{label} record {header.split()[0] if header else i}" for i, (header, _) in enumerate(records)]
    elif kind == "text":
        seqs = [line.decode("ascii", "replace") for line in iter_lines(path) if line]
        names = [f"{label} line {i + 1}" for i in range(len(seqs))]
    else:
        stream = csv_batches(path) if kind == "csv" else parquet_batches(parquet_files(path), columns=("sequence",))
        seqs = []
        for source, batch in stream:
            column = batch.column("sequence")
            if column.null_count:
                row = len(seqs) + next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
                raise DataError(f"{source} row {row}: field 'sequence' is empty")
            seqs.extend(column.cast(pa.string()).to_pylist())
        names = [f"{label} row {i}" for i in range(len(seqs))]
    if not seqs:
        raise DataError(f"{path}: no sequences")
    return Sequences(seqs, names)
