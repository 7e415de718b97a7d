"""Model interpretation: ISM, gradient attributions, DeepLIFT/SHAP, motif checks and plots.

`explain(module, variables, codes, methods)` is the one entry point for batches of
sequences; the kernels it calls are pure jitted functions of (variables, codes).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from tfbind_dist.data.batching import apply_in_batches
from tfbind_dist.errors import ConfigError
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
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} "
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


DISCOVERY_METHODS = ("ism", "grad-corrected", "deeplift-shap")  # those with hypothetical contributions


def hypothetical_contributions(module, variables: dict[str, Any], codes: np.ndarray, method: str, *,
                               n_policy: str = "uniform", batch_size: int = 64, references: int = 20, seed: int = 0,
                               progress: bool = False) -> np.ndarray:
    """(N, L, 4) what each base would contribute at each position, TF-MoDISco's input.

    The observed base's entry is its attribution. ISM (of the probability, as `tfbind score`
    writes it) and corrected gradients (of the logit) are centred over the four bases, so a
    base's score is its effect relative to the average base there; DeepLIFT/SHAP (logit) gives
    multipliers . (e_b - reference) averaged over the references.
    """
    if method not in DISCOVERY_METHODS:
        raise ConfigError(f"--method {method}: choose one of {', '.join(DISCOVERY_METHODS)}")
    codes = np.asarray(codes, dtype=np.uint8)

    def kernel(chunk: np.ndarray) -> np.ndarray:
        if method == "deeplift-shap":
            return deeplift_shap(module, variables, chunk, n_references=references, seed=seed, n_policy=n_policy,
                                 hypothetical=True)
        if method == "ism":
            return center_bases(ism(module, variables, chunk, n_policy=n_policy, output="prob").delta)
        return gradients.corrected_gradients(module, variables, chunk, n_policy=n_policy)

    return apply_in_batches(kernel, codes, batch_size, progress=progress, desc=f"{method} contributions")


def center_bases(values: np.ndarray) -> np.ndarray:
    """(..., 4) scores minus their mean over the four bases (how stored ISM and gradients become hypothetical)."""
    return gradients.correct_gradients(np.asarray(values, np.float32))


__all__ = ["METHODS", "DISCOVERY_METHODS", "ARRAY_NAMES", "explain", "hypothetical_contributions", "center_bases",
           "normalize_methods", "ism", "ism_fast", "ism_reference", "gradients", "deeplift_shap"]
