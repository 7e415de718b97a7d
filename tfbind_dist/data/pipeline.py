"""grain input pipelines over in-memory TF splits.

Training: a seeded permutation per epoch, repeated forever, cut into batches and
gathered with one numpy fancy-index per batch (about 70x faster than grain's
per-record `.batch()` on 2 cores). Each JAX process reads only its own strided
shard, so the pipeline is multi-host ready. The iterator's state is one integer
(`next_index`), checkpointed with orbax through `grain.checkpoint`.

Evaluation: every row of a split exactly once, in large fixed-size batches, the
tail padded and masked out afterwards.
"""
from __future__ import annotations

import functools
from typing import Iterator

import grain
import numpy as np

from tfbind_dist.data.io import SplitData


class _EpochBatches:
    """Maps a global batch index to the batch of that step: a pure function of (seed, index)."""

    def __init__(self, codes: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        if len(labels) < batch_size:
            raise ValueError(f"the split has {len(labels)} rows, fewer than one batch of {batch_size}")
        self.codes, self.labels = codes, labels
        self.batch_size, self.seed = batch_size, seed
        self.batches_per_epoch = len(labels) // batch_size

    @functools.lru_cache(maxsize=2)
    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))

    def __call__(self, index: int, _unused) -> dict[str, np.ndarray]:
        epoch, within = divmod(index, self.batches_per_epoch)
        rows = self.permutation(epoch)[within * self.batch_size:(within + 1) * self.batch_size]
        return {"codes": self.codes[rows], "labels": self.labels[rows]}


def process_shard(split: SplitData, process_index: int, process_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The strided slice of a split that one JAX process reads."""
    return split.codes[process_index::process_count], split.labels[process_index::process_count]


def train_dataset(split: SplitData, *, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1, prefetch_threads: int = 0) -> grain.IterDataset:
    """Infinite, shuffled stream of this process's batches ({"codes": (b, L) uint8, "labels": (b,) int8}).

    `batch_size` is the per-process batch. Each epoch uses a fresh seeded permutation;
    an incomplete final batch of an epoch is dropped (the next epoch reshuffles).
    """
    codes, labels = process_shard(split, process_index, process_count)
    batches = _EpochBatches(codes, labels, batch_size, seed)
    dataset = grain.MapDataset.range(batches.batches_per_epoch).repeat().map_with_index(batches)
    return dataset.to_iter_dataset(grain.ReadOptions(num_threads=prefetch_threads, prefetch_buffer_size=8))


def eval_batches(split: SplitData, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yield the whole split once, in order, in batches of exactly `batch_size` rows.

    The last batch is padded (one static shape, so one compilation) and every batch
    carries `valid` (bool mask), False on padding rows.
    """
    dataset = grain.MapDataset.range(len(split)).batch(batch_size, drop_remainder=False)
    for rows in dataset:
        pad = batch_size - len(rows)
        padded = np.concatenate([rows, np.zeros(pad, dtype=rows.dtype)]) if pad else rows
        valid = np.arange(batch_size) < len(rows)
        yield {"codes": split.codes[padded], "labels": split.labels[padded], "valid": valid}
