"""DeepLIFT/SHAP: DeepLIFT multipliers averaged over dinucleotide-shuffled references.

DeepLIFT explains f(x) - f(r) for a reference r by propagating "multipliers" instead of gradients:
an elementwise nonlinearity y = g(z) uses the secant (g(z) - g(z_r)) / (z - z_r) (the rescale rule),
linear operations pass multipliers as gradients do, so the attributions (x - r) * multiplier sum to
f(x) - f(r) exactly (completeness). Averaged over references drawn as dinucleotide shuffles of x,
this is DeepLIFT/SHAP (Lundberg & Lee 2017), the usual input of TF-MoDISco.

The rules act on the model's jaxpr, so every model family is covered without per-layer code:

- linear primitives (add, dot_general and conv with one input-dependent operand, reshape, sums, ...)
  and `stop_gradient` (an identity here: softmax's max shift must stay attributed) pass through;
- elementwise calls made only of elementwise primitives (`relu`, ...), and unary elementwise
  primitives (exp, tanh, rsqrt, ...), use the rescale rule on the whole call, as tangermeme's
  DeepLIFT does on a PyTorch activation module;
- products of two input-dependent tensors (attention scores, LayerNorm's scaling, GELU's x * Φ(x))
  split their change exactly between the factors (the Shapley value of the two: bilinear, exact);
  other two-input elementwise operations (div, max, ...) likewise by their two-player Shapley value;
- max pooling and global max route the change to the maximum of the input and of the reference
  (the rule of Captum and tangermeme for max pooling).

Where an activation's input barely changes (|z - z_r| < 1e-6), and where a max-pool input does not
change at all, the gradient at x stands in for the secant (tangermeme's thresholds). A primitive
without a rule raises `NotImplementedError` naming it.
"""
from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Literal, jaxpr_as_fun

from tfbind_dist.data.batching import apply_in_batches
from tfbind_dist.data.shuffle import dinucleotide_shuffle
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.interpret.outputs import forward_fn

EPS = 1e-6

LINEAR = {"add", "add_any", "sub", "neg", "reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims",
          "slice", "concatenate", "pad", "reduce_sum", "convert_element_type", "copy", "copy_p", "rev",
          "reduce_precision", "cumsum", "dynamic_slice", "gather", "select_n"}
BILINEAR = {"mul", "dot_general", "conv_general_dilated"}  # linear in each operand
UNARY = {"exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "erf", "erfc", "sqrt", "rsqrt", "cbrt",
         "integer_pow", "square", "abs", "sin", "cos", "tan", "atan", "asinh", "sign"}
BINARY = {"div", "max", "min", "pow", "atan2", "rem"}  # elementwise, nonlinear in both operands
ELEMENTWISE = UNARY | BINARY | {"add", "sub", "neg", "mul", "convert_element_type", "select_n", "gt", "ge", "lt",
                                "le", "eq", "ne", "and", "or", "not", "stop_gradient", "copy", "copy_p",
                                "broadcast_in_dim"}
CALLS = {"jit", "pjit", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "closed_call",
         "remat", "checkpoint"}


def _sub_jaxpr(eqn) -> ClosedJaxpr:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if isinstance(inner, ClosedJaxpr):
            return inner
        if inner is not None and hasattr(inner, "eqns"):
            return ClosedJaxpr(inner, ())
    raise NotImplementedError(f"DeepLIFT: cannot open the call {eqn.primitive.name}")


