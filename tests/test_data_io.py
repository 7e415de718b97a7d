"""`tfbind data import` on the real chapter-layout data and on bad inputs (run as a user would)."""
import gzip

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import KOO, run_cli
from tfbind_dist.data import io
from tfbind_dist.storage import write_table_atomic


def test_import_real_koo_data_unchanged(tmp_path):
    proc = run_cli("data", "import", KOO, "--out", tmp_path / "ds", check=True)
    names = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert names == [f"{tf}_{s}.parquet" for tf in ("GABPA", "REST") for s in ("test", "train", "valid")]
    assert len(proc.stdout.splitlines()) == 6
    original = pd.read_csv(KOO / "REST_valid_sequences.csv.gz")
    imported = pq.read_table(tmp_path / "ds" / "REST_valid.parquet").to_pandas()
    assert list(imported.columns[:4]) == ["sequence", "label", "transcription_factor", "subset"]
    assert imported.sequence.tolist() == original.sequence.tolist()
    assert imported.label.tolist() == original.label.tolist()
    split = io.load_split(tmp_path / "ds", "REST", "valid")
    assert split.codes.shape == (1293, 200) and split.labels.sum() == 648


def _write_csv(path, rows, header="sequence,label,transcription_factor,subset"):
    text = header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


GOOD = [("ACGTACGT", 1, "CTCF", "train"), ("TTTTACGA", 0, "CTCF", "train")]


@pytest.mark.parametrize("rows,header,message", [
    ([("ACGTACGT", 1, "train")], "sequence,label,subset", "missing column(s) ['transcription_factor']"),
    (GOOD + [("ACGTACGA", 2, "CTCF", "train")], None, "row 2: field 'label' is 2, expected 0 or 1"),
    (GOOD + [("ACGTACGA", "yes", "CTCF", "train")], None, "row 2: field 'label' is 'yes'"),
    (GOOD + [("ACGTAC", 1, "CTCF", "train")], None, "row 2: field 'sequence' has length 6"),
    (GOOD + [("ACGTACGZ", 1, "CTCF", "train")], None, "row 2: field 'sequence': invalid base 'Z' at position 7"),
    ([], None, "no rows"),
])
def test_bad_inputs_fail_with_one_line_and_write_nothing(tmp_path, rows, header, message):
    src = tmp_path / "src"
    src.mkdir()
    _write_csv(src / "CTCF_valid_sequences.csv", GOOD)  # a good file first: must not be written either
    _write_csv(src / "CTCF_train_sequences.csv.gz", rows, header or "sequence,label,transcription_factor,subset")
    out = tmp_path / "out"
    proc = run_cli("data", "import", src, "--out", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "CTCF_train_sequences.csv.gz" in lines[0], proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "CTCF_train_sequences.csv").write_text("")
    proc = run_cli("data", "import", tmp_path / "CTCF_train_sequences.csv", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "CTCF_train_sequences.csv" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_fasta_import_with_header_labels_and_flag(tmp_path):
    fasta = tmp_path / "peaks.fa"
    fasta.write_text(">r1 label=1\nACGT\nACGT\n>r2 label=0\nttttACGA\n")
    run_cli("data", "import", fasta, "--out", tmp_path / "ds", "--tf", "MAX", "--split", "train", check=True)
    table = pq.read_table(tmp_path / "ds" / "MAX_train.parquet").to_pandas()
    assert table.sequence.tolist() == ["ACGTACGT", "TTTTACGA"] and table.label.tolist() == [1, 0]
    assert table.name.tolist() == ["r1", "r2"]
    (tmp_path / "bad.fa").write_text(">r1\nACGT\n")
    proc = run_cli("data", "import", tmp_path / "bad.fa", "--out", tmp_path / "ds2", "--tf", "MAX", "--split", "train")
    assert proc.returncode == 2 and "record 'r1'" in proc.stderr
    run_cli("data", "import", tmp_path / "bad.fa", "--out", tmp_path / "ds2", "--tf", "MAX", "--split", "train",
            "--label", "1", check=True)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import pyarrow as pa

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", explode)
    with pytest.raises(OSError):
        write_table_atomic(pa.table({"a": [1]}), tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []


def test_load_split_reads_chapter_csv_directly():
    split = io.load_split(KOO, "GABPA", "valid")
    assert split.codes.shape == (1574, 200)
    assert np.isin(split.codes, [0, 1, 2, 3]).all()
