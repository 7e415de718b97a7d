"""Packed training: several runs of one architecture and batch shape as one vmapped program.

Our models and batches are small, so on an accelerator one run is bound by dispatch, not by
arithmetic. A pack stacks its members' train states on a leading axis and steps them all in one
program (`steps.make_packed_train_step`), one batch per member per step. Members may differ in
what `experiment.MEMBER_KEYS` lists (TF and data, seed, learning rate, weight decay, dropout rate,
patience, evaluation cadence); everything else that shapes the program must be equal
(`experiment.pack_key`, checked by `experiment.check_packable`).

The programs here are what the training loop (`training/loop.py`) steps: `SoloProgram` for one
run (today's jitted step), `PackedProgram` for a pack. Each run's checkpoints hold its own,
unstacked state, so a packed member's run directory is the same as a solo run's.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tfbind_dist.config import RunConfig
from tfbind_dist.models import build_model
from tfbind_dist.training.mesh import MeshPlan, shard_batch
from tfbind_dist.training.steps import MemberHypers, make_packed_train_step, make_train_step


def _resumed_state(member, plan: MeshPlan):
    return member.resume(jax.device_put(member.fresh_state(), plan.replicated))


class SoloProgram:
    """One run: its state and its jitted step over a block of batches."""

    def __init__(self, members, plan: MeshPlan):
        (self.member,) = members
        self.plan = plan
        self.state = _resumed_state(self.member, plan)
        self.step = make_train_step(self.member.model, self.member.tx, plan, self.member.config.data.n_policy,
                                    self.member.tcfg, self.member.config.data.flank)

    def run(self, size: int, active: Sequence[bool]) -> jax.Array:
        """Train `size` steps in one dispatch; their losses (size,)."""
        batch = shard_batch(self.plan, self.member.next_batches(size), leading=1)
        self.state, losses = self.step(self.state, batch["codes"], batch["labels"])
        return losses

    def member_state(self, index: int):
        return self.state


def member_hypers(configs: Sequence[RunConfig]) -> MemberHypers:
    """Each member's learning rate, weight decay and dropout rate (its model preset's when not overridden)."""
    def dropout(config: RunConfig) -> float:
        return float(getattr(build_model(config.model.name, **config.model.overrides), "dropout_rate", 0.0))

    return MemberHypers(*(jnp.asarray(values, jnp.float32) for values in (
        [c.train.learning_rate for c in configs], [c.train.weight_decay for c in configs],
        [dropout(c) for c in configs])))


class PackedProgram:
    """K runs of one architecture: their states stacked on a leading axis, stepped by one vmapped program."""

    def __init__(self, members, plan: MeshPlan):
        self.members, self.plan = members, plan
        lead = members[0].config
        states = [_resumed_state(m, plan) for m in members]
        self.state = jax.device_put(jax.tree.map(lambda *leaves: jnp.stack(leaves), *states), plan.replicated)
        self.hypers = jax.device_put(member_hypers([m.config for m in members]), plan.replicated)
        overrides = {k: v for k, v in lead.model.overrides.items() if k != "dropout_rate"}
        has_dropout = hasattr(members[0].model, "dropout_rate")

        def model_for(dropout_rate):
            if not has_dropout:
                return members[0].model
            return build_model(lead.model.name, **overrides, dropout_rate=dropout_rate)

        self.step = make_packed_train_step(model_for, lead.train, plan, lead.data.n_policy, lead.data.flank)

    def run(self, size: int, active: Sequence[bool]) -> jax.Array:
        """Train the active members `size` steps in one dispatch (the others are carried unchanged); the
        losses (size, K), meaningful for the active members only."""
        blocks = [m.next_batches(size) if on else None for m, on in zip(self.members, active)]
        shapes = next(b for b in blocks if b is not None)
        idle = {key: np.zeros_like(value) for key, value in shapes.items()}  # an inactive member's batch
        blocks = [idle if b is None else b for b in blocks]
        batch = {key: np.stack([b[key] for b in blocks], axis=1) for key in ("codes", "labels")}
        batch = shard_batch(self.plan, batch, leading=2)
        self.state, losses = self.step(self.state, batch["codes"], batch["labels"], self.hypers,
                                       jnp.asarray(np.asarray(active)))
        return losses

    def member_state(self, index: int):
        """Member `index`'s own (unstacked) train state."""
        return jax.tree.map(lambda leaf: leaf[index], self.state)
