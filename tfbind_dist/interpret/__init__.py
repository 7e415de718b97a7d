"""Model interpretation: ISM, gradient attributions, DeepLIFT/SHAP, motif checks and plots.

`explain(module, variables, codes, methods)` is the one entry point for batches of
sequences; the kernels it calls are pure jitted functions of (variables, codes).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from tfbind_dist.data.batching import apply_in_batches
from tfbind_dist.interpret import gradients
from tfbind_dist.interpret.deeplift import deeplift_shap
from tfbind_dist.interpret.ism import ism, ism_fast, ism_reference
from tfbind_dist.interpret.outputs import predict

METHODS = ("ism", "grad", "grad-corrected", "grad-x-input", "ig", "deeplift-shap")
ARRAY_NAMES = {m: m.replace("-", "_") for m in METHODS}  # npz array names

_GRADIENT_KERNELS = {
    "grad": gradients.input_gradients,
    "grad-corrected": gradients.corrected_gradients,
    "grad-x-input": gradients.gradient_x_input,
    "ig": gradients.integrated_gradients,
}


def normalize_methods(methods: Iterable[str]) -> list[str]:
    """Method names in their canonical spelling (`grad_corrected` = `grad-corrected`), checked, without repeats."""
    canonical = [m.strip().replace("_", "-") for m in methods if m.strip()]
    unknown = [m for m in canonical if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} "
                         f"(underscores work too: {', '.join(ARRAY_NAMES.values())})")
    return list(dict.fromkeys(canonical))


def explain(module, variables: dict[str, Any], codes: np.ndarray, methods: Iterable[str], *,
            n_policy: str = "uniform", batch_size: int = 64, ism_output: str = "prob",
            grad_output: str = "logit", references: int = 20, seed: int = 0,
            progress: bool = False) -> dict[str, np.ndarray]:
    """Attributions (N, L, 4) per requested method, plus `prediction` (N,) probabilities.

    Sequences are processed in fixed-size batches (the last one padded) so each kernel
    compiles once. DeepLIFT/SHAP uses `references` dinucleotide shuffles of each sequence,
    drawn from `seed` and the sequence itself.
    """
    methods = normalize_methods(methods)
    codes = np.asarray(codes, dtype=np.uint8)

    def attributions(chunk: np.ndarray) -> dict[str, np.ndarray]:
        out = {"prediction": predict(module, variables, chunk, n_policy=n_policy)}
        for method in methods:
            if method == "ism":
                out["ism"] = ism(module, variables, chunk, n_policy=n_policy, output=ism_output).delta
            elif method == "deeplift-shap":
                out["deeplift_shap"] = deeplift_shap(module, variables, chunk, n_references=references, seed=seed,
                                                     n_policy=n_policy, output=grad_output)
            else:
                out[ARRAY_NAMES[method]] = _GRADIENT_KERNELS[method](module, variables, chunk, n_policy=n_policy,
                                                                     output=grad_output)
        return out

    return apply_in_batches(attributions, codes, batch_size, progress=progress, desc="explain")


__all__ = ["METHODS", "ARRAY_NAMES", "explain", "normalize_methods", "ism", "ism_fast", "ism_reference", "gradients",
           "deeplift_shap"]
