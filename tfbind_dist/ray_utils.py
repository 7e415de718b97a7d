"""Connecting to Ray: shared by sweeps and the scoring service."""
from __future__ import annotations

import os
from pathlib import Path


def connect(address: str, env_vars: dict[str, str] | None = None) -> None:
    """Join an existing cluster (`auto`, HOST:PORT) or start a private one on this machine (`local`).

    `local` always starts a new instance for this driver (never joins RAY_ADDRESS or a cluster
    that `ray start` left running on the machine); it stops when the driver exits.

    `env_vars` are set in every task and actor of this driver (Ray runtime_env).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if (Path.home() / ".ray" / "auth_token").exists():  # clusters started by cluster/local.sh use token auth
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # (read when ray is imported)
    import logging

    import ray

    # Ray's and Ray Data's start-up notes (dashboard address, execution plans) are not the command's output;
    # its warnings and errors still show.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if address == "local":
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False,
                 runtime_env=runtime_env, logging_level=logging.WARNING)
        return
    host = address.split(":")[0]
    kwargs = {"_node_ip_address": host} if host.startswith("127.") else {}
    ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, logging_level=logging.WARNING, **kwargs)
