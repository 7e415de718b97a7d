"""The model families: chapter 3's three, plus MotifPoolModel (the default recipe's).

Input: (batch, L, 4) one-hot in A, C, G, T order; output: (batch, 1) logits.
"""
from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from tfbind_dist.data.encoding import reverse_complement_one_hot
from tfbind_dist.errors import ConfigError
from tfbind_dist.models.blocks import ConvBlock, Dropout, MLPBlock, TransformerBlock, gelu, max_pool
from tfbind_dist.models.splits import ConvStemSplit, MotifPoolSplit, batch_norm, chain, conv_stage, dense


def _conv_dense_split(p, posts) -> ConvStemSplit:
    """ConvModel / ConvModelV2: Conv_0, Conv_1 stages, then Dense_0 -> GELU -> Dense_1 -> GELU -> Dense_2."""
    stages = tuple(conv_stage(p[f"Conv_{i}"], post) for i, post in enumerate(posts))
    after = chain(gelu, dense(p["Dense_1"]), gelu, dense(p["Dense_2"]), lambda z: z[:, 0])
    head = lambda h: after(dense(p["Dense_0"])(h.reshape(h.shape[0], -1)))  # noqa: E731
    return ConvStemSplit(stages, (p["Dense_0"]["kernel"], p["Dense_0"]["bias"]), after, head)


