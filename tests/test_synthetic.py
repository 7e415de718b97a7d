"""Tests for the synthetic JASPAR-planted datasets."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfbind_dist import registry
from tfbind_dist.data import io, jaspar, synthetic
from tfbind_dist.data.encoding import encode, reverse_complement

N_TRAIN = 300
TFS = ("CTCF", "SRF", "ZNF24")


@pytest.fixture(scope="module")
def tables():
    return {tf: synthetic.synthesize_tf(tf, n_train=N_TRAIN, seed=3) for tf in TFS}


def _log_odds(codes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Best-strand log-odds of (N, W) windows under probs (W, 4)."""
    lo = np.log2(probs / 0.25)
    cols = np.arange(probs.shape[0])
    fwd = lo[cols, codes].sum(axis=1)
    rev = lo[cols, reverse_complement(codes)].sum(axis=1)
    return np.maximum(fwd, rev)


def _spans(table: pa.Table) -> tuple[list[list[int]], list[list[int]]]:
    return table.column("motif_starts").to_pylist(), table.column("motif_ends").to_pylist()


def test_motif_ids_cover_all_tfs_and_load_offline():
    assert set(registry.JASPAR_IDS) == set(registry.TFS) == set(synthetic.DIFFICULTY)
    for tf in registry.TFS:
        probs = jaspar.tf_probabilities(tf)
        assert probs.ndim == 2 and probs.shape[1] == 4 and probs.shape[0] >= 6
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
        assert (probs > 0).all()


def test_motif_probabilities_match_jaspar_consensus():
    # CTCF MA0139.2's consensus is GCCACCAGGGGGCGC; MAX's E-box is CACGTG.
    for tf, consensus in (("CTCF", "GCCACCAGGGGGCGC"), ("MAX", "CACGTG")):
        probs = jaspar.tf_probabilities(tf)
        assert "".join("ACGT"[i] for i in probs.argmax(axis=1)) == consensus


def test_motif_probabilities_returns_a_copy():
    probs = jaspar.tf_probabilities("CTCF")
    probs[:] = 0
    assert jaspar.tf_probabilities("CTCF").sum() > 0


def test_unknown_tf_is_rejected():
    with pytest.raises(ValueError, match="unknown TF"):
        synthetic.synthesize_tf("NOPE", n_train=N_TRAIN)


def test_same_seed_identical_other_seed_different(tables):
    again = synthetic.synthesize_tf("CTCF", n_train=N_TRAIN, seed=3)
    other = synthetic.synthesize_tf("CTCF", n_train=N_TRAIN, seed=4)
    for split in registry.SPLITS:
        assert again[split].equals(tables["CTCF"][split])
        assert not other[split].column("sequence").equals(tables["CTCF"][split].column("sequence"))


def test_tfs_and_splits_get_independent_streams(tables):
    # The first 20 bp are pure background, so a shared random stream would show up there.
    def prefixes(tf, split):
        return {s[:20] for s in tables[tf][split].column("sequence").to_pylist()}

    assert not prefixes("CTCF", "train") & prefixes("SRF", "train")
    assert not prefixes("CTCF", "train") & prefixes("CTCF", "valid")


