"""orbax checkpoints of a run: `latest` (resume point) and `best` (by validation auROC).

Each checkpoint holds the TrainState (params, optimiser, BatchNorm stats, RNG, step),
the data iterator's position (one JSON file per JAX process, via grain's orbax
handler) and a small JSON record of the run's progress (best auROC so far).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from tfbind_dist.errors import RunDirError
from tfbind_dist.rundir import BEST, LATEST
from tfbind_dist.storage import as_path, is_remote

logging.getLogger("absl").setLevel(logging.WARNING)


def abstract_like(tree):
    """Shape/dtype/sharding description of a pytree, used as a restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _replace_step(manager: ocp.CheckpointManager, step: int) -> None:
    """Drop `step` if an earlier, interrupted attempt already saved it (a resumed run recomputes it exactly)."""
    if step in manager.all_steps():
        manager.delete(step)


class RunCheckpoints:
    """The two checkpoint managers of one run directory."""

    def __init__(self, directory: str | Path):
        directory = as_path(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        handlers = None
        if is_remote(directory):  # one object per array, each written once: no shared OCDBT manifest to rewrite
            handlers = {"state": ocp.StandardCheckpointHandler(use_ocdbt=False), "progress": ocp.JsonCheckpointHandler(),
                        "data_iter": grain.checkpoint.CheckpointHandler()}
        self.latest = ocp.CheckpointManager(directory / LATEST, options=options, item_handlers=handlers)
        self.best = ocp.CheckpointManager(directory / BEST, options=options,
                                          item_handlers=handlers and {k: v for k, v in handlers.items() if k != "data_iter"})

    def save_latest(self, step: int, state, data_iterator, progress: dict[str, Any]) -> None:
        self.best.wait_until_finished()  # both managers use per-step barriers across processes: never overlap
        _replace_step(self.latest, step)
        args = {"state": ocp.args.StandardSave(state), "progress": ocp.args.JsonSave(progress)}
        if data_iterator is not None:
            args["data_iter"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.latest.save(step, args=ocp.args.Composite(**args), force=True)

    def save_best(self, step: int, state, progress: dict[str, Any]) -> None:
        self.latest.wait_until_finished()
        _replace_step(self.best, step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress))
        self.best.save(step, args=args, force=True)

    def restore_latest(self, target_state, data_iterator) -> tuple[int, Any, dict[str, Any]] | None:
        """Restore (step, state, progress) from the latest checkpoint into the iterator; None if none."""
        step = self.latest.latest_step()
        if step is None:
            return None
        args = {"state": ocp.args.StandardRestore(abstract_like(target_state)), "progress": ocp.args.JsonRestore()}
        if data_iterator is not None:
            args["data_iter"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.latest.restore(step, args=ocp.args.Composite(**args))
        return step, restored["state"], dict(restored["progress"])

    def restore_best(self, target_state) -> tuple[int, Any]:
        step = self.best.latest_step()
        if step is None:
            raise RunDirError(f"no best checkpoint under {self.best.directory}")
        restored = self.best.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(target_state))))
        return step, restored["state"]

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
