"""Streaming sharding of FASTA, CSV and Parquet inputs (`tfbind data shard`)."""
import gzip
import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfbind_dist.data.io import DataError
from tfbind_dist.data import shard
from tfbind_dist.data.shard import SHARD_MANIFEST, read_shard_manifest, shard_input

CODE = {"A": 0, "C": 1, "G": 2, "T": 3, "N": 4}


def write_fasta(path, records, width=7):
    lines = []
    for header, seq in records:
        lines.append(f">{header}")
        lines += [seq[i: i + width] for i in range(0, len(seq), width)]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def reference_windows(records, window, stride, n_policy):
    """Brute-force tiling: (rows as (chrom, start, end, codes)), skipped count."""
    rows, skipped = [], 0
    for header, seq in records:
        seq = "".join("N" if c in "RYKMSWBDHV" else c for c in seq.upper())
        for start in range(0, len(seq) - window + 1, stride):
            piece = seq[start: start + window]
            if "N" in piece and n_policy == "skip":
                skipped += 1
                continue
            rows.append((header.split()[0], start, start + window, bytes(CODE[c] for c in piece)))
    return rows, skipped


def read_rows(out_dir):
    manifest = read_shard_manifest(out_dir)
    tables = [pq.read_table(out_dir / s["file"]) for s in manifest["shards"]]
    table = pa.concat_tables(tables) if tables else None
    return manifest, tables, table