def _elementwise_call(jaxpr) -> bool:
    """Whether a call is made only of elementwise primitives (an activation function)."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in CALLS:
            if not _elementwise_call(_sub_jaxpr(eqn).jaxpr):
                return False
        elif name not in ELEMENTWISE:
            return False
    return True


def _secant(delta_out, delta_in, derivative, eps=EPS):
    """(delta_out / delta_in) where the input changed by more than eps, else the derivative at x."""
    moved = jnp.abs(delta_in) > eps
    return jnp.where(moved, delta_out / jnp.where(moved, delta_in, 1.0), derivative)


def _rescale(fn, sur, ref):
    """y = fn(z) for one changing input: the value fn(z), the multiplier its secant from the reference."""
    x = jax.lax.stop_gradient(sur)
    value, derivative = jax.jvp(fn, (x,), (jnp.ones_like(x),))  # fn(x) and its elementwise derivative at once
    ref_value = fn(ref)
    slope = jax.lax.stop_gradient(_secant(value - ref_value, x - ref, derivative))
    return ref_value + slope * (sur - ref), ref_value


def _bilinear(fn, a, b, a_ref, b_ref):
    """f(a, b) linear in each: the Shapley split, each factor's change against the mean of the other's two values."""
    sg = jax.lax.stop_gradient
    ref_value = fn(a_ref, b_ref)
    return ref_value + fn(a - a_ref, sg((b + b_ref) / 2)) + fn(sg((a + a_ref) / 2), b - b_ref), ref_value


def _shapley_pair(fn, a, b, a_ref, b_ref):
    """Elementwise f(a, b): each operand's two-player Shapley contribution as a multiplier on its change."""
    sg = jax.lax.stop_gradient
    ax, bx = sg(a), sg(b)
    value, da = jax.jvp(lambda u: fn(u, bx), (ax,), (jnp.ones_like(ax),))  # f(a, b) and df/da at x
    _, db = jax.jvp(lambda u: fn(ax, u), (bx,), (jnp.ones_like(bx),))
    ref_value = fn(a_ref, b_ref)
    part_a = ((fn(ax, b_ref) - ref_value) + (value - fn(a_ref, bx))) / 2
    part_b = (value - ref_value) - part_a
    ma, mb = sg(_secant(part_a, ax - a_ref, da)), sg(_secant(part_b, bx - b_ref, db))
    return ref_value + ma * (a - a_ref) + mb * (b - b_ref), ref_value


def _first_max_mask(x, axes):
    """One-hot (first occurrence) of the maximum of x over `axes`."""
    moved = jnp.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    flat = moved.reshape(*moved.shape[:x.ndim - len(axes)], -1)
    mask = jax.nn.one_hot(jnp.argmax(flat, axis=-1), flat.shape[-1], dtype=x.dtype).reshape(moved.shape)
    return jnp.moveaxis(mask, tuple(range(x.ndim - len(axes), x.ndim)), axes)


def _max_rule(sur, ref, axes):
    """max over `axes`: the change routed to the input's and the reference's maxima (Captum's max-pool rule)."""
    sg = jax.lax.stop_gradient
    x = sg(sur)
    value, ref_value = x.max(axis=axes), ref.max(axis=axes)
    top = jnp.maximum(value, ref_value)
    keep = lambda v: jnp.expand_dims(v, axes)  # noqa: E731
    routed = _first_max_mask(x, axes) * keep(top - ref_value) + _first_max_mask(ref, axes) * keep(value - top)
    # a position's routed change is bounded by its own change: only an exact zero needs the fallback
    multiplier = sg(_secant(routed, x - ref, _first_max_mask(x, axes), eps=0.0))
    return ref_value + (multiplier * (sur - ref)).sum(axis=axes), ref_value


