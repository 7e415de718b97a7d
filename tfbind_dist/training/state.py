"""Train state, optimiser and initialisation."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from tfbind_dist.config import TrainConfig


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, as one pytree (checkpointed whole)."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # base key; per-step dropout keys are fold_in(rng, step)


def model_variables(params, batch_stats) -> dict[str, Any]:
    """The variables `module.apply` takes: params, and BatchNorm statistics where the model has them."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_schedule(cfg: TrainConfig, learning_rate=None) -> optax.Schedule:
    """Cosine decay from the learning rate over the steps before fine-tuning, with an optional linear
    warm-up; then, in the fine-tuning phase (`finetune_steps`, if any), the constant fine-tuning rate.

    The peak is a factor outside the schedule's shape, so it may be a traced value: each member of a
    packed program (`training/packing.py`) has its own learning rate, and a solo run computes the same.
    """
    peak = cfg.learning_rate if learning_rate is None else learning_rate
    steps = cfg.steps - cfg.finetune_steps
    if cfg.warmup_steps:
        shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, cfg.warmup_steps, max(steps, cfg.warmup_steps + 1))
    else:
        shape = optax.cosine_decay_schedule(1.0, decay_steps=steps)
    if cfg.finetune_steps:
        return lambda count: jnp.where(count < steps, peak * shape(count), cfg.finetune_learning_rate)
    return lambda count: peak * shape(count)


def make_optimizer(cfg: TrainConfig, learning_rate=None, weight_decay=None) -> optax.GradientTransformation:
    """The recipe's optimiser; `learning_rate` / `weight_decay`, when given (numbers or traced arrays),
    replace the config's. Its state's structure does not depend on either."""
    schedule = make_schedule(cfg, learning_rate)
    if cfg.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=cfg.weight_decay if weight_decay is None else weight_decay)
    return optax.adam(schedule)


def init_variables(model: nn.Module, length: int, seed: int) -> dict[str, Any]:
    """Initialise model variables for (1, length, 4) inputs from a seed."""
    init_key = jax.random.split(jax.random.PRNGKey(seed))[0]
    return model.init(init_key, jnp.zeros((1, length, 4), jnp.float32), is_training=False)


def create_state(model: nn.Module, tx: optax.GradientTransformation, length: int, seed: int) -> TrainState:
    """A fresh TrainState: params from `seed`, dropout base key from the same seed."""
    variables = init_variables(model, length, seed)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=jax.random.split(jax.random.PRNGKey(seed))[1],
    )
