"""Flax building blocks shared by the model families (chapter 3's ConvBlock, MLPBlock, TransformerBlock)."""
from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp


# GELU (tanh form) as one call in the traced program, so DeepLIFT's rescale rule treats it as one
# activation, as tangermeme does a PyTorch GELU module (inlined, it would be split into its product
# x * Φ(x)); compiled the same either way.
gelu = jax.jit(nn.gelu)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x, size: int = 2):
    """Non-overlapping max-pool over the length axis of (..., L, C), dropping a ragged tail.

    Forward is `nn.max_pool` (XLA's reduce-window); the gradient is written as an
    elementwise select, much faster on CPU than XLA's select-and-scatter, which
    matters for input-gradient attribution and training alike.
    """
    return nn.max_pool(x, window_shape=(size,), strides=(size,))


def _max_pool_fwd(x, size):
    y = max_pool(x, size)
    return y, (x, y)


def _max_pool_bwd(size, residuals, g):
    x, y = residuals
    length = y.shape[-2] * size
    winners = x[..., :length, :] == jnp.repeat(y, size, axis=-2)
    first = winners & (jnp.cumsum(winners.reshape(*y.shape[:-2], y.shape[-2], size, y.shape[-1]), axis=-2)
                       .reshape(winners.shape) == 1)  # ties: the first maximum takes the gradient
    grad = jnp.where(first, jnp.repeat(g, size, axis=-2), 0.0).astype(x.dtype)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, x.shape[-2] - length), (0, 0)]
    return (jnp.pad(grad, pad),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


class ConvBlock(nn.Module):
    """Conv (SAME) -> BatchNorm -> GELU -> max-pool."""

    conv_filters: int
    kernel_size: int
    pool_size: int = 2

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        x = nn.Conv(self.conv_filters, kernel_size=(self.kernel_size,), padding="SAME")(x)
        x = nn.BatchNorm(use_running_average=not is_training)(x)
        x = gelu(x)
        return max_pool(x, self.pool_size)


class Dropout(nn.Dropout):
    """`nn.Dropout` whose rate may also be a traced array: in a packed program (`training/packing.py`)
    each member trains with its own dropout rate. A number rate behaves exactly as `nn.Dropout`."""

    def __call__(self, inputs, deterministic: bool | None = None, rng=None):
        if isinstance(self.rate, (int, float)):
            return super().__call__(inputs, deterministic, rng)
        if nn.merge_param("deterministic", self.deterministic, deterministic):
            return inputs
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(rng if rng is not None else self.make_rng(self.rng_collection), p=keep,
                                    shape=inputs.shape)
        return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))


class MLPBlock(nn.Module):
    """Dense -> GELU -> Dropout."""

    dense_units: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        x = gelu(nn.Dense(self.dense_units)(x))
        return Dropout(rate=self.dropout_rate)(x, deterministic=not is_training)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention and feed-forward, each with a residual; no positional encoding."""

    num_heads: int = 8
    dense_units: int = 64
    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        x = x + nn.SelfAttention(num_heads=self.num_heads)(nn.LayerNorm()(x))
        y = gelu(nn.Dense(self.dense_units)(nn.LayerNorm()(x)))
        y = Dropout(rate=self.dropout_rate)(y, deterministic=not is_training)
        return x + nn.Dense(self.dense_units)(y)
