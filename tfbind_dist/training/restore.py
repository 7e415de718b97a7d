"""Restoring a trained model from its run directory: the one model-loading API.

Loading needs only the run directory (config.yaml, run.json, checkpoints/), never the
training data. Used by predict, evaluate, sanity, explain and the scoring actors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfbind_dist.config import RunConfig
from tfbind_dist.models import build_model
from tfbind_dist.rundir import RunDir, RunDirError
from tfbind_dist.training.checkpoint import RunCheckpoints
from tfbind_dist.training.state import create_state, make_optimizer, model_variables


@dataclass
class Model:
    """A trained model restored from a run directory, ready for inference."""

    config: RunConfig
    module: Any
    params: Any
    batch_stats: Any
    length: int
    step: int
    run: str = ""

    @property
    def variables(self) -> dict[str, Any]:
        return model_variables(self.params, self.batch_stats)

    @property
    def n_policy(self) -> str:
        return self.config.data.n_policy

    @property
    def tf(self) -> str:
        return self.config.data.tf


def load_model(workdir: str | Path, which: str = "best") -> Model:
    """Restore a run's best (or latest) checkpoint for inference, on the default device."""
    run = RunDir(workdir)
    config = run.load_config()
    length = run.sequence_length()
    if length is None:  # a run made before run.json recorded it: read it off the validation split
        from tfbind_dist.data.sources import load_splits

        length = load_splits(config.data, splits=("valid",))["valid"].length
    module = build_model(config.model.name, **config.model.overrides)
    target = create_state(module, make_optimizer(config.train), length, config.train.seed)
    checkpoints = RunCheckpoints(run.checkpoints)
    try:
        if which == "best":
            step, state = checkpoints.restore_best(target)
        else:
            restored = checkpoints.restore_latest(target, None)
            if restored is None:
                raise RunDirError(f"no checkpoint under {run.checkpoints}")
            step, state, _ = restored
    except (ValueError, KeyError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise RunDirError(f"{run.checkpoints}: cannot restore the {which} checkpoint "
                          f"({str(err).splitlines()[0][:200]})") from None
    finally:
        checkpoints.close()
    return Model(config, module, state.params, state.batch_stats, length, int(step), str(run))
