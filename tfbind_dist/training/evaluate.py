"""Whole-split inference and metrics on the mesh."""
from __future__ import annotations

import jax
import numpy as np

from tfbind_dist.data.io import SplitData
from tfbind_dist.data.pipeline import eval_batches
from tfbind_dist.training.mesh import MeshPlan
from tfbind_dist.training.metrics import binary_metrics
from tfbind_dist.training.pacing import DispatchWindow

EVAL_DISPATCH_DEPTH = 8  # evaluation batches queued ahead of the devices (see training/pacing.py)


def replicated_batch_to_mesh(plan: MeshPlan, codes: np.ndarray):
    """Shard a batch that every process holds in full (eval data) over the global mesh."""
    if jax.process_count() == 1:
        return jax.device_put(codes, plan.batch)
    per_process = len(codes) // jax.process_count()
    start = jax.process_index() * per_process
    return jax.make_array_from_process_local_data(plan.batch, codes[start:start + per_process])


def to_host(array) -> np.ndarray:
    """Fetch a (possibly multi-process) global array to every host."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(array))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def predict_logits(logits_fn, params, batch_stats, split: SplitData, plan: MeshPlan, batch_size: int) -> np.ndarray:
    """Logits for every row of `split`, in order (padding rows dropped)."""
    outputs, masks = [], []
    devices = plan.num_devices
    batch_size = min(batch_size, -(-len(split) // devices) * devices)  # no more padding than one split needs
    window = DispatchWindow(EVAL_DISPATCH_DEPTH)
    for batch in eval_batches(split, batch_size):
        outputs.append(logits_fn(params, batch_stats, replicated_batch_to_mesh(plan, batch["codes"])))
        window.push(outputs[-1])
        masks.append(batch["valid"])
    logits = np.concatenate([to_host(o) for o in outputs])
    return logits[np.concatenate(masks)]


def evaluate_split(logits_fn, params, batch_stats, split: SplitData, plan: MeshPlan,
                   batch_size: int) -> dict[str, float]:
    logits = predict_logits(logits_fn, params, batch_stats, split, plan, batch_size)
    return binary_metrics(split.labels, logits)


def evaluate_model(model, split: SplitData) -> dict[str, float]:
    """Metrics of a restored `Model` on a split, on this process's first device."""
    from tfbind_dist.training.mesh import make_mesh
    from tfbind_dist.training.steps import make_logits_fn

    plan = make_mesh(jax.local_devices()[:1])
    logits_fn = make_logits_fn(model.module, model.n_policy, plan)
    return evaluate_split(logits_fn, model.params, model.batch_stats, split, plan, model.config.data.eval_batch_size)
