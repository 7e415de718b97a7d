"""Jitted train and predict steps on uint8 base codes (one-hot is made on device)."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tfbind_dist.config import TrainConfig
from tfbind_dist.data.encoding import N_CODE, one_hot, reverse_complement
from tfbind_dist.training.mesh import MeshPlan
from tfbind_dist.training.state import TrainState, model_variables


def augment(codes: jax.Array, key: jax.Array, *, rc: bool, jitter: int) -> jax.Array:
    """Random strand and random shift per sequence, on device; a pure function of `key`.

    A shift of s moves every base s positions along the window; the s bases shifted in
    are N (whose one-hot the n_policy decides), so no sequence wraps around.
    """
    rc_key, shift_key = jax.random.split(key)
    batch, length = codes.shape
    if rc:
        flip = jax.random.bernoulli(rc_key, 0.5, (batch, 1))
        codes = jnp.where(flip, reverse_complement(codes), codes)
    if jitter:
        shifts = jax.random.randint(shift_key, (batch, 1), -jitter, jitter + 1)
        source = jnp.arange(length)[None, :] - shifts
        inside = (source >= 0) & (source < length)
        codes = jnp.where(inside, jnp.take_along_axis(codes, jnp.clip(source, 0, length - 1), axis=1), N_CODE)
    return codes.astype(jnp.uint8)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, plan: MeshPlan, n_policy: str,
                    train: TrainConfig | None = None) -> Callable:
    """Return train_step(state, codes, labels) -> (state, loss), jitted with the state donated.

    `codes` (B, L) uint8 and `labels` (B,) are sharded over the mesh's data axis; the
    loss is the mean sigmoid binary cross-entropy over the global batch. `train`'s
    augment_rc / jitter, when set, transform each batch on device first.
    """
    rc, jitter = (train.augment_rc, train.jitter) if train is not None else (False, 0)

    def train_step(state: TrainState, codes, labels):
        dropout_key = jax.random.fold_in(state.rng, state.step)
        if rc or jitter:
            codes = augment(codes, jax.random.fold_in(dropout_key, 1), rc=rc, jitter=jitter)
        x = one_hot(codes, n_policy)
        y = labels.astype(jnp.float32)[:, None]

        def loss_fn(params):
            if state.batch_stats:
                logits, updates = model.apply(
                    model_variables(params, state.batch_stats), x, is_training=True,
                    rngs={"dropout": dropout_key}, mutable=["batch_stats"],
                )
                stats = updates["batch_stats"]
            else:
                logits = model.apply(model_variables(params, None), x, is_training=True, rngs={"dropout": dropout_key})
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
        out = model.apply(model_variables(params, batch_stats), one_hot(codes, n_policy), is_training=False)
        return out[:, 0]

    if plan is None:
        return jax.jit(logits_fn)
    return jax.jit(
        logits_fn,
        in_shardings=(plan.replicated, plan.replicated, plan.batch),
        out_shardings=plan.batch,
    )