class ConvModel(nn.Module):
    """Two conv/GELU/max-pool stages, then Dense(128) -> Dense(64) -> Dense(1)."""

    conv_filters: int = 64
    kernel_size: int = 10
    dense_units: int = 128

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        for _ in range(2):
            x = nn.Conv(self.conv_filters, kernel_size=(self.kernel_size,), padding="SAME")(x)
            x = max_pool(gelu(x))
        x = x.reshape((x.shape[0], -1))
        x = gelu(nn.Dense(self.dense_units)(x))
        x = gelu(nn.Dense(self.dense_units // 2)(x))
        return nn.Dense(1)(x)

    @nn.nowrap
    def ism_split(self, variables) -> ConvStemSplit:
        return _conv_dense_split(variables["params"], (gelu, gelu))


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
        x = max_pool(gelu(bn()(conv()(x))))
        x = max_pool(bn()(gelu(conv()(x))))
        x = x.reshape((x.shape[0], -1))
        for units in (self.dense_units, self.dense_units // 2):
            x = gelu(nn.Dense(units)(x))
            x = Dropout(rate=self.dropout_rate)(x, deterministic=not is_training)
        return nn.Dense(1)(x)

    @nn.nowrap
    def ism_split(self, variables) -> ConvStemSplit:
        p, s = variables["params"], variables["batch_stats"]
        return _conv_dense_split(p, (chain(batch_norm(p["BatchNorm_0"], s["BatchNorm_0"]), gelu),
                                     chain(gelu, batch_norm(p["BatchNorm_1"], s["BatchNorm_1"]))))


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

    @nn.nowrap
    def ism_split(self, variables) -> ConvStemSplit:
        """Conv blocks as stages; with attention the head runs whole (attention mixes every position)."""
        p, s = variables["params"], variables["batch_stats"]
        blocks = [(p[f"ConvBlock_{i}"], s[f"ConvBlock_{i}"]) for i in range(self.num_conv_blocks)]
        stages = tuple(conv_stage(bp["Conv_0"], chain(batch_norm(bp["BatchNorm_0"], bs["BatchNorm_0"]), gelu))
                       for bp, bs in blocks)
        mlps = [partial(MLPBlock(self.dense_units // (i + 1), self.dropout_rate).apply, {"params": p[f"MLPBlock_{i}"]},
                        is_training=False) for i in range(self.num_mlp_blocks)]
        final = dense(p["Dense_0"])
        transformers = [partial(TransformerBlock(self.num_transformer_heads, self.transformer_dense_units,
                                                 self.dropout_rate).apply,
                                {"params": p[f"TransformerBlock_{i}"]}, is_training=False)
                        for i in range(self.num_transformer_blocks)]
        flat_head = chain(*mlps, final, lambda z: z[:, 0])
        head = chain(*transformers, lambda h: h.reshape(h.shape[0], -1), flat_head)
        if transformers:
            return ConvStemSplit(stages, None, None, head)
        if mlps:
            first = p["MLPBlock_0"]["Dense_0"]
            after = chain(gelu, *mlps[1:], final, lambda z: z[:, 0])
        else:
            first, after = p["Dense_0"], (lambda z: z[:, 0])
        return ConvStemSplit(stages, (first["kernel"], first["bias"]), after, head)


ACTIVATIONS = {"relu": nn.relu, "gelu": gelu, "exp": jnp.exp}


class _MotifPoolTrunk(nn.Module):
    conv_filters: int
    kernel_size: int
    conv2_filters: int
    conv2_kernel_size: int
    first_pool: int
    activation: str
    dense_units: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x, is_training: bool):
        bn = lambda: nn.BatchNorm(use_running_average=not is_training)  # noqa: E731
        drop = lambda r: Dropout(rate=r, deterministic=not is_training)  # noqa: E731
        x = nn.Conv(self.conv_filters, kernel_size=(self.kernel_size,), padding="SAME")(x)
        motifs = ACTIVATIONS[self.activation](bn()(x))
        composition = motifs.mean(axis=-2)  # how much of each motif-like word the window holds
        x = drop(self.dropout_rate / 2)(max_pool(motifs, self.first_pool))
        x = nn.relu(bn()(nn.Conv(self.conv2_filters, kernel_size=(self.conv2_kernel_size,), padding="SAME")(x)))
        x = jnp.concatenate([composition, x.max(axis=-2), x.mean(axis=-2)], axis=-1)
        x = drop(self.dropout_rate)(x)
        x = drop(self.dropout_rate)(nn.relu(bn()(nn.Dense(self.dense_units)(x))))
        return nn.Dense(1)(x)


class MotifPoolModel(nn.Module):
    """Wide first-layer motif filters, a second conv stage, then global pooling into a small head.

    The head sees the first layer's mean activation (sequence composition, what a k-mer model
    uses) next to the second stage's global max and mean (motif presence and count), so
    position within the window does not matter. With `strand_average`, the logit is the mean
    over the sequence and its reverse complement (same weights), so both strands score alike.
    """

    conv_filters: int = 128
    kernel_size: int = 11
    conv2_filters: int = 128
    conv2_kernel_size: int = 7
    first_pool: int = 4
    activation: str = "relu"  # relu | gelu | exp
    dense_units: int = 128
    dropout_rate: float = 0.2
    strand_average: bool = True

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        trunk = _MotifPoolTrunk(self.conv_filters, self.kernel_size, self.conv2_filters, self.conv2_kernel_size,
                                self.first_pool, self.activation, self.dense_units, self.dropout_rate)
        logits = trunk(x, is_training)
        if self.strand_average:
            logits = (logits + trunk(reverse_complement_one_hot(x), is_training)) / 2
        return logits

    @nn.nowrap
    def ism_split(self, variables) -> MotifPoolSplit:
        p, s = variables["params"]["_MotifPoolTrunk_0"], variables["batch_stats"]["_MotifPoolTrunk_0"]
        bn = lambda i: batch_norm(p[f"BatchNorm_{i}"], s[f"BatchNorm_{i}"])  # noqa: E731
        motif = conv_stage(p["Conv_0"], chain(bn(0), ACTIVATIONS[self.activation]), self.first_pool)
        pooled = conv_stage(p["Conv_1"], chain(bn(1), nn.relu), 1)
        head = chain(dense(p["Dense_0"]), bn(2), nn.relu, dense(p["Dense_1"]), lambda z: z[:, 0])
        return MotifPoolSplit(motif, pooled, head, self.strand_average)
