"""Input-gradient attributions, batched and jitted: raw, corrected, gradient x input, integrated.

All functions take uint8 codes (B, L) and return (B, L, 4). The model output is the
logit by default (the chapter differentiates the model's raw output); pass
output="prob" for the probability.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.interpret.outputs import forward_fn


def _per_sequence_grad(module, variables, output):
    """Gradients of each sequence's output w.r.t. its own input, as one batched backward pass.

    In inference mode the rows of a batch do not interact (BatchNorm uses running
    statistics), so the gradient of the summed output is each row's own gradient.
    """
    f = forward_fn(module, variables, output)
    return jax.grad(lambda x: f(x).sum())


@partial(jax.jit, static_argnames=("module", "n_policy", "output"))
def input_gradients(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
                    output: str = "logit") -> jax.Array:
    """d output / d one-hot input at each sequence."""
    return _per_sequence_grad(module, variables, output)(one_hot(codes, n_policy))


def correct_gradients(grads: jax.Array) -> jax.Array:
    """Subtract the per-position mean over the 4 bases (Majdandzic et al. 2023): removes off-simplex noise."""
    return grads - grads.mean(axis=-1, keepdims=True)


@partial(jax.jit, static_argnames=("module", "n_policy", "output"))
def corrected_gradients(module, variables, codes, *, n_policy: str = "uniform", output: str = "logit") -> jax.Array:
    return correct_gradients(input_gradients(module, variables, codes, n_policy=n_policy, output=output))


@partial(jax.jit, static_argnames=("module", "n_policy", "output"))
def gradient_x_input(module, variables, codes, *, n_policy: str = "uniform", output: str = "logit") -> jax.Array:
    """Gradient times the one-hot input: the attribution of each observed base."""
    x = one_hot(codes, n_policy)
    return _per_sequence_grad(module, variables, output)(x) * x


@partial(jax.jit, static_argnames=("module", "n_policy", "output", "steps"))
def integrated_gradients(module, variables, codes, *, n_policy: str = "uniform", output: str = "logit",
                         steps: int = 32) -> jax.Array:
    """Integrated gradients from the uniform (0.25) baseline, midpoint Riemann sum over `steps` points.

    Attributions sum (over positions and bases) to f(x) - f(baseline), up to the
    quadrature error.
    """
    x = one_hot(codes, n_policy)
    baseline = jnp.full_like(x, 0.25)
    grad = _per_sequence_grad(module, variables, output)
    alphas = (jnp.arange(steps, dtype=x.dtype) + 0.5) / steps

    def accumulate(total, alpha):
        return total + grad(baseline + alpha * (x - baseline)), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros_like(x), alphas)
    return total / steps * (x - baseline)
