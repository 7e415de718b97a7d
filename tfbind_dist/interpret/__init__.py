"""Model interpretation: ISM, gradient attributions, motif checks and plots.

`explain(module, variables, codes, methods)` is the one entry point for batches of
sequences; the kernels it calls are pure jitted functions of (variables, codes).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from tqdm.auto import tqdm

from tfbind_dist.interpret import gradients
from tfbind_dist.interpret.ism import ism, ism_fast, ism_reference
from tfbind_dist.interpret.outputs import predict

METHODS = ("ism", "grad", "grad-corrected", "grad-x-input", "ig")
ARRAY_NAMES = {m: m.replace("-", "_") for m in METHODS}  # npz array names

_GRADIENT_KERNELS = {
    "grad": gradients.input_gradients,
    "grad-corrected": gradients.corrected_gradients,
    "grad-x-input": gradients.gradient_x_input,
    "ig": gradients.integrated_gradients,
}


def explain(module, variables: dict[str, Any], codes: np.ndarray, methods: Iterable[str], *,
            n_policy: str = "uniform", batch_size: int = 64, ism_output: str = "prob",
            grad_output: str = "logit", progress: bool = False) -> dict[str, np.ndarray]:
    """Attributions (N, L, 4) per requested method, plus `prediction` (N,) probabilities.

    Sequences are processed in fixed-size batches (the last one padded) so each kernel
    compiles once.
    """
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    codes = np.asarray(codes, dtype=np.uint8)
    size = max(1, min(batch_size, len(codes)))
    out: dict[str, list[np.ndarray]] = {name: [] for name in ["prediction", *(ARRAY_NAMES[m] for m in methods)]}
    for start in tqdm(range(0, len(codes), size), disable=not progress, desc="explain", unit="batch"):
        chunk = codes[start:start + size]
        n = len(chunk)
        if n < size:
            chunk = np.concatenate([chunk, np.zeros((size - n, codes.shape[1]), np.uint8)])
        out["prediction"].append(np.asarray(predict(module, variables, chunk, n_policy=n_policy))[:n])
        for method in methods:
            if method == "ism":
                values = ism(module, variables, chunk, n_policy=n_policy, output=ism_output).delta
            else:
                values = _GRADIENT_KERNELS[method](module, variables, chunk, n_policy=n_policy, output=grad_output)
            out[ARRAY_NAMES[method]].append(np.asarray(values)[:n])
    return {name: np.concatenate(parts) for name, parts in out.items()}


__all__ = ["METHODS", "ARRAY_NAMES", "explain", "ism", "ism_fast", "ism_reference", "gradients"]
