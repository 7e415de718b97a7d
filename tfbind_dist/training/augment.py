"""On-device augmentation of training batches of uint8 base codes: pure functions of (key, codes).

Two kinds, both keyed by the step's PRNG key so that a resumed run draws what an uninterrupted one does:
- strand and shift (`strand_and_shift`): a random strand and a shift of up to `jitter` bases per sequence;
- evolution-inspired transformations (`evolve`), after EvoAug (Lee et al. 2023, Genome Biology 24:105):
  random substitutions, deletions, insertions, inversions and translocations, each sequence given a random
  subset of the enabled ones. Lengths stay fixed: a deletion is filled with random bases split over both ends
  (as EvoAug does), an insertion pushes out half its length at each end (EvoAug instead grows every sequence,
  and the model's input, by the largest insertion).

Every output is codes 0-4 (A, C, G, T, N) of the input's shape; random bases are uniform over A, C, G, T.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from tfbind_dist.config import TrainConfig
from tfbind_dist.data.encoding import N_CODE, complement, reverse_complement
from tfbind_dist.errors import ConfigError


def strand_and_shift(codes: jax.Array, key: jax.Array, *, rc: bool, jitter: int, flank: int = 0) -> jax.Array:
    """Random strand and random shift per sequence.

    A shift of s moves every base s positions along the window; the s bases shifted in
    are N (whose one-hot the n_policy decides), so no sequence wraps around. With `flank` F,
    the sequences carry F real bases on each side of the model's window (`data.flank`): the
    shift (at most F) takes real bases from them, and the result is the (B, L - 2F) window.
    """
    rc_key, shift_key = jax.random.split(key)
    batch, length = codes.shape
    if rc:
        flip = jax.random.bernoulli(rc_key, 0.5, (batch, 1))
        codes = jnp.where(flip, reverse_complement(codes), codes)
    if flank:
        shifts = jax.random.randint(shift_key, (batch, 1), -jitter, jitter + 1) if jitter else \
            jnp.zeros((batch, 1), jnp.int32)
        source = jnp.arange(length - 2 * flank)[None, :] + flank - shifts
        return jnp.take_along_axis(codes, source, axis=1).astype(jnp.uint8)
    if jitter:
        shifts = jax.random.randint(shift_key, (batch, 1), -jitter, jitter + 1)
        source = jnp.arange(length)[None, :] - shifts
        inside = (source >= 0) & (source < length)
        codes = jnp.where(inside, jnp.take_along_axis(codes, jnp.clip(source, 0, length - 1), axis=1), N_CODE)
    return codes.astype(jnp.uint8)


def _random_bases(key, shape):
    return jax.random.randint(key, shape, 0, 4).astype(jnp.uint8)


def _gather_or_random(codes, source, key):
    """out[b, i] = codes[b, source[b, i]], or a random base where source is -1."""
    length = codes.shape[1]
    taken = jnp.take_along_axis(codes, jnp.clip(source, 0, length - 1), axis=1)
    return jnp.where(source >= 0, taken, _random_bases(key, codes.shape)).astype(jnp.uint8)


def _check_size(size: int, length: int, name: str) -> None:
    if size >= length:
        raise ConfigError(f"train.{name} must be smaller than the sequence length {length}, got {size}")


def _random_ranks(key, shape):
    """Each row's positions in a random order: rank r at a position means it was drawn r-th."""
    return jnp.argsort(jnp.argsort(jax.random.uniform(key, shape), axis=1), axis=1)


def substitute(codes, key, fraction: float):
    """Mutate each sequence at round(fraction / 0.75 * L) distinct random positions to random bases (a random
    base equals the old one a quarter of the time, so about `fraction` of the bases change: EvoAug's
    RandomMutation)."""
    batch, length = codes.shape
    count = round(fraction / 0.75 * length)
    where_key, base_key = jax.random.split(key)
    return jnp.where(_random_ranks(where_key, (batch, length)) < count, _random_bases(base_key, codes.shape), codes).astype(jnp.uint8)


def delete(codes, key, max_size: int):
    """Delete a stretch of 0..max_size bases starting in [0, L - max_size]; the gap closes, and random bases
    fill the freed length, half at the start and half at the end (EvoAug's RandomDeletion)."""
    batch, length = codes.shape
    _check_size(max_size, length, "evo_delete_max")
    size_key, at_key, fill_key = jax.random.split(key, 3)
    size = jax.random.randint(size_key, (batch, 1), 0, max_size + 1)
    start = jax.random.randint(at_key, (batch, 1), 0, length - max_size + 1)
    head = size // 2
    i = jnp.arange(length)[None, :]
    source = jnp.where(i < head, -1, jnp.where(i < head + start, i - head,
                                               jnp.where(i < length - (size - head), i - head + size, -1)))
    return _gather_or_random(codes, source, fill_key)


def insert(codes, key, max_size: int):
    """Insert 0..max_size random bases at a random position; to keep the length, half the inserted length is
    pushed out at the start and the rest at the end (EvoAug's RandomInsertion, cropped back to L)."""
    batch, length = codes.shape
    _check_size(max_size, length, "evo_insert_max")
    size_key, at_key, fill_key = jax.random.split(key, 3)
    size = jax.random.randint(size_key, (batch, 1), 0, max_size + 1)
    at = jax.random.randint(at_key, (batch, 1), 0, length)
    full = jnp.arange(length)[None, :] + size // 2  # position in the lengthened sequence
    source = jnp.where(full < at, full, jnp.where(full < at + size, -1, full - size))
    return _gather_or_random(codes, source, fill_key)


def invert(codes, key, max_size: int):
    """Reverse-complement a stretch of 0..max_size bases starting in [0, L - max_size] (EvoAug's
    RandomInversion)."""
    batch, length = codes.shape
    _check_size(max_size, length, "evo_invert_max")
    size_key, at_key = jax.random.split(key)
    size = jax.random.randint(size_key, (batch, 1), 0, max_size + 1)
    start = jax.random.randint(at_key, (batch, 1), 0, length - max_size + 1)
    i = jnp.arange(length)[None, :]
    inside = (i >= start) & (i < start + size)
    mirrored = jnp.take_along_axis(codes, jnp.where(inside, 2 * start + size - 1 - i, i), axis=1)
    return jnp.where(inside, complement(mirrored), codes).astype(jnp.uint8)


def translocate(codes, key, max_shift: int):
    """Cut each sequence in two and swap the pieces: a circular shift by 0..max_shift bases either way
    (EvoAug's RandomTranslocation)."""
    batch, length = codes.shape
    _check_size(max_shift, length, "evo_translocate_max")
    size_key, sign_key = jax.random.split(key)
    shift = jax.random.randint(size_key, (batch, 1), 0, max_shift + 1)
    shift = jnp.where(jax.random.bernoulli(sign_key, 0.5, (batch, 1)), -shift, shift)
    source = (jnp.arange(length)[None, :] - shift) % length
    return jnp.take_along_axis(codes, source, axis=1).astype(jnp.uint8)


# Each transformation with the recipe field of its strength, in the order they are applied.
EVOLUTION_SETTINGS = ((delete, "evo_delete_max"), (insert, "evo_insert_max"), (invert, "evo_invert_max"),
                      (translocate, "evo_translocate_max"), (substitute, "evo_mutate_frac"))


def evolution_ops(train: TrainConfig) -> list[Callable]:
    """The evolution-inspired transformations a recipe enables, in the order they are applied."""
    settings = [(fn, getattr(train, name)) for fn, name in EVOLUTION_SETTINGS]
    return [lambda codes, key, fn=fn, strength=strength: fn(codes, key, strength)
            for fn, strength in settings if strength]


def check_sizes(train: TrainConfig, length: int) -> None:
    """Raise a ConfigError naming the first stretch size that does not fit sequences of `length`."""
    for fn, name in EVOLUTION_SETTINGS:
        if fn is not substitute:
            _check_size(getattr(train, name), length, name)


def evolve(codes, key, ops: list[Callable], max_per_seq: int):
    """Give each sequence between 1 and `max_per_seq` of `ops` (how many, and which, drawn per sequence, as
    EvoAug's soft sampling does), applied in the order of `ops`."""
    if not ops:
        return codes
    batch = codes.shape[0]
    count_key, pick_key, *op_keys = jax.random.split(key, 2 + len(ops))
    how_many = jax.random.randint(count_key, (batch, 1), 1, min(max_per_seq, len(ops)) + 1)
    chosen = _random_ranks(pick_key, (batch, len(ops))) < how_many
    for i, (op, op_key) in enumerate(zip(ops, op_keys)):
        codes = jnp.where(chosen[:, i:i + 1], op(codes, op_key), codes)
    return codes.astype(jnp.uint8)


def augments(train: TrainConfig | None) -> bool:
    """Whether a recipe transforms its training batches at all."""
    return train is not None and bool(train.augment_rc or train.jitter or evolution_ops(train))


def augment_batch(codes, key, train: TrainConfig, flank: int = 0):
    """A training batch as the recipe augments it: strand and shift (from the stored flanks, if any), then the
    evolution-inspired transformations."""
    codes = strand_and_shift(codes, key, rc=train.augment_rc, jitter=train.jitter, flank=flank)
    return evolve(codes, jax.random.fold_in(key, 2), evolution_ops(train), train.evo_max_per_seq)
