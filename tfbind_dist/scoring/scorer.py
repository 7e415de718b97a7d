"""Scoring a batch of sequences with one or several trained models: the per-actor work of `tfbind score`.

Pure with respect to files: it takes a pyarrow table (an `id` column, `codes` as fixed-size
binary or `sequence` as text, plus pass-through columns) and returns a table of scores.
Invalid rows are not scored; they come back listed in `errors` with their reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from tfbind_dist.data.batching import pad_rows
from tfbind_dist.data.encoding import N_CODE, encode_bytes
from tfbind_dist.data.shard import column_codes
from tfbind_dist.errors import ConfigError, DataError, SequenceError
from tfbind_dist.interpret import gradients
from tfbind_dist.interpret.deeplift import deeplift_shap
from tfbind_dist.interpret.ism import ism
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.rundir import column_keys
from tfbind_dist.training.metrics import sigmoid
from tfbind_dist.training.restore import Model, load_model

WINDOW_OUTPUTS = ("prob", "logit", "grad", "grad_corrected", "ism", "ism_summary", "deeplift_shap")
VARIANT_OUTPUTS = ("variant_effect", "ism_center", "grad_center")  # need variant shards (`tfbind variants`)
OUTPUTS = WINDOW_OUTPUTS + VARIANT_OUTPUTS
BASES = np.array(list("ACGT"))
PASS_THROUGH = ("chrom", "start", "end", "name", "region_start", "region_end", "strand", "off_end", "line")
VARIANT_COLUMNS = ("alt_codes", "chrom", "pos", "vcf_id", "ref", "alt", "off_end")
INPUT_COLUMNS = ("id", "codes", "sequence", *PASS_THROUGH, *VARIANT_COLUMNS)  # what a scorer reads from a shard


class Scored(NamedTuple):
    table: pa.Table  # one row per valid input row
    errors: list[tuple[int, str]]  # (row index in the input batch, reason)


class ScoringModel(NamedTuple):
    key: str  # column prefix, e.g. "CTCF"
    model: Model


def load_models(runs: list[str | Path]) -> list[ScoringModel]:
    """Best checkpoints of the runs, keyed by their column prefixes."""
    models = [load_model(run) for run in runs]
    return [ScoringModel(k, m) for k, m in zip(column_keys([m.tf for m in models], runs), models)]


def normalize_outputs(outputs) -> tuple[str, ...]:
    """Output names in their canonical spelling (`grad-corrected` = `grad_corrected`), checked, without repeats."""
    canonical = [o.strip().replace("-", "_") for o in outputs if o.strip()]
    unknown = [o for o in canonical if o not in OUTPUTS]
    if unknown or not canonical:
        raise ConfigError(f"--outputs: unknown or missing output(s) {unknown}; choose from {', '.join(OUTPUTS)}")
    return tuple(dict.fromkeys(canonical))


def codes_of(table: pa.Table, length: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(N, L) codes from `codes` or `sequence`, with invalid rows zeroed and listed."""
    errors: list[tuple[int, str]] = []
    n = table.num_rows
    if "codes" in table.column_names:
        buf, lengths = column_codes(table.column("codes"), length)
        bad_code = (buf > N_CODE).any(axis=1)
        for i in np.flatnonzero(lengths != length):
            errors.append((int(i), f"length {lengths[i]}, the model expects {length}"))
        for i in np.flatnonzero(bad_code & (lengths == length)):
            errors.append((int(i), f"invalid base code {int(buf[i].max())} at position {int(np.argmax(buf[i] > N_CODE))}"))
        codes = np.where((lengths == length)[:, None] & ~bad_code[:, None], buf, 0).astype(np.uint8)
        return codes, errors
    sequences = table.column("sequence").to_pylist()
    codes = np.zeros((n, length), np.uint8)
    for i, seq in enumerate(sequences):
        if seq is None or len(seq) != length:
            errors.append((i, f"length {0 if seq is None else len(seq)}, the model expects {length}"))
            continue
        raw = np.frombuffer(seq.encode("ascii", "replace"), np.uint8)[None]
        try:
            codes[i] = encode_bytes(raw)[0]
        except SequenceError as err:
            errors.append((i, str(err).split(": ", 1)[1]))
    return codes, errors


