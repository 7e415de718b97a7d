"""Where motif discovery's inputs come from: sequences and their hypothetical contributions.

Either computed here from a run's model (a split of its data, or a file of sequences), or read
from what `tfbind score` already wrote (`--from-scores`), joined to the shards it scored by `id`,
so discovery over a genome's worth of scored windows recomputes nothing.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.errors import DataError
from tfbind_dist.interpret import center_bases, hypothetical_contributions
from tfbind_dist.rundir import RunDir, column_keys
from tfbind_dist.scoring.scorer import codes_of
from tfbind_dist.scoring.scores import scored_shards
from tfbind_dist.scoring.service import runs_length
from tfbind_dist.storage import is_remote, open_parquet
from tfbind_dist.training.restore import Model

SCORE_COLUMNS = {"ism": "ism", "grad-corrected": "grad_corrected", "deeplift-shap": "deeplift_shap"}


class Contributions(NamedTuple):
    codes: np.ndarray  # (N, L) uint8 base codes
    hypothetical: np.ndarray  # (N, L, 4) float32
    names: list[str]  # where each sequence came from (split row, file row, scores id)


def from_model(model: Model, codes: np.ndarray, names: list[str], method: str, *, references: int = 20,
               seed: int = 0, progress: bool = True) -> Contributions:
    """Hypothetical contributions of `codes` computed with the run's best model."""
    hypothetical = hypothetical_contributions(model.module, model.variables, codes, method,
                                              n_policy=model.config.data.n_policy, references=references, seed=seed,
                                              progress=progress)
    return Contributions(np.asarray(codes, np.uint8), np.asarray(hypothetical, np.float32), list(names))


def strongest(contributions: Contributions, keep: int) -> Contributions:
    """The `keep` sequences with the largest total |contribution| (in their original order)."""
    if len(contributions.codes) <= keep:
        return contributions
    total = observed_total(contributions.codes, contributions.hypothetical)
    rows = np.sort(np.argpartition(-total, keep - 1)[:keep])
    return Contributions(contributions.codes[rows], contributions.hypothetical[rows],
                         [contributions.names[i] for i in rows])


def observed_total(codes: np.ndarray, hypothetical: np.ndarray) -> np.ndarray:
    """(N,) total |contribution| of the observed bases of each sequence."""
    return np.abs((one_hot(codes, "zeros") * hypothetical).sum(-1)).sum(-1)


def _same_run(a: str, b: str) -> bool:
    if is_remote(a) or is_remote(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def score_column(settings: dict, scores_dir, run: str, method: str) -> tuple[str, int]:
    """The column of `run`'s contributions by `method` in a scoring output with these settings, and the
    runs' sequence length."""
    runs = settings["runs"]
    configs = [RunDir(r).load_config() for r in runs]
    index = next((i for i, r in enumerate(runs) if _same_run(r, run)), None)
    if index is None:
        raise DataError(f"--run {run} is not one of the runs scored in {scores_dir} ({', '.join(runs)})")
    name = SCORE_COLUMNS[method]
    if name not in settings["outputs"]:
        raise DataError(f"{scores_dir} was scored without the '{name}' output ({', '.join(settings['outputs'])}); "
                        f"score with --outputs {name} or choose --method among those it has")
    key = column_keys([c.data.tf for c in configs], runs)[index]
    return f"{key}_{name}", runs_length([runs[index]])


def from_scores(scores_dir, run: str, method: str, *, keep: int, progress: bool = True) -> Contributions:
    """The `keep` windows with the largest total |contribution| among everything `tfbind score` wrote for `run`.

    Stored ISM (changes of probability) is centred over the four bases; stored corrected gradients
    and DeepLIFT/SHAP (hypothetical contributions) are used as they are. Memory holds `keep`
    windows plus one shard.
    """
    settings, shards = scored_shards(scores_dir)
    column, length = score_column(settings, scores_dir, run, method)
    best: Contributions | None = None
    for scores_path, shard_path in tqdm(shards, desc="read scores", unit="shard", disable=not progress):
        with open_parquet(scores_path) as source:
            scores = source.read(columns=["id", column])
        with open_parquet(shard_path) as source:
            sequence_column = "codes" if "codes" in source.schema_arrow.names else "sequence"
            shard = source.read(columns=["id", sequence_column])
        rows = pc.index_in(scores.column("id"), shard.column("id"))
        if rows.null_count:
            raise DataError(f"{scores_path}: ids missing from the scored shard {shard_path}")
        codes, _ = codes_of(shard.take(rows), length)
        values = scores.column(column).combine_chunks()
        while pa.types.is_fixed_size_list(values.type) or pa.types.is_list(values.type):
            values = values.flatten()
        hypothetical = np.asarray(values, np.float32).reshape(len(codes), length, 4)
        if method == "ism":
            hypothetical = center_bases(hypothetical)
        names = [f"id {i}" for i in scores.column("id").to_pylist()]
        part = Contributions(codes, hypothetical, names)
        if best is not None:
            part = Contributions(np.concatenate([best.codes, codes]),
                                 np.concatenate([best.hypothetical, hypothetical]), best.names + names)
        best = strongest(part, keep)
    return best


__all__ = ["Contributions", "SCORE_COLUMNS", "from_model", "from_scores", "observed_total", "score_column",
           "strongest"]
