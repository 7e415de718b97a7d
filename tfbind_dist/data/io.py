"""Reading and writing sequence datasets: the chapter's CSV layout, FASTA, and Parquet.

A dataset directory holds one Parquet file per TF and split, `{TF}_{split}.parquet`,
with at least the columns `sequence`, `label`, `transcription_factor`, `subset`.
Every writer goes through `storage.write_table_atomic`, so a failure never leaves a
half-written file behind.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tfbind_dist.registry import SPLITS
from tfbind_dist.data.encoding import encode_bytes
from tfbind_dist.errors import DataError, SequenceError
from tfbind_dist.data.readers import FASTA_SUFFIXES, iter_fasta, read_csv_table
from tfbind_dist.storage import write_table_atomic

__all__ = ["DataError", "SplitData", "encode_column", "validate_table", "load_split", "import_dataset",
           "available_tfs", "find_split_file", "split_path", "sequence_column_strings", "read_fasta_table"]

REQUIRED_COLUMNS = ("sequence", "label", "transcription_factor", "subset")
_CHAPTER_TEXT_COLUMNS = {"transcription_factor": pa.string(), "subset": pa.string()}
_PARQUET_NAME = re.compile(r"^(?P<tf>[A-Za-z0-9]+)_(?P<split>train|valid|test)\.parquet$")
_CHAPTER_NAME = re.compile(r"^(?P<tf>[A-Za-z0-9]+)_(?P<split>train|valid|test)_sequences\.csv(\.gz)?$")


@dataclass(frozen=True)
class SplitData:
    """One TF split in memory: uint8 codes (N, L), int8 labels (N,), and extra columns."""

    codes: np.ndarray
    labels: np.ndarray
    table: pa.Table
    flanked: np.ndarray | None = None  # the stored codes (N, L + 2 flank) when `codes` is their centred window

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def length(self) -> int:
        return self.codes.shape[1]

    def centred(self, flank: int, source: str) -> "SplitData":
        """The split's centred windows (what a model of length L sees), the stored ones kept in `flanked` for
        training's shifts (`data.flank`)."""
        if self.length <= 2 * flank:
            raise DataError(f"{source}: data.flank={flank}, but its sequences are {self.length} bp")
        return SplitData(self.codes[:, flank: self.length - flank], self.labels, self.table, self.codes)


def encode_column(column: pa.ChunkedArray | pa.Array, *, source: str, n_policy: str = "uniform",
                  row_offset: int = 0) -> np.ndarray:
    """Encode an Arrow string column of equal-length sequences to (N, L) codes.

    Reads the column's contiguous byte buffer directly, so no Python string is made.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        row = int(np.argmax(np.asarray(array.is_null())))
        raise DataError(f"{source} row {row + row_offset}: field 'sequence' is empty")
    array = array.cast(pa.large_string()) if array.type != pa.large_string() else array
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset: array.offset + len(array) + 1]
    lengths = np.diff(offsets)
    if (lengths != lengths[0]).any():
        row = int(np.argmax(lengths != lengths[0]))
        raise DataError(
            f"{source} row {row + row_offset}: field 'sequence' has length {lengths[row]}, "
            f"but the first sequence has length {lengths[0]}"
        )
    if lengths[0] == 0:
        raise DataError(f"{source} row {row_offset}: field 'sequence' is empty")
    raw = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
    raw = raw.reshape(len(array), int(lengths[0]))
    try:
        return encode_bytes(raw, n_policy=n_policy)
    except SequenceError as err:
        row = int(str(err).split(":")[0].split()[-1])
        detail = str(err).split(":", 1)[1]
        raise DataError(f"{source} row {row + row_offset}: field 'sequence':{detail}") from None


def validate_table(table: pa.Table, source: str, *, n_policy: str = "uniform") -> SplitData:
    """Check columns, labels and sequences of a TF table and encode it."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {table.column_names}")
    if table.num_rows == 0:
        raise DataError(f"{source}: no rows")
    labels_col = table.column("label")
    if labels_col.null_count:
        row = int(np.argmax(np.asarray(labels_col.is_null())))
        raise DataError(f"{source} row {row}: field 'label' is empty")
    try:
        labels = np.asarray(labels_col.cast(pa.float64()))
    except pa.ArrowInvalid:
        labels = np.array([np.nan] * table.num_rows)
        for i, v in enumerate(labels_col.to_pylist()):
            try:
                labels[i] = float(v)
            except (TypeError, ValueError):
                raise DataError(f"{source} row {i}: field 'label' is {v!r}, expected 0 or 1") from None
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{source} row {row}: field 'label' is {labels_col[row].as_py()!r}, expected 0 or 1")
    sequences = table.column("sequence")
    if not pa.types.is_string(sequences.type) and not pa.types.is_large_string(sequences.type):
        raise DataError(f"{source}: field 'sequence' must be text, found {sequences.type}")
    codes = encode_column(sequences, source=source, n_policy=n_policy)
    table = table.set_column(table.column_names.index("label"), "label", pa.array(labels.astype(np.int8)))
    return SplitData(codes=codes, labels=labels.astype(np.int8), table=table)


