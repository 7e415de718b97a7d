"""The three model families of chapter 3. Input: (batch, L, 4) one-hot; output: (batch, 1) logits."""
from __future__ import annotations

import flax.linen as nn

from tfbind_dist.models.blocks import ConvBlock, MLPBlock, TransformerBlock, max_pool


class ConvModel(nn.Module):
    """Two conv/GELU/max-pool stages, then Dense(128) -> Dense(64) -> Dense(1)."""

    conv_filters: int = 64
    kernel_size: int = 10
    dense_units: int = 128

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        for _ in range(2):
            x = nn.Conv(self.conv_filters, kernel_size=(self.kernel_size,), padding="SAME")(x)
            x = max_pool(nn.gelu(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.gelu(nn.Dense(self.dense_units)(x))
        x = nn.gelu(nn.Dense(self.dense_units // 2)(x))
        return nn.Dense(1)(x)


class ConvModelV2(nn.Module):
    """ConvModel with BatchNorm (conv->BN->GELU, then conv->GELU->BN) and dropout after each hidden dense."""

    conv_filters: int = 64
    kernel_size: int = 10
    dense_units: int = 128
    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        bn = lambda: nn.BatchNorm(use_running_average=not is_training)  # noqa: E731
        conv = lambda: nn.Conv(self.conv_filters, kernel_size=(self.kernel_size,), padding="SAME")  # noqa: E731
        x = max_pool(nn.gelu(bn()(conv()(x))))
        x = max_pool(bn()(nn.gelu(conv()(x))))
        x = x.reshape((x.shape[0], -1))
        for units in (self.dense_units, self.dense_units // 2):
            x = nn.gelu(nn.Dense(units)(x))
            x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not is_training)
        return nn.Dense(1)(x)


class ConvTransformerModel(nn.Module):
    """ConvBlocks, optional TransformerBlocks, then MLPBlocks of dense_units // (i + 1)."""

    num_conv_blocks: int = 2
    conv_filters: int = 64
    kernel_size: int = 10
    num_mlp_blocks: int = 2
    dense_units: int = 128
    dropout_rate: float = 0.2
    num_transformer_blocks: int = 0
    num_transformer_heads: int = 8
    transformer_dense_units: int = 64

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        for _ in range(self.num_conv_blocks):
            x = ConvBlock(self.conv_filters, self.kernel_size, pool_size=2)(x, is_training)
        for _ in range(self.num_transformer_blocks):
            x = TransformerBlock(
                self.num_transformer_heads, self.transformer_dense_units, self.dropout_rate
            )(x, is_training)
        x = x.reshape((x.shape[0], -1))
        for i in range(self.num_mlp_blocks):
            x = MLPBlock(self.dense_units // (i + 1), self.dropout_rate)(x, is_training)
        return nn.Dense(1)(x)