def _rows(values: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, features), also for N = 0."""
    return values.reshape(len(values), int(np.prod(values.shape[1:])))


def _fixed_list(values: np.ndarray, dtype) -> pa.Array:
    flat = _rows(values).astype(dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def score_table(table: pa.Table, models: list[ScoringModel], outputs: tuple[str, ...], *,
                ism_dtype: str = "float16", pad_to: int | None = None) -> Scored:
    """Score every valid row of `table` with every model; see the README's output schema."""
    outputs = normalize_outputs(outputs)
    length = models[0].model.length
    codes, errors = codes_of(table, length)
    variant = any(o in VARIANT_OUTPUTS for o in outputs)
    if variant:
        if "alt_codes" not in table.column_names:
            raise DataError(f"outputs {', '.join(VARIANT_OUTPUTS)} need variant shards (made by `tfbind variants`)")
        alt_codes, alt_errors = codes_of(table.select(["alt_codes"]).rename_columns(["codes"]), length)
        errors = sorted(dict([(i, f"ALT window: {r}") for i, r in alt_errors] + errors).items())
    good = np.ones(table.num_rows, bool)
    good[[i for i, _ in errors]] = False
    codes = codes[good]
    n = len(codes)
    codes = pad_rows(codes, pad_to or n)  # fixed batch shapes: one compilation per kernel
    if variant:
        alt_codes = pad_rows(alt_codes[good], pad_to or n)
    columns = _identity_columns(table, pa.array(good))
    dtype = np.float16 if ism_dtype == "float16" else np.float32
    for key, model in models:
        module, variables, kwargs = model.module, model.variables, {"n_policy": model.n_policy}
        if variant:
            columns.update(_variant_columns(key, model, codes, alt_codes, n, outputs))
        if "prob" in outputs or "logit" in outputs:
            logit = np.asarray(predict(module, variables, codes, output="logit", **kwargs))[:n]
            if "prob" in outputs:
                columns[f"{key}_prob"] = pa.array(sigmoid(logit.astype(np.float64)).astype(np.float32))
            if "logit" in outputs:
                columns[f"{key}_logit"] = pa.array(logit)
        if "grad" in outputs or "grad_corrected" in outputs:
            grad = np.asarray(gradients.input_gradients(module, variables, codes, **kwargs))[:n]
            if "grad" in outputs:
                columns[f"{key}_grad"] = _fixed_list(grad, np.float32)
            if "grad_corrected" in outputs:
                columns[f"{key}_grad_corrected"] = _fixed_list(gradients.correct_gradients(grad), np.float32)
        if "ism" in outputs or "ism_summary" in outputs:
            delta = np.asarray(ism(module, variables, codes, output="prob", **kwargs).delta)[:n]
            if "ism" in outputs:
                columns[f"{key}_ism"] = _fixed_list(delta, dtype)
            if "ism_summary" in outputs:
                columns.update(_ism_summary(key, delta))
        if "deeplift_shap" in outputs:  # logit, 20 dinucleotide shuffles per window, seed 0 (as `tfbind explain`);
            # all four bases' hypothetical contributions: the observed base's is the attribution (TF-MoDISco's input)
            columns[f"{key}_deeplift_shap"] = _fixed_list(
                deeplift_shap(module, variables, codes[:n], hypothetical=True, **kwargs), np.float32)
    return Scored(pa.table(columns), errors)


def _identity_columns(table: pa.Table, keep: pa.Array) -> dict[str, pa.Array]:
    """The kept rows' identifying columns: `id` and carried columns, or for variant shards `variant`
    (the shard row number), `chrom`, `pos`, `id` (the VCF's ID), `ref`, `alt`, `off_end`."""
    if "vcf_id" in table.column_names:
        pairs = [("variant", "id"), ("chrom", "chrom"), ("pos", "pos"), ("id", "vcf_id"), ("ref", "ref"),
                 ("alt", "alt"), ("off_end", "off_end")]
    else:
        pairs = [("id", "id")] + [(c, c) for c in PASS_THROUGH if c in table.column_names]
    return {name: table.column(source).filter(keep) for name, source in pairs}


def _variant_columns(key: str, model: Model, ref: np.ndarray, alt: np.ndarray, n: int,
                     outputs: tuple[str, ...]) -> dict[str, pa.Array]:
    """Per model: ref/alt probability and logit and their differences (alt - ref), and optional
    attribution at the variant (the window's centre base): `ism_center`, the change of probability
    for each base there (0 for the reference base), or `grad_center`, the corrected input gradient
    of the logit there."""
    from tfbind_dist.data.variants import variant_centre

    module, variables, kwargs = model.module, model.variables, {"n_policy": model.n_policy}
    logits = {side: np.asarray(predict(module, variables, c, output="logit", **kwargs))[:n].astype(np.float64)
              for side, c in (("ref", ref), ("alt", alt))}
    probs = {side: sigmoid(z) for side, z in logits.items()}
    columns = {}
    if "variant_effect" in outputs:
        for side in ("ref", "alt"):
            columns[f"{key}_{side}_prob"] = pa.array(probs[side].astype(np.float32))
            columns[f"{key}_{side}_logit"] = pa.array(logits[side].astype(np.float32))
        columns[f"{key}_delta_prob"] = pa.array((probs["alt"] - probs["ref"]).astype(np.float32))
        columns[f"{key}_delta_logit"] = pa.array((logits["alt"] - logits["ref"]).astype(np.float32))
    centre = variant_centre(ref.shape[1])
    if "ism_center" in outputs:
        changes = np.zeros((n, 4), np.float32)
        for base in range(4):
            mutant = ref.copy()
            mutant[:, centre] = base
            prob = np.asarray(predict(module, variables, mutant, output="prob", **kwargs))[:n]
            changes[:, base] = np.where(ref[:n, centre] == base, 0.0, prob - probs["ref"])
        columns[f"{key}_ism_center"] = _fixed_list(changes, np.float32)
    if "grad_center" in outputs:
        grad = np.asarray(gradients.input_gradients(module, variables, ref, **kwargs))[:n, centre]
        columns[f"{key}_grad_center"] = _fixed_list(gradients.correct_gradients(grad), np.float32)
    return columns


def _ism_summary(key: str, delta: np.ndarray) -> dict[str, pa.Array]:
    """Per-position importance (sum of |delta|) and the strongest loss- and gain-of-binding substitutions."""
    flat = _rows(delta)
    out = {f"{key}_ism_importance": _fixed_list(np.abs(delta).sum(-1), np.float16)}
    for name, pick in (("loss", np.argmin), ("gain", np.argmax)):
        idx = pick(flat, axis=1)
        out[f"{key}_ism_{name}_pos"] = pa.array((idx // 4).astype(np.int32))
        out[f"{key}_ism_{name}_alt"] = pa.array(BASES[idx % 4])
        out[f"{key}_ism_{name}_delta"] = pa.array(flat[np.arange(len(flat)), idx].astype(np.float32))
    return out


__all__ = ["OUTPUTS", "ScoringModel", "Scored", "load_models", "normalize_outputs", "score_table"]