def random_records(rng, lengths):
    records = []
    for i, n in enumerate(lengths):
        seq = list(rng.choice(list("ACGTacgt"), size=n))
        for pos in rng.choice(n, size=max(1, n // 25), replace=False):
            seq[pos] = rng.choice(list("NnRyKmSwBdHv"))
        records.append((f"rec{i} some description", "".join(seq)))
    return records


@pytest.mark.parametrize("window,stride", [(10, 5), (10, 10), (7, 11), (5, 1)])
@pytest.mark.parametrize("chunk", [3, 16, 1 << 20])
@pytest.mark.parametrize("n_policy", ["skip", "keep"])
def test_fasta_windows_match_brute_force(tmp_path, monkeypatch, window, stride, chunk, n_policy):
    monkeypatch.setattr(shard, "_CHUNK_BYTES", chunk)
    rng = np.random.default_rng(window * 100 + stride)
    records = random_records(rng, [97, 43, 6])  # odd lengths, and a record shorter than a window
    src = tmp_path / "in.fa"
    write_fasta(src, records)
    summary = shard_input(src, tmp_path / "out", window=window, stride=stride, rows_per_shard=7, n_policy=n_policy)
    expected, skipped = reference_windows(records, window, stride, n_policy)
    manifest, _, table = read_rows(tmp_path / "out")
    got = list(zip(table["chrom"].to_pylist(), table["start"].to_pylist(), table["end"].to_pylist(),
                   table["codes"].to_pylist()))
    assert got == expected
    assert table["id"].to_pylist() == list(range(len(expected)))
    assert table.schema.field("codes").type == pa.binary(window)
    assert summary.rows == manifest["rows"] == len(expected)
    assert summary.skipped_n == manifest["skipped_n"] == skipped
    assert (skipped > 0) == (n_policy == "skip")
    assert manifest["stride"] == stride and manifest["window"] == window and manifest["n_policy"] == n_policy


def test_fasta_two_records_window10_stride5(tmp_path):
    records = [("chr1 first", "ACGTACGTAC" "gtacgNACGT" "ACGTACGTAC" "GTRCG"),  # 35 bp; N at 15, IUPAC R at 32
               ("chr2", "TTTTTCCCCCGGGGGAAAAAT")]  # 21 bp: the 1-bp tail is dropped
    src = tmp_path / "two.fa.gz"
    write_fasta(src, records, width=6)
    shard_input(src, tmp_path / "skip", window=10, stride=5)
    _, _, table = read_rows(tmp_path / "skip")
    assert list(zip(table["chrom"].to_pylist(), table["start"].to_pylist())) == [
        ("chr1", 0), ("chr1", 5), ("chr1", 20), ("chr2", 0), ("chr2", 5), ("chr2", 10)]
    assert table["codes"][0].as_py() == bytes([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    assert read_shard_manifest(tmp_path / "skip")["skipped_n"] == 3  # starts 10, 15 (N) and 25 (R)
    summary = shard_input(src, tmp_path / "keep", window=10, stride=5, n_policy="keep")
    _, _, kept = read_rows(tmp_path / "keep")
    assert summary.skipped_n == 0 and kept.num_rows == 9
    assert kept["codes"][2].as_py() == bytes([2, 3, 0, 1, 2, 4, 0, 1, 2, 3])  # soft-masked gtacg, then N
    assert kept["codes"][5].as_py()[7] == 4  # R at 32 is N
    assert kept["end"].to_pylist()[-1] == 20


def test_fasta_chosen_records_only(tmp_path):
    records = [("a", "ACGT" * 10), ("b", "TTTT" * 10), ("c", "GGGG" * 10)]
    src = tmp_path / "three.fa"
    write_fasta(src, records)
    summary = shard_input(src, tmp_path / "b", window=10, chroms=["b"])
    _, _, table = read_rows(tmp_path / "b")
    assert summary.rows == 4 and set(table["chrom"].to_pylist()) == {"b"}
    assert read_shard_manifest(tmp_path / "b")["chrom_sizes"] == {"b": 40}
    with pytest.raises(DataError, match=r"--chroms: z not in .*three.fa \(its records: a, b, c\)"):
        shard_input(src, tmp_path / "z", window=10, chroms=["z"])
    with pytest.raises(DataError, match="only a FASTA's records can be chosen"):
        shard_input(tmp_path / "b" / "part-00000.parquet", tmp_path / "p", window=10, chroms=["b"])


def test_fasta_bad_character_names_record_and_position(tmp_path):
    src = tmp_path / "bad.fa"
    write_fasta(src, [("ok", "ACGT" * 10), ("chrX", "ACGTACGTAC" * 3 + "ACGX" + "ACGT" * 5)], width=9)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"bad\.fa record 'chrX': invalid character 'X' at position 33"):
        shard_input(src, out, window=4, rows_per_shard=2)
    assert not (out / SHARD_MANIFEST).exists()
    assert not list(out.glob("*.parquet"))


def test_fasta_sequence_before_header(tmp_path):
    src = tmp_path / "noheader.fa"
    src.write_text("ACGT\n>r\nACGT\n")
    with pytest.raises(DataError, match="before the first '>' header"):
        shard_input(src, tmp_path / "out", window=4)


def test_rows_per_shard_split_and_manifest(tmp_path):
    src = tmp_path / "g.fna"
    write_fasta(src, [("a", "ACGT" * 60), ("b", "TTGCA" * 21)], width=60)
    summary = shard_input(src, tmp_path / "out", window=8, rows_per_shard=9)
    manifest, tables, table = read_rows(tmp_path / "out")
    assert summary.rows == 30 + 13 and summary.shards == 5
    assert [s["rows"] for s in manifest["shards"]] == [9, 9, 9, 9, 7]
    assert [t.num_rows for t in tables] == [s["rows"] for s in manifest["shards"]]
    assert [s["first_id"] for s in manifest["shards"]] == [0, 9, 18, 27, 36]
    assert [s["file"] for s in manifest["shards"]] == [f"part-{i:05d}.parquet" for i in range(5)]
    for entry, t in zip(manifest["shards"], tables):
        assert t["id"].to_pylist() == list(range(entry["first_id"], entry["first_id"] + entry["rows"]))
    assert table["id"].to_pylist() == list(range(43))
    assert manifest["source"] == str(src) and manifest["rows"] == 43


def test_refuses_existing_shards_but_reuses_empty_manifest(tmp_path):
    src = tmp_path / "g.fa"
    write_fasta(src, [("a", "ACGT" * 5)])
    out = tmp_path / "out"
    shard_input(src, out, window=4)
    with pytest.raises(DataError, match="already holds shards"):
        shard_input(src, out, window=4)
    (out / SHARD_MANIFEST).write_text(json.dumps({"shards": [], "rows": 0}))
    (out / "part-00007.parquet").write_bytes(b"orphan")
    summary = shard_input(src, out, window=5)
    assert summary.rows == 4 and not (out / "part-00007.parquet").exists()
    assert read_shard_manifest(out)["window"] == 5


def test_csv_carries_columns_and_checks_length(tmp_path):
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGTN"), size=12)) for _ in range(25)]
    src = tmp_path / "seqs.csv.gz"
    with gzip.open(src, "wt") as handle:
        handle.write("name,sequence,label\n")
        handle.writelines(f"s{i},{s.lower() if i % 2 else s},{i % 2}\n" for i, s in enumerate(seqs))
    summary = shard_input(src, tmp_path / "out", window=12, rows_per_shard=10, n_policy="skip")
    manifest, _, table = read_rows(tmp_path / "out")
    assert summary.shards == 3 and summary.skipped_n == 0 and manifest["n_policy"] == "keep"
    assert table.column_names == ["id", "codes", "name", "label"]
    assert table["name"].to_pylist() == [f"s{i}" for i in range(25)]
    assert table["label"].to_pylist() == [i % 2 for i in range(25)]
    assert table["codes"].to_pylist() == [bytes(CODE[c] for c in s) for s in seqs]

    bad = tmp_path / "bad.tsv"
    bad.write_text("sequence\tlabel\n" + "ACGTACGTACGT\t1\n" * 3 + "ACGTACGTACG\t0\n")
    with pytest.raises(DataError, match=r"bad\.tsv row 3: field 'sequence' has length 11"):
        shard_input(bad, tmp_path / "out_bad", window=12)
    assert not (tmp_path / "out_bad" / SHARD_MANIFEST).exists()
    bad.write_text("sequence\tlabel\n" + "ACGTACGTACGT\t1\n" * 2 + "ACGTACGTAZGT\t0\n")
    with pytest.raises(DataError, match=r"bad\.tsv row 2: field 'sequence'.*'Z' at position 9"):
        shard_input(bad, tmp_path / "out_bad", window=12)


def test_parquet_reshard_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    seqs = ["".join(rng.choice(list("ACGTN"), size=6)) for _ in range(40)]
    src_dir = tmp_path / "pq"
    src_dir.mkdir()
    pq.write_table(pa.table({"sequence": seqs[:15], "score": np.arange(15.0)}), src_dir / "a.parquet")
    pq.write_table(pa.table({"sequence": seqs[15:], "score": np.arange(15.0, 40.0)}), src_dir / "b.parquet")
    shard_input(src_dir, tmp_path / "s1", window=6, rows_per_shard=16)
    _, _, first = read_rows(tmp_path / "s1")
    assert first["codes"].to_pylist() == [bytes(CODE[c] for c in s) for s in seqs]
    assert first["score"].to_pylist() == list(np.arange(40.0))

    summary = shard_input(tmp_path / "s1", tmp_path / "s2", window=6, rows_per_shard=7)  # from `codes`
    _, _, second = read_rows(tmp_path / "s2")
    assert summary.shards == 6 and second.equals(first)

    with pytest.raises(DataError, match=r"fixed_size_binary\[8\]"):
        shard_input(tmp_path / "s1", tmp_path / "s3", window=8)
    pq.write_table(pa.table({"sequence": ["ACGTAC", "ACG?AC"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet row 1: field 'sequence'.*'\?' at position 3"):
        shard_input(tmp_path / "bad.parquet", tmp_path / "s4", window=6)


def test_rejects_bad_arguments(tmp_path):
    src = tmp_path / "x.fa"
    write_fasta(src, [("a", "ACGT")])
    with pytest.raises(ValueError, match="n_policy"):
        shard_input(src, tmp_path / "o", n_policy="drop")
    with pytest.raises(ValueError, match="stride"):
        shard_input(src, tmp_path / "o", stride=0)
    (tmp_path / "x.txt").write_text("ACGT\n")
    with pytest.raises(DataError, match="plain text cannot be sharded"):
        shard_input(tmp_path / "x.txt", tmp_path / "o")
    (tmp_path / "x.bed").write_text("chr1\t0\t10\n")
    with pytest.raises(DataError, match="regions need the genome they lie on: pass --fasta"):
        shard_input(tmp_path / "x.bed", tmp_path / "o")
    (tmp_path / "x.seqs").write_text("ACGT\n")
    with pytest.raises(DataError, match="unknown input kind"):
        shard_input(tmp_path / "x.seqs", tmp_path / "o")


# Peak RSS of the sharding process itself. ru_maxrss is not used on Linux: across the
# fork/exec of subprocess it keeps the high-water mark of the parent (pytest) image, so
# it would measure the test session; VmHWM belongs to the new process image only.
_MEASURE = textwrap.dedent("""
    import json, re, resource, sys, time
    from tfbind_dist.data.shard import shard_input
    t0 = time.perf_counter()
    s = shard_input(sys.argv[1], sys.argv[2], window=200, stride=200)
    seconds = time.perf_counter() - t0
    try:
        peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
    except OSError:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "rows": s.rows, "skipped": s.skipped_n, "peak_mb": peak_kb / 1024}))
""")


def _random_fasta(path, n_bases, rng):
    """One record of random bases in 60-char lines, with twenty 5 kb N runs."""
    seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=n_bases, dtype=np.uint8)]
    for start in rng.integers(0, n_bases - 5000, size=20):
        seq[start: start + 5000] = ord("N")
    lines = np.full((-(-n_bases // 60), 61), ord("\n"), dtype=np.uint8)  # the last line's unused bytes
    lines[:, :60].flat[:n_bases] = seq                                    # become blank lines
    with open(path, "wb") as handle:
        handle.write(b">chrR random\n")
        handle.write(lines.tobytes())


@pytest.mark.slow
def test_memory_stays_flat_on_large_fasta(tmp_path):
    rng = np.random.default_rng(3)
    results = {}
    for label, size in (("small", 5_000_000), ("large", 50_000_000)):
        src = tmp_path / f"{label}.fa"
        _random_fasta(src, size, rng)
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(src), str(tmp_path / f"out_{label}")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        src.unlink()
    small, large = results["small"], results["large"]
    print(results)
    assert large["rows"] + large["skipped"] == 50_000_000 // 200
    assert 0 < large["skipped"] <= 20 * 26
    assert large["peak_mb"] < 600
    assert large["peak_mb"] - small["peak_mb"] < 60  # measured ~10 MB; a whole-record buffer adds > 100 MB