def read_fasta_table(path: str | Path, *, tf: str, subset: str, label: int | None = None,
                     label_field: str = "label") -> pa.Table:
    """Read a FASTA into a TF table; the label is `label` or a `label_field=0|1` header token."""
    names, sequences, labels = [], [], []
    for i, (header, seq) in enumerate(iter_fasta(path)):
        value = label
        if value is None:
            match = re.search(rf"(?:^|[\s|;]){re.escape(label_field)}[=:](\S+)", header)
            if not match:
                raise DataError(f"{path} record {header.split()[0]!r}: no '{label_field}=' in header and no --label given")
            value = match.group(1)
        try:
            value = int(value)
        except ValueError:
            value = -1
        if value not in (0, 1):
            raise DataError(f"{path} record {header.split()[0]!r}: field 'label' must be 0 or 1")
        names.append(header.split()[0] if header else f"record{i}")
        sequences.append(seq.upper())
        labels.append(value)
    if not sequences:
        raise DataError(f"{path}: no FASTA records")
    n = len(sequences)
    return pa.table({
        "sequence": sequences, "label": pa.array(labels, pa.int8()),
        "transcription_factor": [tf] * n, "subset": [subset] * n, "name": names,
    })


def split_path(data_dir: str | Path, tf: str, split: str) -> Path:
    return Path(data_dir) / f"{tf}_{split}.parquet"


def find_split_file(data_dir: Path, tf: str, split: str) -> Path:
    for candidate in (split_path(data_dir, tf, split), data_dir / f"{tf}_{split}_sequences.csv",
                      data_dir / f"{tf}_{split}_sequences.csv.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{data_dir}: no {split} split for {tf} (looked for {tf}_{split}.parquet and "
                    f"{tf}_{split}_sequences.csv[.gz])")


def load_split(data_dir: str | Path, tf: str, split: str, *, n_policy: str = "uniform") -> SplitData:
    """Load one TF split from a Parquet dataset dir or a chapter-layout CSV dir."""
    path = find_split_file(Path(data_dir), tf, split)
    table = pq.read_table(path) if path.suffix == ".parquet" else read_csv_table(path, _CHAPTER_TEXT_COLUMNS)
    return validate_table(table, str(path), n_policy=n_policy)


def available_tfs(data_dir: str | Path) -> set[str]:
    """TF names with at least one split file (Parquet or chapter CSV) in a dataset directory."""
    names = set()
    for path in Path(data_dir).iterdir():
        match = _CHAPTER_NAME.match(path.name) or _PARQUET_NAME.match(path.name)
        if match:
            names.add(match["tf"])
    return names


def discover_chapter_files(src: str | Path) -> dict[tuple[str, str], Path]:
    """Map (TF, split) to the chapter CSVs found in a directory."""
    found = {}
    for path in sorted(Path(src).iterdir()):
        match = _CHAPTER_NAME.match(path.name)
        if match:
            found[(match["tf"], match["split"])] = path
    return found


def import_dataset(src: str | Path, out: str | Path, *, tf: str | None = None, split: str | None = None,
                   label: int | None = None, label_field: str = "label", n_policy: str = "uniform") -> list[Path]:
    """Import chapter CSVs (a directory or one file) or a FASTA into a Parquet dataset directory.

    Every input is read and validated before anything is written, and every file is
    written atomically, so a bad input leaves the output directory untouched.
    """
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: no such file or directory")
    tables: dict[tuple[str, str], pa.Table] = {}
    if src.is_dir():
        files = discover_chapter_files(src)
        if not files:
            raise DataError(f"{src}: no files named {{TF}}_{{train,valid,test}}_sequences.csv[.gz]")
        for key, path in files.items():
            tables[key] = validate_table(read_csv_table(path, _CHAPTER_TEXT_COLUMNS), str(path), n_policy=n_policy).table
    elif src.name.lower().removesuffix(".gz").endswith(FASTA_SUFFIXES):
        if not tf or not split:
            raise DataError(f"{src}: FASTA import needs --tf and --split")
        table = read_fasta_table(src, tf=tf, subset=split, label=label, label_field=label_field)
        tables[(tf, split)] = validate_table(table, str(src), n_policy=n_policy).table
    else:
        match = _CHAPTER_NAME.match(src.name)
        key = (tf or (match["tf"] if match else None), split or (match["split"] if match else None))
        if None in key:
            raise DataError(f"{src}: cannot tell TF and split from the name; pass --tf and --split")
        tables[key] = validate_table(read_csv_table(src, _CHAPTER_TEXT_COLUMNS), str(src), n_policy=n_policy).table
    written = []
    for (tf_name, split_name), table in sorted(tables.items()):
        if split_name not in SPLITS:
            raise DataError(f"{src}: unknown split {split_name!r}")
        path = split_path(out, tf_name, split_name)
        write_table_atomic(table, path)
        written.append(path)
    return written


def sequence_column_strings(table: pa.Table) -> list[str]:
    return pc.cast(table.column("sequence"), pa.string()).to_pylist()
