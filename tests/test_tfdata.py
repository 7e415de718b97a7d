"""The optional tf.data loader: same rows per epoch as grain, and resumable."""
import numpy as np
import pytest

from test_pipeline import _ids, _split
from tfbind_dist import config as C
from tfbind_dist.data.pipeline import train_dataset
from tfbind_dist.data.tfdata import TFDataTrainIterator
from tfbind_dist.training.loop import train_and_evaluate

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("n,batch", [(100, 10), (103, 10)])
def test_each_epoch_holds_the_same_rows_as_grain(n, batch):
    split = _split(n=n)
    tf_it = TFDataTrainIterator(split.codes, split.labels, batch_size=batch, seed=3)
    grain_it = iter(train_dataset(split, batch_size=batch, seed=3))
    per_epoch = n // batch
    for _ in range(2):
        tf_rows = np.concatenate([_ids(next(tf_it)) for _ in range(per_epoch)])
        grain_rows = np.concatenate([_ids(next(grain_it)) for _ in range(per_epoch)])
        assert len(set(tf_rows)) == len(tf_rows) == len(grain_rows) == per_epoch * batch
        if n % batch == 0:
            assert sorted(tf_rows) == sorted(grain_rows) == list(range(n))


def test_tfdata_state_restores_exactly():
    split = _split(n=100)
    it = TFDataTrainIterator(split.codes, split.labels, batch_size=16, seed=5)
    for _ in range(8):
        next(it)
    state = it.get_state()
    expected = [_ids(next(it)) for _ in range(4)]
    again = TFDataTrainIterator(split.codes, split.labels, batch_size=16, seed=5)
    again.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(_ids(next(again)), want)


@pytest.mark.slow
def test_training_with_the_tfdata_loader_resumes(synth_dir, tmp_path):
    cfg = C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "data.path": str(synth_dir), "data.loader": "tfdata",
                                           "train.steps": 20, "train.eval_every": 10})
    straight = train_and_evaluate(cfg, tmp_path / "a", progress=False)
    train_and_evaluate(C.with_overrides(cfg, {"train.halt_after": 10}), tmp_path / "b", progress=False)
    resumed = train_and_evaluate(cfg, tmp_path / "b", progress=False)
    assert resumed["test_auroc"] == pytest.approx(straight["test_auroc"], abs=1e-6)
