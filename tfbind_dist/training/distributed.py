"""Multi-process (multi-host) start-up: `jax.distributed` from flags, environment, or auto-detection.

One training job can span several hosts (a TPU pod slice, several GPU nodes, or several
processes on one machine for testing). Each process calls `initialize` before touching
devices; afterwards `jax.devices()` lists every process's devices and the training
mesh spans them all.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import jax

from tfbind_dist.errors import ConfigError


@dataclass(frozen=True)
class DistributedSpec:
    """Where this process sits in a multi-process job."""

    coordinator: str | None = None  # HOST:PORT of process 0
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False  # let JAX detect the cluster (Cloud TPU pods, SLURM, ...)

    @property
    def enabled(self) -> bool:
        return self.auto or self.coordinator is not None

    @classmethod
    def from_env(cls) -> "DistributedSpec":
        """TFBIND_COORDINATOR / TFBIND_NUM_PROCESSES / TFBIND_PROCESS_ID, or TFBIND_DISTRIBUTED=auto."""
        env = os.environ
        number = lambda key: int(env[key]) if env.get(key) else None  # noqa: E731
        return cls(env.get("TFBIND_COORDINATOR") or None, number("TFBIND_NUM_PROCESSES"),
                   number("TFBIND_PROCESS_ID"), env.get("TFBIND_DISTRIBUTED") == "auto")


def initialize(spec: DistributedSpec) -> None:
    """Start jax.distributed for this process (no-op for a single-process job or if already started)."""
    if not spec.enabled or jax.distributed.is_initialized():
        return
    if spec.auto:
        jax.distributed.initialize()
        return
    if spec.num_processes is None or spec.process_id is None:
        raise ConfigError("--coordinator needs --num-processes and --process-id")
    if not 0 <= spec.process_id < spec.num_processes:
        raise ConfigError(f"--process-id {spec.process_id} is not in [0, {spec.num_processes})")
    jax.distributed.initialize(spec.coordinator, num_processes=spec.num_processes, process_id=spec.process_id)
