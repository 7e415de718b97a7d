"""How a model family declares its split into stages and a head, for exact fast ISM.

Each family in `families.py` has an `ism_split(variables)` method returning one of the
split types below (or None, and `interpret.ism` falls back to the reference kernel). The
split names the parameters by the family's own layout, next to the family's definition,
so `interpret.ism` never guesses from Flax's generated parameter names.

- `ConvStemSplit`: conv stages (SAME conv -> elementwise -> max-pool) feeding a flattened
  head (chapter 3's CNNs and conv/transformer family).
- `MotifPoolSplit`: one conv stage whose activations are averaged over the window
  ("composition") and max-pooled into a second conv stage, whose output is pooled globally
  (max and mean) into a small head; optionally averaged with the reverse-complement strand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as nn
import jax

Params = dict[str, Any]


@dataclass(frozen=True)
class ConvStage:
    """A SAME conv's linear part, then elementwise ops (per channel), then a max-pool of `pool` (1: none)."""

    kernel: jax.Array  # (k, c_in, c_out)
    bias: jax.Array
    post: Callable[[jax.Array], jax.Array]
    pool: int = 2

    @property
    def width(self) -> int:
        return self.kernel.shape[0]


@dataclass(frozen=True)
class ConvStemSplit:
    """Conv stages, then a head on the flattened stem output."""

    stages: tuple[ConvStage, ...]
    first_dense: tuple[jax.Array, jax.Array] | None  # (kernel (L'*C, H), bias) right after the stem, or None
    after_first_dense: Callable[[jax.Array], jax.Array] | None  # (M, H) pre-activation -> (M,) logits
    head: Callable[[jax.Array], jax.Array]  # (M, L', C) stem output -> (M,) logits


@dataclass(frozen=True)
class MotifPoolSplit:
    """motif stage (mean over the window, max-pool) -> pooled stage (global max and mean) -> head."""

    motif: ConvStage  # its post is the motif activation; `pool` feeds the second stage
    pooled: ConvStage  # pool 1: pooled globally
    head: Callable[[jax.Array], jax.Array]  # (M, F1 + 2 F2) [composition, max, mean] -> (M,) logits
    strand_average: bool


def batch_norm(params: Params, stats: Params) -> Callable[[jax.Array], jax.Array]:
    """Inference BatchNorm with the given parameters and running statistics."""
    module = nn.BatchNorm(use_running_average=True)
    return lambda x: module.apply({"params": params, "batch_stats": stats}, x)


def dense(params: Params) -> Callable[[jax.Array], jax.Array]:
    return lambda x: nn.Dense(params["kernel"].shape[1]).apply({"params": params}, x)


def chain(*fns: Callable) -> Callable:
    """Function composition, first to last."""
    def run(x):
        for fn in fns:
            x = fn(x)
        return x

    return run


def conv_stage(params: Params, post: Callable, pool: int = 2) -> ConvStage:
    return ConvStage(params["kernel"], params["bias"], post, pool)
