"""Resolve a data config to a directory of TF splits (generating synthetic data on demand)."""
from __future__ import annotations

import os
from pathlib import Path

from tfbind_dist.config import SPLITS, TFS, DataConfig
from tfbind_dist.data.io import DataError, SplitData, available_tfs, find_split_file, load_split, split_path
from tfbind_dist.storage import is_remote


def is_synthetic(path: str) -> bool:
    """Whether `data.path` is synthetic data (the cache, or a folder made by `tfbind data synth`)."""
    return path == "synthetic" or (not is_remote(path) and (Path(path) / "SYNTHETIC.md").exists())


def cache_root() -> Path:
    """The data cache: $TFBIND_CACHE, else ~/.cache/tfbind_dist."""
    return Path(os.environ.get("TFBIND_CACHE", Path.home() / ".cache" / "tfbind_dist"))


def synthetic_cache_dir(n_train: int, seed: int) -> Path:
    return cache_root() / f"synthetic-n{n_train}-s{seed}"


def resolve_data_dir(cfg: DataConfig) -> Path:
    """The directory holding `cfg.tf`'s splits; synthetic data is made once and cached."""
    if cfg.path != "synthetic":
        path = Path(cfg.path)
        if not path.is_dir():
            raise DataError(f"data path {path} is not a directory (use a dataset dir or 'synthetic')")
        return path
    if cfg.tf not in TFS:
        raise DataError(f"data.tf: no synthetic data for {cfg.tf!r}; choose from {', '.join(TFS)}")
    from tfbind_dist.data.synthetic import synthesize

    path = synthetic_cache_dir(cfg.synth_n_train, cfg.synth_seed)
    if not all(split_path(path, cfg.tf, s).exists() for s in SPLITS):
        synthesize(path, tfs=[cfg.tf], n_train=cfg.synth_n_train, seed=cfg.synth_seed)
    return path


def check_data(cfg: DataConfig, splits=SPLITS) -> Path:
    """The data directory, after checking that it holds every requested split of `cfg.tf` (reads no rows).

    Synthetic data is checked by name only (it is generated on first use).
    """
    if cfg.path == "synthetic":
        if cfg.tf not in TFS:
            raise DataError(f"data.tf: no synthetic data for {cfg.tf!r}; choose from {', '.join(TFS)}")
        return synthetic_cache_dir(cfg.synth_n_train, cfg.synth_seed)
    data_dir = resolve_data_dir(cfg)
    found = available_tfs(data_dir)
    if cfg.tf not in found:
        raise DataError(f"{data_dir}: no data for TF {cfg.tf!r} (data.tf); found "
                        f"{', '.join(sorted(found)) or 'no {TF}_{split} files'}")
    for split in splits:
        find_split_file(data_dir, cfg.tf, split)
    return data_dir


def load_splits(cfg: DataConfig, splits=SPLITS) -> dict[str, SplitData]:
    """Load the requested splits of the configured TF."""
    check_data(cfg, splits)
    data_dir = resolve_data_dir(cfg)
    loaded = {s: load_split(data_dir, cfg.tf, s, n_policy=cfg.n_policy) for s in splits}
    if cfg.flank:
        loaded = {s: d.centred(cfg.flank, f"{data_dir} {cfg.tf} {s}") for s, d in loaded.items()}
    lengths = {s: d.length for s, d in loaded.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{data_dir}: {cfg.tf} splits have different sequence lengths {lengths}")
    return loaded
