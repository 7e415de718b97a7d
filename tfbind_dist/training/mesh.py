"""Device mesh and shardings for data-parallel training.

One `data` axis over every device the job can see (all processes' devices when
`jax.distributed` is initialised). Batches are split along it, parameters are
replicated, and XLA inserts the gradient all-reduce; BatchNorm statistics are
computed over the global batch because the model sees one logical array.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tfbind_dist.errors import ConfigError

DATA_AXIS = "data"


@dataclass(frozen=True)
class MeshPlan:
    """A 1-D data mesh and the two shardings training needs."""

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch(self) -> NamedSharding:
        return self.stacked_batch(0)

    def stacked_batch(self, leading: int) -> NamedSharding:
        """Batches stacked on `leading` axes (steps of a dispatch, members of a pack), split along the next."""
        return NamedSharding(self.mesh, P(*([None] * leading), DATA_AXIS))


def make_mesh(devices=None) -> MeshPlan:
    """Build the data mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return MeshPlan(Mesh(np.asarray(devices), (DATA_AXIS,)))


def check_batch_divisible(batch_size: int, plan: MeshPlan, what: str = "train.batch_size") -> None:
    if batch_size % plan.num_devices:
        raise ConfigError(
            f"{what}={batch_size} is not divisible by the {plan.num_devices} devices of the mesh; "
            f"use a multiple of {plan.num_devices}"
        )


def shard_batch(plan: MeshPlan, local_batch, leading: int = 0):
    """Place this process's slice of a global batch onto the mesh (works single- and multi-process); with
    `leading` axes, batches stacked on them (see `MeshPlan.stacked_batch`)."""
    sharding = plan.stacked_batch(leading)
    if jax.process_count() == 1:
        return jax.device_put(local_batch, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )
