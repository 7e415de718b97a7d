"""Sweep specs: shared defaults plus a matrix and/or list of jobs, each resolving to a RunConfig.

```yaml
name: per_tf
recipe: chapter      # optional: start from a named recipe (or a YAML path); default: the built-in defaults
defaults:            # a run config (data / model / train sections), applied on top of the recipe
  model: {name: conv_v2}
matrix:              # cartesian product over dotted keys
  data.tf: [CTCF, REST]
  train.seed: [42]
jobs:                # optional extra jobs: override dicts applied on top of defaults
  - {data.tf: ZNF24, model.name: baseline}
```
Every job gets a stable id from its resolved config: `{tf}-{model}-s{seed}-{hash8}`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfbind_dist import config as C

SPEC_KEYS = {"name", "recipe", "defaults", "matrix", "jobs", "hosts"}


@dataclass(frozen=True)
class Job:
    """One run of a sweep."""

    job_id: str
    config: C.RunConfig
    hosts: int = 1


@dataclass(frozen=True)
class SweepSpec:
    name: str
    jobs: tuple[Job, ...]


def job_id(config: C.RunConfig) -> str:
    data = config.identity()
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{config.data.tf}-{config.model.name}-s{config.train.seed}-{digest}"


def flatten(section: Any, prefix: str = "") -> dict[str, Any]:
    """Nested {train: {steps: 5}} -> {"train.steps": 5} (model.overrides too: model.overrides.dropout_rate)."""
    if not isinstance(section, dict):
        raise C.ConfigError(f"{prefix.rstrip('.') or 'defaults'} must be a mapping, got {section!r}")
    flat = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _apply(base: C.RunConfig, overrides: dict[str, Any], where: str) -> C.RunConfig:
    try:
        return C.with_overrides(base, overrides)
    except C.ConfigError as err:
        raise C.ConfigError(f"{where}: {err}") from None


def read_spec(path: Path, what: str, keys: set[str]) -> dict[str, Any]:
    """A spec file's top-level mapping, its keys checked against `keys` (the first unknown one named)."""
    raw = C.read_yaml(path, what) or {}
    if not isinstance(raw, dict):
        raise C.ConfigError(f"{path}: a {what} is a mapping with keys {sorted(keys)}")
    unknown = set(raw) - keys
    if unknown:
        raise C.ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; a {what} has {sorted(keys)}")
    return raw


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Parse and validate a sweep spec; `overrides` (from --set/--data) apply to every job."""
    path = Path(path)
    raw = read_spec(path, "sweep spec", SPEC_KEYS)
    try:
        base = C.load_recipe(raw["recipe"]) if raw.get("recipe") else C.RunConfig()
        defaults = _apply(base, flatten(raw.get("defaults") or {}), "defaults")
    except C.ConfigError as err:
        raise C.ConfigError(f"{path}: defaults: {err}") from None
    matrix = raw.get("matrix") or {}
    if not isinstance(matrix, dict) or not all(isinstance(v, list) and v for v in matrix.values()):
        raise C.ConfigError(f"{path}: matrix must map dotted keys to non-empty lists")
    combos = [dict(zip(matrix, values)) for values in itertools.product(*matrix.values())] if matrix else []
    extra = raw.get("jobs") or []
    if not isinstance(extra, list) or not all(isinstance(j, dict) for j in extra):
        raise C.ConfigError(f"{path}: jobs must be a list of override mappings")
    if not combos and not extra:
        combos = [{}]
    hosts = int(raw.get("hosts", 1))
    jobs, seen = [], set()
    for i, overrides_i in enumerate([*combos, *extra]):
        where = f"{path} job {i} ({overrides_i})"
        overrides_i = dict(overrides_i)
        job_hosts = int(overrides_i.pop("hosts", hosts))  # a job may ask for its own number of hosts
        cfg = _apply(_apply(defaults, overrides_i, where), overrides or {}, f"{where} with --set")
        jid = job_id(cfg)
        if jid in seen:
            continue
        seen.add(jid)
        jobs.append(Job(jid, cfg, job_hosts))
    return SweepSpec(raw.get("name") or path.stem, tuple(jobs))


def select_jobs(spec: SweepSpec, only: dict[str, str]) -> SweepSpec:
    """Keep the jobs whose field (dotted key) takes one of the comma-separated values, e.g. data.tf=GABPA,REST."""
    jobs = spec.jobs
    for key, values in only.items():
        wanted = set(values.split(","))
        jobs = tuple(j for j in jobs if str(C.get_value(j.config, key)) in wanted)
    if not jobs:
        raise C.ConfigError(f"--only {only} selects no job of sweep {spec.name!r}")
    return SweepSpec(spec.name, jobs)
