"""What the grid runner (`sweeps/`) and the search (`tuning/`) share: reading their spec files, the
resources of a training process, job ids, and the leaderboard files.

Both kinds of spec start from a recipe the same way as `tfbind train` (`config.load_recipe`: the
spec's `recipe:`, else the default recipe), then apply `defaults:` and the command line's `--set`.
Packing (`training/packing.py`): which runs may share one vmapped program (`pack_key`) and
how a list of jobs is cut into packs (`group_into_packs`). `resources:` means the same in both: per training process `cpus`, `gpus`, `tpus` (Ray resource
`TPU`), and `hosts` (processes of one multi-host job, one per node).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence, TypeVar

from tfbind_dist import config as C
from tfbind_dist.errors import ConfigError


def read_spec(path: Path, what: str, keys: set[str]) -> dict[str, Any]:
    """A spec file's top-level mapping, its keys checked against `keys` (the first unknown one named)."""
    raw = C.read_yaml(path, what) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} is a mapping with keys {sorted(keys)}")
    unknown = set(raw) - keys
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; a {what} has {sorted(keys)}")
    return raw


def flatten(section: Any, prefix: str = "") -> dict[str, Any]:
    """Nested {train: {steps: 5}} -> {"train.steps": 5} (model.overrides too: model.overrides.dropout_rate)."""
    if not isinstance(section, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'defaults'} must be a mapping, got {section!r}")
    flat = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def base_config(path: Path, raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> C.RunConfig:
    """The run config every job or trial of a spec starts from: its recipe (the default recipe when it
    names none, as `tfbind train`), then its `defaults`, then the command line's overrides."""
    base = None
    for where, step in (("recipe", lambda _: C.load_recipe(raw.get("recipe"))),
                        ("defaults", lambda b: C.with_overrides(b, flatten(raw.get("defaults") or {}))),
                        ("--set/--data", lambda b: C.with_overrides(b, overrides or {}))):
        try:
            base = step(base)
        except ConfigError as err:
            raise ConfigError(f"{path}: {where}: {err}") from None
    return base


def job_id(config: C.RunConfig) -> str:
    """A run's stable name from its resolved config: `{tf}-{model}-s{seed}-{hash8}`."""
    digest = hashlib.sha256(json.dumps(config.identity(), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{config.data.tf}-{config.model.name}-s{config.train.seed}-{digest}"


# What the members of one pack may differ in (dotted config keys); all other settings must be equal.
MEMBER_KEYS = ("data.tf", "data.path", "data.synth_n_train", "data.synth_seed", "data.eval_batch_size",
               "train.seed", "train.learning_rate", "train.weight_decay", "train.patience", "train.eval_every",
               "train.with_baseline", "train.halt_after", "model.overrides.dropout_rate")


def pack_key(config: C.RunConfig) -> str:
    """The settings every member of a pack shares, as one string: runs with equal keys can be packed."""
    data = config.to_dict()
    for key in MEMBER_KEYS:
        *parents, name = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node.pop(name, None)
    return json.dumps(data, sort_keys=True, default=str)


def check_packable(configs: Sequence[C.RunConfig]) -> None:
    """Raise a ConfigError naming the first setting in which the runs cannot share one program."""
    first = json.loads(pack_key(configs[0]))
    for config in configs[1:]:
        other = json.loads(pack_key(config))
        for section in first:
            for name in sorted(set(first[section]) | set(other[section])):
                if first[section].get(name) != other[section].get(name):
                    raise ConfigError(
                        f"runs {configs[0].data.tf} and {config.data.tf} cannot share a pack: {section}.{name} is "
                        f"{first[section].get(name)!r} vs {other[section].get(name)!r} (members may differ only "
                        f"in {', '.join(MEMBER_KEYS)})")


T = TypeVar("T")


def group_into_packs(items: Sequence[T], key, size: int) -> list[list[T]]:
    """`items` grouped by `key(item)` (None: never packed) into packs of at most `size`, in first-seen order."""
    groups: dict[Any, list[list[T]]] = {}
    packs: list[list[T]] = []
    for item in items:
        k = key(item) if size > 1 else None
        if k is None or not groups.get(k) or len(groups[k][-1]) >= size:
            packs.append([item])
            if k is not None:
                groups.setdefault(k, []).append(packs[-1])
        else:
            groups[k][-1].append(item)
    return packs


@dataclass(frozen=True)
class Resources:
    """What one training process of a job gets, and over how many hosts (one process each) the job runs."""

    cpus: float = 1.0
    gpus: float = 0.0
    tpus: float = 0.0
    hosts: int = 1

    def bundle(self) -> dict[str, float]:
        """The resources of one process, as a placement-group bundle (zero amounts left out)."""
        return {k: float(v) for k, v in {"CPU": self.cpus, "GPU": self.gpus, "TPU": self.tpus}.items() if v}

    def with_flags(self, **flags: float | int | None) -> "Resources":
        """These resources with the command line's flags (those given, not None) in place of the spec's."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


RESOURCE_KEYS = ("cpus", "gpus", "tpus", "hosts")


def number(value: Any, key: str, kind: type, minimum: float):
    """`value` as int or float, at least `minimum`; else an error naming `key`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        (kind is float or float(value).is_integer())
    if not ok or value < minimum:
        raise ConfigError(f"{key} must be {'an integer' if kind is int else 'a number'} >= {minimum}, got {value!r}")
    return kind(value)


def parse_resources(raw: Any, where: str, base: Resources = Resources()) -> Resources:
    """A spec's `resources:` mapping over `base`; every value checked, the bad one named."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: resources must be a mapping of {', '.join(RESOURCE_KEYS)}; got {raw!r}")
    unknown = set(raw) - set(RESOURCE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: resources: unknown key {sorted(unknown)[0]!r}; use {', '.join(RESOURCE_KEYS)}")
    values = {key: number(raw[key], f"{where}: resources.{key}", int if key == "hosts" else float,
                          1 if key == "hosts" else 0) for key in raw}
    resources = replace(base, **values)
    if not resources.cpus and not resources.gpus and not resources.tpus:
        raise ConfigError(f"{where}: resources: a training process needs cpus, gpus or tpus (all are 0)")
    return resources


def to_markdown(table) -> str:
    """A DataFrame as a Markdown table (floats to 4 decimals, missing values as '-')."""
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    fmt = lambda v: "-" if v is None or v != v else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return header + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in table.itertuples(index=False))


LEADERBOARD = "leaderboard"


def write_leaderboard(table, out) -> None:
    """OUT/leaderboard.parquet and OUT/leaderboard.md (values of mixed-type columns stored as text)."""
    import pyarrow as pa

    from tfbind_dist.storage import write_table_atomic, write_text_atomic

    stored = table.copy()
    for column in stored.columns[stored.dtypes == object]:
        stored[column] = stored[column].map(lambda v: None if v is None else str(v))
    write_table_atomic(pa.Table.from_pandas(stored, preserve_index=False), out / f"{LEADERBOARD}.parquet")
    write_text_atomic(out / f"{LEADERBOARD}.md", to_markdown(table))