def test_shapes_columns_dtypes(tables):
    valid = max(N_TRAIN // 7, 200)
    sizes = {"train": N_TRAIN, "valid": valid, "test": 2 * valid}
    for tf, splits in tables.items():
        assert set(splits) == set(registry.SPLITS)
        for split, table in splits.items():
            assert table.num_rows == sizes[split]
            schema = table.schema
            assert schema.field("sequence").type == pa.string()
            assert schema.field("label").type == pa.int8()
            assert schema.field("transcription_factor").type == pa.string()
            assert schema.field("subset").type == pa.string()
            assert schema.field("motif_starts").type == pa.list_(pa.int32())
            assert schema.field("motif_ends").type == pa.list_(pa.int32())
            assert table.column("transcription_factor").unique().to_pylist() == [tf]
            assert table.column("subset").unique().to_pylist() == [split]
            sequences = table.column("sequence").to_pylist()
            assert all(len(s) == 200 for s in sequences)
            assert set("".join(sequences)) == set("ACGT")


def test_labels_balanced_and_shuffled(tables):
    for splits in tables.values():
        for table in splits.values():
            labels = np.asarray(table.column("label"))
            assert set(np.unique(labels)) == {0, 1}
            assert labels.sum() == len(labels) // 2
            assert 0 < labels[: len(labels) // 2].mean() < 1  # not sorted by class


def test_gc_content_matched_between_classes():
    # CTCF's motif is GC-rich; without the matched background positives would be ~2% GC-richer.
    table = synthetic.synthesize_tf("CTCF", n_train=2000, seed=1)["train"]
    codes = encode(table.column("sequence").to_pylist())
    gc = np.isin(codes, (1, 2)).mean(axis=1)
    labels = np.asarray(table.column("label"))
    assert abs(gc[labels == 1].mean() - gc[labels == 0].mean()) < 0.01
    assert 0.40 < gc.mean() < 0.50 and gc.std() > 0.04


def test_spans_inside_and_positives_mostly_carry_motif(tables):
    for tf, splits in tables.items():
        width = jaspar.tf_probabilities(tf).shape[0]
        table = splits["train"]
        starts, ends = _spans(table)
        strands = table.column("motif_strand").to_pylist()
        labels = np.asarray(table.column("label"))
        for s, e, st in zip(starts, ends, strands):
            assert len(s) == len(e) == len(st) <= 2
            assert s == sorted(s)
            for a, b in zip(s, e):
                assert 0 <= a < b <= 200 and b - a == width
            assert set(st) <= {"+", "-"}
        n_spans = np.array([len(s) for s in starts])
        carry = (n_spans[labels == 1] > 0).mean()
        # Positives carry a real instance with probability motif_frac; every other row gets at
        # most a partial match with probability P_PARTIAL.
        assert carry >= synthetic.DIFFICULTY[tf].motif_frac - 0.1
        assert (n_spans[labels == 0] > 0).mean() < carry


def test_planted_bases_score_high_under_pwm(tables):
    rng = np.random.default_rng(0)
    for tf, splits in tables.items():
        probs = jaspar.tf_probabilities(tf)
        width = probs.shape[0]
        table = splits["train"]
        codes = encode(table.column("sequence").to_pylist())
        labels = np.asarray(table.column("label"))
        starts, _ = _spans(table)
        rows = [i for i, s in enumerate(starts) if labels[i] == 1 and s]
        windows = np.stack([codes[i, starts[i][0]: starts[i][0] + width] for i in rows])
        random_starts = rng.integers(0, 200 - width + 1, size=2000)
        random_rows = rng.integers(0, len(codes), size=2000)
        random_windows = codes[random_rows[:, None], random_starts[:, None] + np.arange(width)]
        planted = _log_odds(windows, probs)
        background = _log_odds(random_windows, probs)
        assert np.median(planted) > np.quantile(background, 0.99)


def test_planted_mask_marks_exactly_the_spans(tables):
    table = tables["SRF"]["valid"]
    mask = synthetic.planted_mask(table, 200)
    assert mask.shape == (table.num_rows, 200) and mask.dtype == bool
    expected = np.zeros_like(mask)
    for i, (s, e) in enumerate(zip(*_spans(table))):
        for a, b in zip(s, e):
            expected[i, a:b] = True
    np.testing.assert_array_equal(mask, expected)
    assert mask.any() and not mask.all()


def test_planted_mask_handles_empty_and_chunked_tables():
    table = pa.table({
        "motif_starts": pa.chunked_array([pa.array([[]], pa.list_(pa.int32())),
                                          pa.array([[3], [0, 8]], pa.list_(pa.int32()))]),
        "motif_ends": pa.chunked_array([pa.array([[]], pa.list_(pa.int32())),
                                        pa.array([[5], [2, 10]], pa.list_(pa.int32()))]),
    })
    mask = synthetic.planted_mask(table, 10)
    expected = np.zeros((3, 10), dtype=bool)
    expected[1, 3:5] = True
    expected[2, [0, 1, 8, 9]] = True
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(ValueError, match="do not fit"):
        synthetic.planted_mask(table, 9)


def test_too_short_length_is_rejected():
    with pytest.raises(ValueError, match="too short"):
        synthetic.synthesize_tf("REST", n_train=N_TRAIN, length=60)


def test_synthesize_writes_loadable_files(tmp_path, tables):
    out = tmp_path / "synth"
    written = synthetic.synthesize(out, tfs=("CTCF", "SRF"), n_train=N_TRAIN, seed=3)
    expected = [io.split_path(out, tf, split) for tf in ("CTCF", "SRF") for split in registry.SPLITS]
    assert written == expected
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([p.name for p in expected] + ["SYNTHETIC.md"])  # no temp files left
    readme = (out / "SYNTHETIC.md").read_text()
    assert "MA0139.2" in readme and "MA0083.3" in readme and "Seed 3" in readme
    for tf in ("CTCF", "SRF"):
        for split in registry.SPLITS:
            assert pq.read_table(io.split_path(out, tf, split)).equals(tables[tf][split])
            data = io.load_split(out, tf, split)
            assert data.codes.shape == (tables[tf][split].num_rows, 200)
            np.testing.assert_array_equal(data.labels, np.asarray(tables[tf][split].column("label")))


def test_synthesize_writes_nothing_for_unknown_tf(tmp_path):
    with pytest.raises(ValueError, match="unknown TF"):
        synthetic.synthesize(tmp_path / "out", tfs=("CTCF", "NOPE"), n_train=N_TRAIN)
    assert not (tmp_path / "out").exists()
