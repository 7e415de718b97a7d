"""The chapter's tf.data loader semantics, for users whose pipelines are TensorFlow.

Install with the `tf` extra (`pip install tfbind-dist[tf]`). Like the grain loader,
each epoch is a fresh seeded shuffle of the whole split (buffer = split size), cut
into full batches, repeated forever and prefetched; so every epoch's batches hold
the same rows as the grain loader's, in a different order.
"""
from __future__ import annotations

import json

import numpy as np

from tfbind_dist.errors import MissingExtra


class TFDataTrainIterator:
    """Infinite batch iterator over a tf.data pipeline, with grain-style get/set_state."""

    def __init__(self, codes: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                 process_index: int = 0, process_count: int = 1):
        try:
            import tensorflow as tf
        except ImportError:
            raise MissingExtra("the tfdata loader needs TensorFlow: pip install 'tfbind-dist[tf]'") from None
        tf.config.set_visible_devices([], "GPU")  # keep TensorFlow off accelerators JAX owns
        self._tf = tf
        self._codes, self._labels = codes, labels
        self._batch_size, self._seed = batch_size, seed
        local = batch_size // process_count
        self._local = (process_index * local, (process_index + 1) * local)  # this process's slice of a batch
        self._next_index = 0
        self._iterator = self._build(skip=0)

    def _build(self, skip: int):
        tf = self._tf
        ds = tf.data.Dataset.from_tensor_slices({"codes": self._codes, "labels": self._labels})
        ds = ds.shuffle(len(self._labels), seed=self._seed, reshuffle_each_iteration=True)
        ds = ds.batch(self._batch_size, drop_remainder=True).repeat().skip(skip)
        lo, hi = self._local
        ds = ds.map(lambda batch: {k: v[lo:hi] for k, v in batch.items()})
        return iter(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        self._next_index += 1
        return next(self._iterator)

    def get_state(self) -> bytes:
        """JSON bytes, the form grain's orbax handler stores for non-grain iterators."""
        return json.dumps({"next_index": self._next_index}).encode()

    def set_state(self, state: bytes) -> None:
        """Reposition by rebuilding the (deterministic, seeded) pipeline and skipping ahead."""
        self._next_index = int(json.loads(state)["next_index"])
        self._iterator = self._build(skip=self._next_index)

    def start_prefetch(self) -> None:
        """Called by grain's checkpoint handler after a restore; tf.data prefetches on its own."""
