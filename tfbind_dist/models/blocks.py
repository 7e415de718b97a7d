"""Flax building blocks shared by the model families (chapter 3's ConvBlock, MLPBlock, TransformerBlock)."""
from __future__ import annotations

import flax.linen as nn


class ConvBlock(nn.Module):
    """Conv (SAME) -> BatchNorm -> GELU -> max-pool."""

    conv_filters: int
    kernel_size: int
    pool_size: int = 2

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        x = nn.Conv(self.conv_filters, kernel_size=(self.kernel_size,), padding="SAME")(x)
        x = nn.BatchNorm(use_running_average=not is_training)(x)
        x = nn.gelu(x)
        return nn.max_pool(x, window_shape=(self.pool_size,), strides=(self.pool_size,))


class MLPBlock(nn.Module):
    """Dense -> GELU -> Dropout."""

    dense_units: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        x = nn.gelu(nn.Dense(self.dense_units)(x))
        return nn.Dropout(rate=self.dropout_rate)(x, deterministic=not is_training)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention and feed-forward, each with a residual; no positional encoding."""

    num_heads: int = 8
    dense_units: int = 64
    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        x = x + nn.SelfAttention(num_heads=self.num_heads)(nn.LayerNorm()(x))
        y = nn.gelu(nn.Dense(self.dense_units)(nn.LayerNorm()(x)))
        y = nn.Dropout(rate=self.dropout_rate)(y, deterministic=not is_training)
        return x + nn.Dense(self.dense_units)(y)
