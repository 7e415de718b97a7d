"""In-silico saturation mutagenesis (ISM): reference and fast exact kernels.

Both return, for uint8 codes (B, L), the (B, L, 4) change of the model output
(probability by default, as the chapter) for every single-base substitution
against the unmutated prediction; the identity edit is not computed and its delta
is 0. `importance` sums |delta| over bases.

`ism_reference` runs every mutant through the whole model. `ism_fast` gives the
same numbers with a fraction of the work, on the split into stages and head that
the model family declares (`ism_split`, see `models/splits.py`): a substitution
changes one input position, so each conv stage only needs its activations
recomputed on a window (the conv's change is linear: the one-hot difference times
the kernel taps, added to cached reference activations). After a flattened stem
the first dense layer is updated by the few changed features (a low-rank update);
for models with attention the whole stem output is spliced and the head runs in
full, since attention mixes every position. For global pooling (motif_pool) the
window's change moves the means, and the global max combines the window's new
values with the reference maxima before and after it.
"""
from __future__ import annotations

import sys
from functools import cache, partial
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tfbind_dist.data.encoding import N_CODE, one_hot
from tfbind_dist.errors import ConfigError
from tfbind_dist.interpret.outputs import chunked_map, forward_fn, transform
from tfbind_dist.models.blocks import max_pool
from tfbind_dist.models.splits import ConvStage, ConvStemSplit, MotifPoolSplit

MUTANTS_PER_CHUNK = 4096  # bounds peak memory of the fast kernel
# The reference kernel runs whole models on its chunk. At 4,096 mutants per chunk XLA's GPU
# autotuner planned ~114 GB for conv_v2's convolutions on an H200 (512 GB at 16,384) for a program
# that was assigned 288 MiB; at 1,024 it plans within the device (benchmarks/RESULTS.md). 1,024 is
# also as fast or faster on the CPU.
REFERENCE_MUTANTS_PER_CHUNK = 1024


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


def _over_sequences(one_sequence: Callable, codes: jax.Array, num_alts: int,
                    mutants_per_chunk: int = MUTANTS_PER_CHUNK) -> ISMResult:
    """Map a per-sequence (delta, reference) kernel over a batch, a bounded number of mutants at a time."""
    chunk = max(1, mutants_per_chunk // (codes.shape[1] * num_alts))
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

    return _over_sequences(one_sequence, codes, num_alts, REFERENCE_MUTANTS_PER_CHUNK)


def ism_reference(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
                  output: str = "prob") -> ISMResult:
    """ISM by running every substituted sequence through the whole model."""
    codes = jnp.asarray(codes)
    return _ism_reference(module, variables, codes, n_policy=n_policy, output=output, num_alts=_num_alts(codes))


# --------------------------------------------------------------------------- fast


def model_split(module: nn.Module, variables: dict[str, Any]):
    """The split the model family declares (`ism_split`), or None when it declares none."""
    declare = getattr(type(module), "ism_split", None)
    split = declare(module, variables) if declare else None
    if split is not None and max(stage.width + stage.pool for stage in _stages(split)) > PAD:
        return None  # windows wider than the cached padding: the reference kernel is exact for any width
    return split


def _stages(split) -> tuple[ConvStage, ...]:
    return split.stages if isinstance(split, ConvStemSplit) else (split.motif, split.pooled)


PAD = 32  # padding (even) around cached activations so every window slice stays in bounds


def _conv_same(x, kernel, bias):
    return nn.Conv(kernel.shape[-1], (kernel.shape[0],), padding="SAME").apply(
        {"params": {"kernel": kernel, "bias": bias}}, x)


def _pad(x):
    """Pad the length axis (-2) of (..., L, C) by PAD on both sides."""
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(PAD, PAD), (0, 0)])


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


def _window_sizes(stages: tuple[ConvStage, ...]) -> list[int]:
    """Input window length of each stage for a single-position change (its conv span, aligned to its pool)."""
    sizes, n = [], 1
    for stage in stages:
        sizes.append(n)
        n = _aligned_span(n + stage.width - 1, stage.pool) // stage.pool
    return sizes


