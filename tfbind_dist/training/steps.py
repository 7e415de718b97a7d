"""Jitted train and predict steps on uint8 base codes (one-hot is made on device)."""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tfbind_dist.config import TrainConfig
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.training.augment import augment_batch, augments
from tfbind_dist.training.mesh import MeshPlan
from tfbind_dist.training.state import TrainState, make_optimizer, model_variables


class MemberHypers(NamedTuple):
    """The settings the members of one packed program may differ in, one value per member (traced)."""

    learning_rate: jax.Array
    weight_decay: jax.Array
    dropout_rate: jax.Array


def _member_step(model_for: Callable, tx_for: Callable, n_policy: str, train: TrainConfig | None,
                 flank: int = 0) -> Callable:
    """step(state, codes, labels, hypers) -> (state, loss): one optimisation step of one model.

    `model_for(hypers)` / `tx_for(hypers)` give the model and optimiser (a solo run ignores `hypers`).
    `train`'s augmentations, when it has any, transform the batch first, except in the fine-tuning phase
    (the last `train.finetune_steps` steps). With `flank` F (`data.flank`), batches carry F stored bases on
    each side: the model sees the centred window, or the one the recipe's shift draws from them.
    """

    def step(state: TrainState, codes, labels, hypers):
        model, tx = model_for(hypers), tx_for(hypers)
        dropout_key = jax.random.fold_in(state.rng, state.step)
        plain = codes[:, flank: codes.shape[1] - flank] if flank else codes
        if augments(train):
            augmented = augment_batch(codes, jax.random.fold_in(dropout_key, 1), train, flank)
            codes = jnp.where(state.step < train.steps - train.finetune_steps, augmented, plain) \
                if train.finetune_steps else augmented
        else:
            codes = plain
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

    return step


def _in_blocks(step: Callable) -> Callable:
    """step over a block of batches stacked on a leading axis, all in one dispatch; returns the final state
    and the loss of every step. Each step is fenced off from the next (`optimization_barrier`), so XLA
    compiles it as it compiles a single step and the block computes what one step per dispatch does."""

    def block(state, codes, labels, *rest):
        losses = []
        for i in range(codes.shape[0]):
            state, loss = jax.lax.optimization_barrier(step(state, codes[i], labels[i], *rest))
            losses.append(loss)
        return state, jnp.stack(losses)

    return block


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, plan: MeshPlan, n_policy: str,
                    train: TrainConfig | None = None, flank: int = 0) -> Callable:
    """Return train_step(state, codes, labels) -> (state, losses), jitted with the state donated.

    `codes` (S, B, L) uint8 and `labels` (S, B) are S consecutive batches (S = the steps of one
    dispatch), each sharded over the mesh's data axis; each loss is the mean sigmoid binary
    cross-entropy over its global batch. `train`'s augmentations (`training/augment.py`), when set,
    transform each batch on device first.
    """
    step = _member_step(lambda _: model, lambda _: tx, n_policy, train, flank)
    block = _in_blocks(lambda state, codes, labels: step(state, codes, labels, None))
    return jax.jit(
        block,
        in_shardings=(plan.replicated, plan.stacked_batch(1), plan.stacked_batch(1)),
        out_shardings=(plan.replicated, plan.replicated),
        donate_argnums=(0,),
    )


def make_packed_train_step(model_for: Callable, train: TrainConfig, plan: MeshPlan, n_policy: str,
                           flank: int = 0) -> Callable:
    """Return packed_step(states, codes, labels, hypers, active) -> (states, losses) for K models of one
    architecture trained as one program: their states stacked on a leading axis, `codes` (S, K, B, L) and
    `labels` (S, K, B) one batch per member per step, `hypers` a MemberHypers of (K,) values, `active` (K,)
    bool. An inactive member's state is carried through unchanged (a member stopped early, or finished).
    `model_for(dropout_rate)` builds a member's model."""
    step = _member_step(lambda h: model_for(h.dropout_rate),
                        lambda h: make_optimizer(train, learning_rate=h.learning_rate, weight_decay=h.weight_decay),
                        n_policy, train, flank)

    def packed_step(states, codes, labels, hypers, active):
        new, losses = jax.vmap(step)(states, codes, labels, hypers)
        keep = lambda n, o: jnp.where(active.reshape(active.shape + (1,) * (n.ndim - 1)), n, o)  # noqa: E731
        return jax.tree.map(keep, new, states), losses

    return jax.jit(
        _in_blocks(packed_step),
        in_shardings=(plan.replicated, plan.stacked_batch(2), plan.stacked_batch(2), plan.replicated, plan.replicated),
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
