import numpy as np
import pyarrow as pa
import pytest

from tfbind_dist.data import pipeline
from tfbind_dist.data.io import SplitData


def _split(n=100, length=8):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(n, length), dtype=np.uint8)
    codes[:, 0] = np.arange(n) % 4
    labels = (np.arange(n) % 2).astype(np.int8)
    ids = np.arange(n)
    codes = np.concatenate([codes, ids[:, None].astype(np.uint8)], axis=1)  # last column = row id
    return SplitData(codes=codes, labels=labels, table=pa.table({"i": ids}))


def _ids(batch):
    return batch["codes"][:, -1].astype(int)


def test_epochs_cover_each_row_once_and_reshuffle():
    it = iter(pipeline.train_dataset(_split(), batch_size=10, seed=1))
    epoch0 = np.concatenate([_ids(next(it)) for _ in range(10)])
    epoch1 = np.concatenate([_ids(next(it)) for _ in range(10)])
    assert sorted(epoch0) == list(range(100)) and sorted(epoch1) == list(range(100))
    assert not np.array_equal(epoch0, epoch1)


def test_seeded_and_state_restores_exactly():
    ds = pipeline.train_dataset(_split(), batch_size=16, seed=7)
    it = iter(ds)
    for _ in range(9):  # crosses an epoch boundary (6 batches per epoch)
        next(it)
    state = it.get_state()
    expected = [_ids(next(it)) for _ in range(5)]
    again = iter(pipeline.train_dataset(_split(), batch_size=16, seed=7))
    again.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(_ids(next(again)), want)
    other = iter(pipeline.train_dataset(_split(), batch_size=16, seed=8))
    assert not np.array_equal(_ids(next(other)), _ids(next(iter(ds))))


def test_processes_split_each_global_batch_exactly():
    split = _split()
    whole = iter(pipeline.train_dataset(split, batch_size=20, seed=0))
    parts = [iter(pipeline.train_dataset(split, batch_size=20, seed=0, process_index=i, process_count=4))
             for i in range(4)]
    for _ in range(7):  # crosses an epoch boundary
        local = [_ids(next(p)) for p in parts]
        assert all(len(x) == 5 for x in local)
        np.testing.assert_array_equal(np.concatenate(local), _ids(next(whole)))


def test_eval_batches_cover_split_once_with_padding():
    split = _split(n=103)
    batches = list(pipeline.eval_batches(split, batch_size=40))
    assert [len(b["codes"]) for b in batches] == [40, 40, 40]
    assert [int(b["valid"].sum()) for b in batches] == [40, 40, 23]
    ids = np.concatenate([_ids(b)[b["valid"]] for b in batches])
    np.testing.assert_array_equal(ids, np.arange(103) % 256)


def test_too_small_split_is_rejected():
    with pytest.raises(ValueError, match="fewer than one batch"):
        pipeline.train_dataset(_split(n=10), batch_size=32, seed=0)
