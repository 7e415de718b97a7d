"""Choosing the sequences to explain or search for motifs: one given, a file's, or rows of a run's data split."""
from __future__ import annotations

import numpy as np

from tfbind_dist.config import DataConfig
from tfbind_dist.data.io import sequence_column_strings
from tfbind_dist.data.readers import Sequences, read_sequences
from tfbind_dist.data.sources import load_splits
from tfbind_dist.errors import DataError


def choose_sequences(data: DataConfig, *, sequence: str | None = None, input=None, split: str | None = None,
                     label: int | None = None, index: str | slice | int | None = None) -> Sequences:
    """The sequences named by exactly one source, with a name each (for messages and outputs):

    - `sequence`: one sequence (named "sequence");
    - `input`: every sequence of a FASTA, CSV/TSV/Parquet (`sequence` column) or text file;
    - `split` of the data `data` describes (a run's `config.data`), optionally only `label` 0 or 1,
      and `index` a row (int or "I"), rows ("A:B", a slice) or None for all; rows count after the
      label filter, and are named "valid:4" by their row in the split.
    """
    given = [name for name, value in (("sequence", sequence), ("input", input), ("split", split)) if value is not None]
    if len(given) != 1:
        raise DataError(f"choose the sequences one way: a sequence, an input file or a split (got {given or 'none'})")
    if sequence is not None:
        if not sequence.strip():
            raise DataError("--sequence: empty sequence")
        return Sequences([sequence.strip().upper()], ["sequence"])
    if input is not None:
        found = read_sequences(input)
        return Sequences([s.upper() for s in found.sequences], found.names)
    table = load_splits(data, splits=(split,))[split]
    rows = np.arange(len(table))
    if label is not None:
        rows = rows[table.labels == label]
    if not len(rows):
        raise DataError(f"--split {split}{'' if label is None else f' --label {label}'}: no sequences")
    chosen = rows[_rows(index, len(rows))]
    strings = sequence_column_strings(table.table.take(chosen))
    if data.flank:  # the centred windows the model sees (`data.flank`)
        strings = [s[data.flank: len(s) - data.flank] for s in strings]
    return Sequences(strings, [f"{split}:{i}" for i in chosen])


def _rows(index, count: int):
    """An index into `count` rows from an int, a slice, "I", "A:B" or None (all)."""
    if index is None:
        return slice(None)
    if isinstance(index, str):
        start, colon, stop = index.partition(":")
        try:
            index = slice(int(start) if start else None, int(stop) if stop else None) if colon else int(start)
        except ValueError:
            raise DataError(f"--index {index}: not I or A:B") from None
    where = f"--index {index.start or ''}:{index.stop or ''}" if isinstance(index, slice) else f"--index {index}"
    if isinstance(index, slice):
        if not len(range(count)[index]):
            raise DataError(f"{where}: selects no rows (of the {count} selected by --split/--label)")
        return index
    if not -count <= index < count:
        raise DataError(f"{where}: out of range ({count} rows selected)")
    return [index]
