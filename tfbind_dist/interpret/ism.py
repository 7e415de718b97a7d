"""In-silico saturation mutagenesis (ISM): reference and fast exact kernels.

Both return, for uint8 codes (B, L), the (B, L, 4) change of the model output
(probability by default, as the chapter) for every single-base substitution
against the unmutated prediction; the identity edit is not computed and its delta
is 0. `importance` sums |delta| over bases.

`ism_reference` runs every mutant through the whole model. `ism_fast` gives the
same numbers with a fraction of the work: a substitution changes one input
position, so each conv stage only needs its activations recomputed on a window
(the conv's change is linear: the one-hot difference times the kernel taps,
added to cached reference activations), and the first dense layer after the
stem is updated by the few changed flattened features (a low-rank update).
For models with attention the whole stem output is spliced and the head runs in
full, since attention mixes every position.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tfbind_dist.data.encoding import N_CODE, one_hot
from tfbind_dist.interpret.outputs import chunked_map, forward_fn, transform
from tfbind_dist.models.blocks import MLPBlock, TransformerBlock, max_pool
from tfbind_dist.models.families import ConvModel, ConvModelV2, ConvTransformerModel

MUTANTS_PER_CHUNK = 4096  # bounds peak memory of both kernels


class ISMResult(NamedTuple):
    """Per-substitution output deltas (B, L, 4), per-position importance (B, L), and reference output (B,)."""

    delta: jax.Array
    importance: jax.Array
    reference: jax.Array


def alternate_codes(codes: jax.Array, num_alts: int) -> jax.Array:
    """(..., L) codes -> (..., L, num_alts) substituted bases.

    With 3 alternates each base is replaced by the other three; with 4 (needed when a
    sequence holds N) every base is tried and the identity is masked out later.
    """
    if num_alts == 4:
        return jnp.broadcast_to(jnp.arange(4, dtype=codes.dtype), (*codes.shape, 4))
    ref = jnp.where(codes == N_CODE, 0, codes)
    return (ref[..., None] + jnp.arange(1, 4, dtype=codes.dtype)) % 4


def _scatter_deltas(alts: jax.Array, values: jax.Array, codes: jax.Array) -> jax.Array:
    """Place (L, A) deltas of alternate bases into (L, 4); identity edits are 0."""
    hits = jax.nn.one_hot(alts, 4, dtype=values.dtype)  # (L, A, 4)
    full = jnp.einsum("la,lab->lb", values, hits)
    return jnp.where(jax.nn.one_hot(codes, 4, dtype=bool), 0.0, full)


def _over_sequences(one_sequence: Callable, codes: jax.Array, num_alts: int) -> ISMResult:
    """Map a per-sequence (delta, reference) kernel over a batch, a bounded number of mutants at a time."""
    chunk = max(1, MUTANTS_PER_CHUNK // (codes.shape[1] * num_alts))
    delta, reference = chunked_map(one_sequence, codes, chunk)
    return ISMResult(delta, jnp.abs(delta).sum(-1), reference)


def _num_alts(codes: np.ndarray | jax.Array) -> int:
    return 4 if bool(np.any(np.asarray(codes) == N_CODE)) else 3


# --------------------------------------------------------------------------- reference


@partial(jax.jit, static_argnames=("module", "n_policy", "output", "num_alts"))
def _ism_reference(module, variables, codes, *, n_policy, output, num_alts):
    f = forward_fn(module, variables, output)
    table = jnp.asarray(one_hot(np.arange(5, dtype=np.uint8), n_policy))
    length = codes.shape[1]
    positions = jnp.arange(length)

    def one_sequence(seq):
        x = table[seq]
        alts = alternate_codes(seq, num_alts)  # (L, A)
        mutants = jnp.broadcast_to(x, (length, num_alts, length, 4))
        mutants = mutants.at[positions, :, positions].set(table[alts])  # (L, A, L, 4)
        values = f(mutants.reshape(-1, length, 4)).reshape(length, num_alts)
        ref = f(x[None])[0]
        return _scatter_deltas(alts, values - ref, seq), ref

    return _over_sequences(one_sequence, codes, num_alts)


def ism_reference(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
                  output: str = "prob") -> ISMResult:
    """ISM by running every substituted sequence through the whole model."""
    codes = jnp.asarray(codes)
    return _ism_reference(module, variables, codes, n_policy=n_policy, output=output, num_alts=_num_alts(codes))


# --------------------------------------------------------------------------- fast


@dataclass(frozen=True)
class ConvStage:
    """One stem stage: SAME conv (linear part) -> elementwise ops -> max-pool 2."""

    kernel: jax.Array  # (k, c_in, c_out)
    bias: jax.Array
    post: Callable[[jax.Array], jax.Array]  # elementwise, per channel (BN/GELU in the model's order)

    @property
    def width(self) -> int:
        return self.kernel.shape[0]


@dataclass(frozen=True)
class Decomposition:
    """A model split into conv stages and a head, for windowed recompute."""

    stages: tuple[ConvStage, ...]
    first_dense: tuple[jax.Array, jax.Array] | None  # (kernel (L'*C, H), bias) right after the stem, or None
    after_first_dense: Callable[[jax.Array], jax.Array] | None  # (M, H) pre-activation -> (M,) logits
    head: Callable[[jax.Array], jax.Array]  # (M, L', C) stem output -> (M,) logits


def _bn(params, stats):
    module = nn.BatchNorm(use_running_average=True)
    return lambda x: module.apply({"params": params, "batch_stats": stats}, x)


def _dense(p):
    return lambda x: nn.Dense(p["kernel"].shape[1]).apply({"params": p}, x)


def _chain(*fns):
    def run(x):
        for fn in fns:
            x = fn(x)
        return x

    return run


def decompose(module: nn.Module, variables: dict[str, Any]) -> Decomposition:
    """Split any of the three model families into stem stages and head functions."""
    p, s = variables["params"], variables.get("batch_stats", {})
    gelu = nn.gelu
    if isinstance(module, (ConvModel, ConvModelV2)):
        if isinstance(module, ConvModel):
            posts = (gelu, gelu)
        else:
            posts = (_chain(_bn(p["BatchNorm_0"], s["BatchNorm_0"]), gelu),
                     _chain(gelu, _bn(p["BatchNorm_1"], s["BatchNorm_1"])))
        stages = tuple(ConvStage(p[f"Conv_{i}"]["kernel"], p[f"Conv_{i}"]["bias"], posts[i]) for i in range(2))
        after = _chain(gelu, _dense(p["Dense_1"]), gelu, _dense(p["Dense_2"]), lambda z: z[:, 0])
        first = (p["Dense_0"]["kernel"], p["Dense_0"]["bias"])
        head = lambda h: after(_dense(p["Dense_0"])(h.reshape(h.shape[0], -1)))  # noqa: E731
        return Decomposition(stages, first, after, head)
    if not isinstance(module, ConvTransformerModel):
        raise TypeError(f"fast ISM does not know {type(module).__name__}")
    m = module
    stages = tuple(
        ConvStage(p[f"ConvBlock_{i}"]["Conv_0"]["kernel"], p[f"ConvBlock_{i}"]["Conv_0"]["bias"],
                  _chain(_bn(p[f"ConvBlock_{i}"]["BatchNorm_0"], s[f"ConvBlock_{i}"]["BatchNorm_0"]), gelu))
        for i in range(m.num_conv_blocks)
    )
    mlps = [partial(MLPBlock(m.dense_units // (i + 1), m.dropout_rate).apply, {"params": p[f"MLPBlock_{i}"]},
                    is_training=False) for i in range(m.num_mlp_blocks)]
    final = _dense(p["Dense_0"])
    transformers = [partial(TransformerBlock(m.num_transformer_heads, m.transformer_dense_units, m.dropout_rate).apply,
                            {"params": p[f"TransformerBlock_{i}"]}, is_training=False)
                    for i in range(m.num_transformer_blocks)]
    flat_head = _chain(*mlps, final, lambda z: z[:, 0])
    head = _chain(*transformers, lambda h: h.reshape(h.shape[0], -1), flat_head)
    if transformers:
        return Decomposition(stages, None, None, head)
    if mlps:
        first_p = p["MLPBlock_0"]["Dense_0"]
        after = _chain(gelu, *mlps[1:], final, lambda z: z[:, 0])
    else:
        first_p = p["Dense_0"]
        after = lambda z: z[:, 0]  # noqa: E731
    return Decomposition(stages, (first_p["kernel"], first_p["bias"]), after, head)


PAD = 32  # padding (even) around cached activations so every window slice stays in bounds


def _conv_same(x, kernel, bias):
    return nn.Conv(kernel.shape[-1], (kernel.shape[0],), padding="SAME").apply(
        {"params": {"kernel": kernel, "bias": bias}}, x)


def _max_pool2(x):
    return max_pool(x, 2)


def _reference_caches(dec: Decomposition, x: jax.Array):
    """Per stage: padded conv outputs (pre-activation) and padded pooled outputs; plus the stem output."""
    convs, pooled = [], []
    h = x
    for stage in dec.stages:
        c = _conv_same(h, stage.kernel, stage.bias)
        h = _max_pool2(stage.post(c))
        convs.append(jnp.pad(c, ((0, 0), (PAD, PAD), (0, 0))))
        pooled.append(jnp.pad(h, ((0, 0), (PAD, PAD), (0, 0))))
    return convs, pooled, h


def _band_matrix(kernel: jax.Array, n_in: int) -> jax.Array:
    """(n_in*C_in, (n_in+k-1)*C_out) matrix mapping an input change on n_in positions to its conv change.

    Input position i and tap t land on output offset i + k - 1 - t; one GEMM per mutant
    replaces n_in shifted accumulations.
    """
    k, c_in, c_out = kernel.shape
    span = n_in + k - 1
    i = np.arange(n_in)[:, None, None]
    o = np.arange(span)[None, :, None]
    t = np.arange(k)[None, None, :]
    select = (t == i + k - 1 - o).astype(np.float32)  # (n_in, span, k)
    band = jnp.einsum("iot,tcd->icod", select, kernel)
    return band.reshape(n_in * c_in, span * c_out)


def _window_delta(stage: ConvStage, band, delta_in, start, conv_ref_pad, pooled_ref_pad, out_len):
    """Propagate input changes on [start, start+n) through one stage, for A alternatives at once.

    delta_in is (A, n, C_in); returns the pooled-output changes (A, n', C) on
    [start', start'+n') (zero outside the sequence) and start'. The reference
    windows are sliced once and shared by the A alternatives.
    """
    alts, n_in = delta_in.shape[:2]
    k = stage.width
    span = n_in + k - 1
    delta_conv = (delta_in.reshape(alts, -1) @ band).reshape(alts, span, -1)
    conv_start = start - (k - 1 - (k - 1) // 2)
    aligned = (conv_start // 2) * 2
    n_conv = 2 * ((span + 2) // 2)
    extra = n_conv - span  # 1 or 2 slots; the change sits at offset 0 or 1 (a select, not a scatter)
    placed = jnp.where(conv_start == aligned, jnp.pad(delta_conv, ((0, 0), (0, extra), (0, 0))),
                       jnp.pad(delta_conv, ((0, 0), (1, extra - 1), (0, 0))))
    conv_mut = jax.lax.dynamic_slice_in_dim(conv_ref_pad, aligned + PAD, n_conv)[None] + placed
    pooled_mut = _max_pool2(stage.post(conv_mut))
    pooled_start = aligned // 2
    pooled_ref = jax.lax.dynamic_slice_in_dim(pooled_ref_pad, pooled_start + PAD, n_conv // 2)
    positions = pooled_start + jnp.arange(n_conv // 2)
    inside = (positions >= 0) & (positions < out_len)
    return jnp.where(inside[None, :, None], pooled_mut - pooled_ref[None], 0.0), pooled_start


def _window_sizes(dec: "Decomposition") -> list[int]:
    """Input window length of each stage for a single-position change."""
    sizes, n = [], 1
    for stage in dec.stages:
        sizes.append(n)
        n = (n + stage.width + 1) // 2
    return sizes


@partial(jax.jit, static_argnames=("module", "n_policy", "output", "num_alts"))
def _ism_fast(module, variables, codes, *, n_policy, output, num_alts):
    dec = decompose(module, variables)
    table = jnp.asarray(one_hot(np.arange(5, dtype=np.uint8), n_policy))
    length = codes.shape[1]
    stage_lengths = [length // 2 ** (i + 1) for i in range(len(dec.stages))]
    bands = [_band_matrix(stage.kernel, n) for stage, n in zip(dec.stages, _window_sizes(dec))]

    def one_sequence(seq):
        x = table[seq][None]
        convs, pooled, stem = _reference_caches(dec, x)
        convs = [c[0] for c in convs]
        pooled = [q[0] for q in pooled]
        stem_flat = stem.reshape(1, -1)
        if dec.first_dense is not None:
            w, b = dec.first_dense
            h_ref = stem_flat @ w + b  # (1, H)
            w_pad = jnp.pad(w.reshape(stem.shape[1], stem.shape[2], -1), ((PAD, PAD), (0, 0), (0, 0)))
            ref_logit = dec.after_first_dense(h_ref)[0]
        else:
            ref_logit = dec.head(stem)[0]
        alts = alternate_codes(seq, num_alts)

        def one_position(position, bases):
            delta = (table[bases] - table[seq[position]])[:, None]  # (A, 1, 4)
            start = position
            for stage, band, conv_ref, pooled_ref, out_len in zip(dec.stages, bands, convs, pooled, stage_lengths):
                delta, start = _window_delta(stage, band, delta, start, conv_ref, pooled_ref, out_len)
            if dec.first_dense is not None:
                w_win = jax.lax.dynamic_slice_in_dim(w_pad, start + PAD, delta.shape[1])
                return jnp.einsum("aic,ich->ah", delta, w_win)
            where = jax.nn.one_hot(start + jnp.arange(delta.shape[1]), stem.shape[1], dtype=delta.dtype)
            return stem + jnp.einsum("il,aic->alc", where, delta)  # splice the window's change into the stem

        changes = jax.vmap(one_position)(jnp.arange(length), alts)  # (L, A, ...)
        changes = changes.reshape(length * num_alts, *changes.shape[2:])
        if dec.first_dense is not None:
            logits = dec.after_first_dense(h_ref + changes)
        else:
            logits = dec.head(changes)
        values = transform(logits, output) - transform(ref_logit, output)
        return _scatter_deltas(alts, values.reshape(length, num_alts), seq), transform(ref_logit, output)

    return _over_sequences(one_sequence, codes, num_alts)


def ism_fast(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
             output: str = "prob") -> ISMResult:
    """Exact ISM by windowed recompute of the conv stem and a low-rank first-dense update."""
    codes = jnp.asarray(codes)
    return _ism_fast(module, variables, codes, n_policy=n_policy, output=output, num_alts=_num_alts(codes))


def has_fast_ism(module: nn.Module) -> bool:
    """Whether `ism_fast` knows this model family (chapter 3's three)."""
    return isinstance(module, (ConvModel, ConvModelV2, ConvTransformerModel))


def ism(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
        output: str = "prob") -> ISMResult:
    """Exact ISM with the fastest kernel that knows `module` (fast, else reference)."""
    kernel = ism_fast if has_fast_ism(module) else ism_reference
    return kernel(module, variables, codes, n_policy=n_policy, output=output)
