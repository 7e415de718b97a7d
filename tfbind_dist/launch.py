"""Starting one training job's processes on Ray: the one launcher behind sweeps and searches.

A job is `hosts` processes of `train_and_evaluate` on one run directory; with more than one,
process 0's node hosts the `jax.distributed` coordinator. Each process is a Ray task in a
fresh worker (`max_calls=1`, so JAX sees exactly the accelerators Ray assigned), placed by
the caller (a scheduling strategy, or a bundle of a placement group).
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable

from tfbind_dist.experiment import Resources


def _attempt(process_id: int) -> dict[str, Any]:
    """Where and when this worker process started, for the run directory's attempt record."""
    import ray

    return {"node": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
            "process": process_id, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "gpus": ray.get_runtime_context().get_accelerator_ids().get("GPU", []),
            "xla_memory_fraction": os.environ.get("XLA_CLIENT_MEM_FRACTION")}


def train_process(config: dict[str, Any], workdir: str, coordinator: str | None = None, num_processes: int = 1,
                  process_id: int = 0) -> dict[str, Any]:
    """Body of one training process (runs on a Ray worker); with a coordinator, one process of a multi-host job."""
    from tfbind_dist import config as C
    from tfbind_dist.rundir import RunDir
    from tfbind_dist.training.distributed import DistributedSpec, initialize
    from tfbind_dist.training.loop import train_and_evaluate

    if coordinator:
        initialize(DistributedSpec(coordinator, num_processes, process_id))
    RunDir(workdir).record_attempt(_attempt(process_id), process_id)
    return train_and_evaluate(C.from_dict(config), workdir, progress=False)


def _coordinator_address() -> str:
    """HOST:PORT for process 0 of a multi-host job: this node's address and a free port."""
    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


def train_pack_process(configs: list[dict[str, Any]], workdirs: list[str]) -> list[dict[str, Any]]:
    """Body of one packed training process (runs on a Ray worker): its members' summaries."""
    from tfbind_dist import config as C
    from tfbind_dist.rundir import RunDir
    from tfbind_dist.training.loop import train_pack

    for workdir in workdirs:
        RunDir(workdir).record_attempt({**_attempt(0), "pack": len(workdirs)}, 0)
    return train_pack([C.from_dict(c) for c in configs], workdirs, progress=False)


GPU_MEMORY_HEADROOM = 0.9  # of a fractional GPU's share, what its process's XLA allocator may preallocate


def gpu_memory_env(gpus: float) -> dict[str, str]:
    """For a process given a fraction of a GPU, the XLA memory fraction that lets its neighbours fit: JAX
    otherwise preallocates 75% of the device in every process. Both names of the variable are set (JAX's
    docs rename XLA_PYTHON_CLIENT_MEM_FRACTION to XLA_CLIENT_MEM_FRACTION)."""
    if not 0 < gpus < 1:
        return {}
    fraction = f"{gpus * GPU_MEMORY_HEADROOM:.3f}"
    return {"XLA_CLIENT_MEM_FRACTION": fraction, "XLA_PYTHON_CLIENT_MEM_FRACTION": fraction}


def _worker(body, resources: Resources, placement, *, max_retries: int, name: str | None):
    """`body` as a Ray task in a fresh worker holding `resources`' CPUs, GPUs and TPUs."""
    import ray

    bundle = resources.bundle()
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU") and v} or None
    env = gpu_memory_env(resources.gpus)
    return ray.remote(max_calls=1)(body).options(
        num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), resources=custom, max_retries=max_retries,
        retry_exceptions=False, scheduling_strategy=placement, name=name,
        **({"runtime_env": {"env_vars": env}} if env else {}))


def start_processes(config: dict[str, Any], workdir: str, resources: Resources, placement: Callable[[int], Any], *,
                    max_retries: int = 0, name: str | None = None) -> list:
    """Submit the `resources.hosts` processes of one job; process i is scheduled by `placement(i)`.

    Each process gets `resources`' CPUs, GPUs and TPUs. Returns the processes' object refs;
    process 0's result is the run summary.
    """
    import ray

    hosts = resources.hosts
    coordinator = None
    if hosts > 1:
        coordinator = ray.get(ray.remote(_coordinator_address).options(
            num_cpus=0, scheduling_strategy=placement(0)).remote())
    return [_worker(train_process, resources, placement(i), max_retries=max_retries, name=name).remote(
        config, workdir, coordinator, hosts, i) for i in range(hosts)]


def start_pack(configs: list[dict[str, Any]], workdirs: list[str], resources: Resources, placement, *,
               max_retries: int = 0, name: str | None = None):
    """Submit one packed training process (`training.loop.train_pack`); its ref returns the members' summaries."""
    return _worker(train_pack_process, resources, placement, max_retries=max_retries, name=name).remote(
        configs, workdirs)
