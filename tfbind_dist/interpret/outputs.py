"""Model outputs as pure functions of one-hot inputs: the common ground of ISM and gradients."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax

from tfbind_dist.errors import ConfigError

OUTPUTS = ("prob", "logit")


def transform(logits: jax.Array, output: str) -> jax.Array:
    """Map logits to the requested output: 'prob' (sigmoid) or 'logit'."""
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {OUTPUTS}, got {output!r}")
    return jax.nn.sigmoid(logits) if output == "prob" else logits


def forward_fn(module: nn.Module, variables: dict[str, Any], output: str = "prob") -> Callable[[jax.Array], jax.Array]:
    """f(one_hot (B, L, 4)) -> (B,) model output in inference mode."""

    def f(x):
        return transform(module.apply(variables, x, is_training=False)[:, 0], output)

    return f


def chunked_map(fn: Callable, xs, rows_per_chunk: int):
    """lax.map over the leading axis in vmapped chunks, so large mutant sets stay in bounded memory."""
    n = jax.tree.leaves(xs)[0].shape[0]
    return jax.lax.map(fn, xs, batch_size=max(1, min(n, rows_per_chunk)))


def predict(module: nn.Module, variables: dict[str, Any], codes, *, n_policy: str = "uniform",
            output: str = "prob") -> jax.Array:
    """(B,) model output for uint8 codes (B, L)."""
    return _predict(module, variables, codes, n_policy=n_policy, output=output)


@partial(jax.jit, static_argnames=("module", "n_policy", "output"))
def _predict(module, variables, codes, *, n_policy, output):
    from tfbind_dist.data.encoding import one_hot

    return forward_fn(module, variables, output)(one_hot(codes, n_policy))