def _max_pool_rule(eqn, sur, ref):
    """Non-overlapping max pooling (window = stride, no padding) as a max over each window."""
    dims, strides = eqn.params["window_dimensions"], eqn.params["window_strides"]
    padding = eqn.params["padding"]
    if tuple(dims) != tuple(strides) or any(p != (0, 0) for p in padding) or \
            any(d != 1 for d in eqn.params.get("base_dilation", (1,) * len(dims))) or \
            any(d != 1 for d in eqn.params.get("window_dilation", (1,) * len(dims))):
        raise NotImplementedError("DeepLIFT: max pooling with overlapping or padded windows")
    cut = tuple(slice(0, (n // d) * d) for n, d in zip(sur.shape, dims))
    shape = [s for n, d in zip(sur.shape, dims) for s in ((n // d), d)]
    axes = tuple(2 * i + 1 for i in range(len(dims)))
    return _max_rule(sur[cut].reshape(shape), ref[cut].reshape(shape), axes)


def _eval(jaxpr, consts, args):
    """Evaluate `jaxpr` on (surrogate, reference, depends-on-input) triples; returns the output triples."""
    env: dict[Any, tuple] = {}

    def read(var):
        if isinstance(var, Literal):
            return var.val, var.val, False
        return env[var]

    for var, const in zip(jaxpr.constvars, consts):
        env[var] = (const, const, False)
    for var, arg in zip(jaxpr.invars, args):
        env[var] = arg
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        outs = _apply(eqn, ins)
        for var, out in zip(eqn.outvars, outs):
            env[var] = out
    return [read(v) for v in jaxpr.outvars]


def _apply(eqn, ins) -> list[tuple]:
    name, prim, params = eqn.primitive.name, eqn.primitive, eqn.params
    surs, refs, deps = zip(*ins) if ins else ((), (), ())
    bind = lambda *xs: prim.bind(*xs, **params)  # noqa: E731
    many = prim.multiple_results
    if not any(deps):  # nothing here depends on the input: evaluate once, the same in both
        if name in CALLS:
            return [(o, o, False) for o in jaxpr_as_fun(_sub_jaxpr(eqn))(*surs)]
        out = bind(*surs)
        return [(o, o, False) for o in out] if many else [(out, out, False)]
    dep_idx = [i for i, d in enumerate(deps) if d]
    if name in CALLS:
        inner = _sub_jaxpr(eqn)
        if len(dep_idx) == 1 and len(eqn.outvars) == 1 and _elementwise_call(inner.jaxpr) and \
                eqn.outvars[0].aval.shape == eqn.invars[dep_idx[0]].aval.shape:
            i = dep_idx[0]

            def fn(z):
                args = list(surs)
                args[i] = z
                return jaxpr_as_fun(inner)(*args)[0]

            sur, ref = _rescale(fn, surs[i], refs[i])
            return [(sur, ref, True)]
        return _eval(inner.jaxpr, inner.consts, ins)
    if name == "stop_gradient":  # an identity for attribution (softmax's shift must keep its multipliers)
        return [(surs[0], refs[0], True)]
    if name in LINEAR:
        if name == "select_n" and deps[0]:
            raise NotImplementedError("DeepLIFT: a selection whose condition depends on the input")
        if name in ("dynamic_slice", "gather") and any(deps[1:]):
            raise NotImplementedError(f"DeepLIFT: {name} with indices that depend on the input")
        return _pack(bind(*surs), bind(*refs), many)
    if name in BILINEAR:
        if len(dep_idx) == 1:  # linear in the one operand that changes
            return _pack(bind(*surs), bind(*refs), many)
        return [(*_bilinear(bind, surs[0], surs[1], refs[0], refs[1]), True)]
    if name == "div" and dep_idx == [0]:  # divided by a constant: linear
        return _pack(bind(*surs), bind(*refs), many)
    if (name in UNARY or name in BINARY) and len(dep_idx) == 1:
        i = dep_idx[0]

        def fn(z):
            args = list(surs)
            args[i] = z
            return bind(*args)

        return [(*_rescale(fn, surs[i], refs[i]), True)]
    if name in BINARY:
        return [(*_shapley_pair(bind, surs[0], surs[1], refs[0], refs[1]), True)]
    if name == "reduce_max":
        return [(*_max_rule(surs[0], refs[0], tuple(params["axes"])), True)]
    if name == "reduce_window_max":
        return [(*_max_pool_rule(eqn, surs[0], refs[0]), True)]
    raise NotImplementedError(f"DeepLIFT has no rule for the primitive {name!r}")


def _pack(sur, ref, many):
    return [(s, r, True) for s, r in zip(sur, ref)] if many else [(sur, ref, True)]


def _surrogate(fn, x, ref):
    """fn(x) rebuilt so that its gradient in x is the DeepLIFT multipliers against `ref` (value unchanged)."""
    closed = jax.make_jaxpr(fn)(x)
    out = _eval(closed.jaxpr, closed.consts, [(x, ref, True)])
    return out[0][0], out[0][1]


@partial(jax.jit, static_argnames=("module", "output", "hypothetical"))
def _deeplift(module, variables, x, refs, *, output, hypothetical=False):
    """(B, L, 4) attributions of one-hot x (B, L, 4) against refs (B, R, L, 4), averaged over the R references.

    Each position's contribution, (x - r) . multipliers summed over the four channels, is reported on
    the observed base (times x), as DeepSHAP and tangermeme do for one-hot sequences. With
    `hypothetical`, every base b gets multipliers . (e_b - r), what it would contribute were it the
    observed one (TF-MoDISco's hypothetical contributions); times x this is the attribution above.
    """
    f = forward_fn(module, variables, output)
    b, r = refs.shape[:2]
    xs = jnp.repeat(x, r, axis=0)
    flat_refs = refs.reshape(b * r, *refs.shape[2:])
    multipliers = jax.grad(lambda z: _surrogate(f, z, flat_refs)[0].sum())(xs)
    if hypothetical:
        per_base = multipliers - (flat_refs * multipliers).sum(-1, keepdims=True)
        return per_base.reshape(b, r, *x.shape[1:]).mean(axis=1)
    per_position = ((xs - flat_refs) * multipliers).sum(-1).reshape(b, r, x.shape[1]).mean(axis=1)
    return per_position[..., None] * x


def shuffled_references(codes, n_references: int, seed: int) -> np.ndarray:
    """(B, R, L) references: `n_references` dinucleotide shuffles of each sequence of codes (B, L).

    Each sequence's shuffles are drawn from (seed, its own bases), so a sequence gets the same
    references in any batch, shard or order.
    """
    codes = np.asarray(codes, np.uint8)
    out = np.empty((len(codes), n_references, codes.shape[1]), np.uint8)
    for i, c in enumerate(codes):
        digest = np.frombuffer(hashlib.blake2b(c.tobytes(), digest_size=16).digest(), np.uint32)
        out[i] = dinucleotide_shuffle(c, n_references, np.random.default_rng([seed, *digest.tolist()]))
    return out


def deeplift(module: nn.Module, variables: dict[str, Any], codes, references, *, n_policy: str = "uniform",
             output: str = "logit", batch_size: int = 32, hypothetical: bool = False) -> np.ndarray:
    """(B, L, 4) DeepLIFT attributions of codes (B, L) against references (B, R, L), averaged over R,
    `batch_size` sequences (with all their references) at a time.

    Per sequence they sum to f(x) minus the mean of f over its references (completeness). With
    `hypothetical`, each position holds all four bases' hypothetical contributions; the observed
    base's entry is its attribution (the hypothetical array times the one-hot is the plain one).
    """
    codes, references = np.asarray(codes, np.uint8), np.asarray(references, np.uint8)
    if not len(codes):
        return np.zeros((*codes.shape, 4), np.float32)
    both = np.concatenate([codes[:, None], references], axis=1)  # (B, 1 + R, L): batched together

    def kernel(chunk):
        x, refs = jnp.asarray(one_hot(chunk[:, 0], n_policy)), jnp.asarray(one_hot(chunk[:, 1:], n_policy))
        return _deeplift(module, variables, x, refs, output=output, hypothetical=hypothetical)

    return apply_in_batches(kernel, both, batch_size).reshape(*codes.shape, -1)


def deeplift_shap(module: nn.Module, variables: dict[str, Any], codes, *, n_references: int = 20, seed: int = 0,
                  n_policy: str = "uniform", output: str = "logit", batch_size: int = 32,
                  hypothetical: bool = False) -> np.ndarray:
    """(B, L, 4) DeepLIFT/SHAP: DeepLIFT against `n_references` dinucleotide shuffles of each sequence
    (`hypothetical`: all four bases' hypothetical contributions, as `deeplift`)."""
    return deeplift(module, variables, codes, shuffled_references(codes, n_references, seed), n_policy=n_policy,
                    output=output, batch_size=batch_size, hypothetical=hypothetical)


__all__ = ["deeplift", "deeplift_shap", "dinucleotide_shuffle", "shuffled_references"]
