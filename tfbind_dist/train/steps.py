"""Jitted train and predict steps on uint8 base codes (one-hot is made on device)."""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.train.mesh import MeshPlan
from tfbind_dist.train.state import TrainState


def _variables(params, batch_stats) -> dict[str, Any]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, plan: MeshPlan, n_policy: str) -> Callable:
    """Return train_step(state, codes, labels) -> (state, loss), jitted with the state donated.

    `codes` (B, L) uint8 and `labels` (B,) are sharded over the mesh's data axis; the
    loss is the mean sigmoid binary cross-entropy over the global batch.
    """

    def train_step(state: TrainState, codes, labels):
        x = one_hot(codes, n_policy)
        y = labels.astype(jnp.float32)[:, None]
        dropout_key = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            if state.batch_stats:
                logits, updates = model.apply(
                    _variables(params, state.batch_stats), x, is_training=True,
                    rngs={"dropout": dropout_key}, mutable=["batch_stats"],
                )
                stats = updates["batch_stats"]
            else:
                logits = model.apply(_variables(params, None), x, is_training=True, rngs={"dropout": dropout_key})
                stats = state.batch_stats
            return optax.sigmoid_binary_cross_entropy(logits, y).mean(), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state), loss

    return jax.jit(
        train_step,
        in_shardings=(plan.replicated, plan.batch, plan.batch),
        out_shardings=(plan.replicated, plan.replicated),
        donate_argnums=(0,),
    )


def make_logits_fn(model: nn.Module, n_policy: str, plan: MeshPlan | None = None) -> Callable:
    """Return logits(params, batch_stats, codes) -> (B,) inference-mode logits, jitted."""

    def logits_fn(params, batch_stats, codes):
        out = model.apply(_variables(params, batch_stats), one_hot(codes, n_policy), is_training=False)
        return out[:, 0]

    if plan is None:
        return jax.jit(logits_fn)
    return jax.jit(
        logits_fn,
        in_shardings=(plan.replicated, plan.replicated, plan.batch),
        out_shardings=plan.batch,
    )