def _aligned_span(span: int, pool: int) -> int:
    """Length of a pool-aligned window that holds `span` positions starting at any offset."""
    return pool * -(-(span + pool - 1) // pool)


def _conv_window(stage: ConvStage, band, delta_in, start, conv_ref_pad):
    """Post-activation conv outputs of a stage after input changes on [start, start+n), for A alternatives.

    delta_in is (A, n, C_in); returns (A, n_out, C) on [aligned, aligned + n_out), a window
    aligned to the stage's pool that holds every changed conv output, and `aligned`. The conv
    change is linear (`band`); the elementwise ops run on the cached reference plus it.
    """
    alts, n_in = delta_in.shape[:2]
    k, pool = stage.width, stage.pool
    span = n_in + k - 1
    delta_conv = (delta_in.reshape(alts, -1) @ band).reshape(alts, span, -1)
    conv_start = start - (k - 1 - (k - 1) // 2)  # SAME: input i moves outputs i - right_pad .. i + left_pad
    aligned = (conv_start // pool) * pool
    n_out = _aligned_span(span, pool)
    offset = conv_start - aligned  # 0 .. pool-1: a select among static placements, not a scatter
    placed = sum(jnp.where(offset == j, jnp.pad(delta_conv, ((0, 0), (j, n_out - span - j), (0, 0))), 0.0)
                 for j in range(pool))
    conv_mut = jax.lax.dynamic_slice_in_dim(conv_ref_pad, aligned + PAD, n_out)[None] + placed
    return stage.post(conv_mut), aligned


def _inside(start, n: int, length: int) -> jax.Array:
    positions = start + jnp.arange(n)
    return ((positions >= 0) & (positions < length))[None, :, None]


def _pooled_window(stage: ConvStage, post_mut, aligned, pooled_ref_pad, out_len):
    """Change of a stage's pooled output on its window (zero outside the sequence), and the window's start."""
    pooled_mut = max_pool(post_mut, stage.pool)
    start, n = aligned // stage.pool, pooled_mut.shape[1]
    pooled_ref = jax.lax.dynamic_slice_in_dim(pooled_ref_pad, start + PAD, n)
    return jnp.where(_inside(start, n, out_len), pooled_mut - pooled_ref[None], 0.0), start


def _stem_kernel(split: ConvStemSplit, table, codes, num_alts, output):
    """Fast ISM of a ConvStemSplit: windowed stem recompute, then a low-rank first-dense update."""
    length = codes.shape[1]
    stage_lengths = [length // 2 ** (i + 1) for i in range(len(split.stages))]
    bands = [_band_matrix(stage.kernel, n) for stage, n in zip(split.stages, _window_sizes(split.stages))]

    def one_sequence(seq):
        h = table[seq][None]
        convs, pooled = [], []
        for stage in split.stages:
            c = _conv_same(h, stage.kernel, stage.bias)
            h = max_pool(stage.post(c), stage.pool)
            convs.append(_pad(c)[0])
            pooled.append(_pad(h)[0])
        stem = h
        if split.first_dense is not None:
            w, b = split.first_dense
            h_ref = stem.reshape(1, -1) @ w + b  # (1, H)
            w_pad = jnp.pad(w.reshape(stem.shape[1], stem.shape[2], -1), ((PAD, PAD), (0, 0), (0, 0)))
            ref_logit = split.after_first_dense(h_ref)[0]
        else:
            ref_logit = split.head(stem)[0]
        alts = alternate_codes(seq, num_alts)

        def one_position(position, bases):
            delta = (table[bases] - table[seq[position]])[:, None]  # (A, 1, 4)
            start = position
            for stage, band, conv_ref, pooled_ref, out_len in zip(split.stages, bands, convs, pooled, stage_lengths):
                post_mut, aligned = _conv_window(stage, band, delta, start, conv_ref)
                delta, start = _pooled_window(stage, post_mut, aligned, pooled_ref, out_len)
            if split.first_dense is not None:
                w_win = jax.lax.dynamic_slice_in_dim(w_pad, start + PAD, delta.shape[1])
                return jnp.einsum("aic,ich->ah", delta, w_win)
            where = jax.nn.one_hot(start + jnp.arange(delta.shape[1]), stem.shape[1], dtype=delta.dtype)
            return stem + jnp.einsum("il,aic->alc", where, delta)  # splice the window's change into the stem

        changes = jax.vmap(one_position)(jnp.arange(length), alts)  # (L, A, ...)
        changes = changes.reshape(length * num_alts, *changes.shape[2:])
        logits = split.after_first_dense(h_ref + changes) if split.first_dense is not None else split.head(changes)
        values = transform(logits, output) - transform(ref_logit, output)
        return _scatter_deltas(alts, values.reshape(length, num_alts), seq), transform(ref_logit, output)

    return _over_sequences(one_sequence, codes, num_alts)


def _motif_pool_kernel(split: MotifPoolSplit, table, codes, num_alts, output):
    """Fast ISM of a MotifPoolSplit.

    Per strand and substitution: the motif stage is recomputed on the conv window around it;
    the composition (window mean) moves by the window's change; the pooled stage is recomputed
    on the window its changed inputs reach; its global mean moves by the window's change and
    its global max is the max of the window's new values and the reference max outside the
    window (prefix and suffix maxima). The reverse-complement strand sees the mirrored
    position with the complemented base.
    """
    motif, pooled = split.motif, split.pooled
    length = codes.shape[1]
    pooled_len = length // motif.pool
    sizes = _window_sizes((motif, pooled))
    band_motif, band_pooled = _band_matrix(motif.kernel, sizes[0]), _band_matrix(pooled.kernel, sizes[1])

    def strand_caches(x):
        """Reference activations of one strand (L, 4), padded for window slices, and its features."""
        c1 = _conv_same(x[None], motif.kernel, motif.bias)[0]
        m = motif.post(c1)
        p = max_pool(m, motif.pool)
        c2 = _conv_same(p[None], pooled.kernel, pooled.bias)[0]
        y = pooled.post(c2)
        low = jnp.full((1, y.shape[1]), -jnp.inf, y.dtype)
        before = jnp.concatenate([low, jax.lax.cummax(y, axis=0)])  # before[j] = max(y[:j])
        after = jnp.concatenate([jax.lax.cummax(y, axis=0, reverse=True), low])  # after[j] = max(y[j:])
        caches = (_pad(c1), _pad(m), _pad(p), _pad(c2), _pad(y), before, after, m.sum(0), y.sum(0))
        return caches, jnp.concatenate([m.mean(0), y.max(0), y.mean(0)])

    def window_features(caches, delta, position):
        """(A, F) head features after the A input changes `delta` (A, 1, 4) at `position`."""
        c1_pad, m_pad, p_pad, c2_pad, y_pad, before, after, m_sum, y_sum = caches
        m_mut, a1 = _conv_window(motif, band_motif, delta, position, c1_pad)
        m_ref = jax.lax.dynamic_slice_in_dim(m_pad, a1 + PAD, m_mut.shape[1])[None]
        composition = (m_sum + jnp.where(_inside(a1, m_mut.shape[1], length), m_mut - m_ref, 0.0).sum(1)) / length
        p_delta, p_start = _pooled_window(motif, m_mut, a1, p_pad, pooled_len)
        y_mut, a2 = _conv_window(pooled, band_pooled, p_delta, p_start, c2_pad)
        n2 = y_mut.shape[1]
        inside = _inside(a2, n2, pooled_len)
        y_ref = jax.lax.dynamic_slice_in_dim(y_pad, a2 + PAD, n2)[None]
        mean = (y_sum + jnp.where(inside, y_mut - y_ref, 0.0).sum(1)) / pooled_len
        outside = jnp.maximum(before[jnp.clip(a2, 0, pooled_len)], after[jnp.clip(a2 + n2, 0, pooled_len)])
        peak = jnp.maximum(jnp.where(inside, y_mut, -jnp.inf).max(1), outside[None])
        return jnp.concatenate([composition, peak, mean], axis=-1)

    def one_sequence(seq):
        x = table[seq]
        strands = [(strand_caches(x), lambda p: p, lambda d: d)]
        if split.strand_average:  # reverse complement: mirrored position, complemented base
            strands.append((strand_caches(x[::-1, ::-1]), lambda p: length - 1 - p, lambda d: d[..., ::-1]))
        alts = alternate_codes(seq, num_alts)
        logits, ref_logit = 0.0, 0.0
        for (caches, ref_features), mirror, complement in strands:
            def one_position(position, bases, caches=caches, mirror=mirror, complement=complement):
                delta = complement((table[bases] - table[seq[position]])[:, None])  # (A, 1, 4)
                return window_features(caches, delta, mirror(position))

            features = jax.vmap(one_position)(jnp.arange(length), alts)  # (L, A, F)
            logits = logits + split.head(features.reshape(length * num_alts, -1))
            ref_logit = ref_logit + split.head(ref_features[None])[0]
        logits, ref_logit = logits / len(strands), ref_logit / len(strands)
        values = transform(logits, output) - transform(ref_logit, output)
        return _scatter_deltas(alts, values.reshape(length, num_alts), seq), transform(ref_logit, output)

    return _over_sequences(one_sequence, codes, num_alts)


@partial(jax.jit, static_argnames=("module", "n_policy", "output", "num_alts"))
def _ism_fast(module, variables, codes, *, n_policy, output, num_alts):
    split = model_split(module, variables)
    if split is None:
        raise ConfigError(f"fast ISM does not know {type(module).__name__}: it declares no ism_split")
    table = jnp.asarray(one_hot(np.arange(5, dtype=np.uint8), n_policy))
    kernel = _stem_kernel if isinstance(split, ConvStemSplit) else _motif_pool_kernel
    return kernel(split, table, codes, num_alts, output)


def ism_fast(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
             output: str = "prob") -> ISMResult:
    """Exact ISM by windowed recompute of the stages the model family declares (`ism_split`)."""
    codes = jnp.asarray(codes)
    return _ism_fast(module, variables, codes, n_policy=n_policy, output=output, num_alts=_num_alts(codes))


def has_fast_ism(module: nn.Module, variables: dict[str, Any] | None = None) -> bool:
    """Whether `ism_fast` can run `module`: its family declares a split (checked on `variables` when given)."""
    if variables is not None:
        return model_split(module, variables) is not None
    return getattr(type(module), "ism_split", None) is not None


@cache
def _note_fallback(family: str) -> None:
    print(f"tfbind: {family} declares no ism_split; ISM uses the reference kernel (every mutant through "
          "the whole model)", file=sys.stderr)


def ism(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
        output: str = "prob") -> ISMResult:
    """Exact ISM with the fastest kernel that knows `module` (fast, else reference, said once per family)."""
    if has_fast_ism(module, variables):
        return ism_fast(module, variables, codes, n_policy=n_policy, output=output)
    _note_fallback(type(module).__name__)
    return ism_reference(module, variables, codes, n_policy=n_policy, output=output)
