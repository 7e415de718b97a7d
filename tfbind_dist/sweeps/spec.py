"""Sweep specs: shared defaults plus a matrix and/or list of jobs, each resolving to a RunConfig.

```yaml
name: per_tf
recipe: chapter      # the recipe every job starts from (a name or a YAML path; none: the default recipe)
defaults:            # a run config (data / model / train sections), applied on top of the recipe
  model: {name: conv_v2}
matrix:              # cartesian product over dotted keys
  data.tf: [CTCF, REST]
  train.seed: [42]
jobs:                # optional extra jobs: override dicts applied on top of defaults
  - {data.tf: ZNF24, model.name: baseline}
  - {data.tf: CTCF, resources: {hosts: 2}}   # a job may ask for its own resources
resources: {cpus: 1, gpus: 0, tpus: 0, hosts: 1}   # per training process (the --*-per-job flags override)
pack: 10             # train up to 10 jobs of one architecture as one vmapped program (--pack overrides; 1: never)
```
Every job gets a stable id from its resolved config: `{tf}-{model}-s{seed}-{hash8}`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfbind_dist import config as C
from tfbind_dist.errors import ConfigError
from tfbind_dist.experiment import Resources, base_config, job_id, number, parse_resources, read_spec

SPEC_KEYS = {"name", "recipe", "defaults", "matrix", "jobs", "resources", "pack"}


@dataclass(frozen=True)
class Job:
    """One run of a sweep."""

    job_id: str
    config: C.RunConfig
    resources: Resources = Resources()


@dataclass(frozen=True)
class SweepSpec:
    name: str
    jobs: tuple[Job, ...]
    pack: int = 1  # at most this many jobs per packed program (training/packing.py)


def _apply(base: C.RunConfig, overrides: dict[str, Any], where: str) -> C.RunConfig:
    try:
        return C.with_overrides(base, overrides)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Parse and validate a sweep spec; `overrides` (from --set/--data) apply to every job."""
    path = Path(path)
    raw = read_spec(path, "sweep spec", SPEC_KEYS)
    defaults = base_config(path, raw)
    resources = parse_resources(raw.get("resources"), str(path))
    matrix = raw.get("matrix") or {}
    if not isinstance(matrix, dict) or not all(isinstance(v, list) and v for v in matrix.values()):
        raise ConfigError(f"{path}: matrix must map dotted keys to non-empty lists")
    combos = [dict(zip(matrix, values)) for values in itertools.product(*matrix.values())] if matrix else []
    extra = raw.get("jobs") or []
    if not isinstance(extra, list) or not all(isinstance(j, dict) for j in extra):
        raise ConfigError(f"{path}: jobs must be a list of override mappings")
    if not combos and not extra:
        combos = [{}]
    jobs, seen = [], set()
    for i, overrides_i in enumerate([*combos, *extra]):
        where = f"{path} job {i} ({overrides_i})"
        overrides_i = dict(overrides_i)
        job_resources = parse_resources(overrides_i.pop("resources", None), where, resources)
        cfg = _apply(_apply(defaults, overrides_i, where), overrides or {}, f"{where} with --set")
        jid = job_id(cfg)
        if jid in seen:
            continue
        seen.add(jid)
        jobs.append(Job(jid, cfg, job_resources))
    pack = number(raw.get("pack", 1), f"{path}: pack", int, 1)
    return SweepSpec(raw.get("name") or path.stem, tuple(jobs), pack)


def select_jobs(spec: SweepSpec, only: dict[str, str]) -> SweepSpec:
    """Keep the jobs whose field (dotted key) takes one of the comma-separated values, e.g. data.tf=GABPA,REST."""
    jobs = spec.jobs
    for key, values in only.items():
        wanted = set(values.split(","))
        jobs = tuple(j for j in jobs if str(C.get_value(j.config, key)) in wanted)
    if not jobs:
        raise ConfigError(f"--only {only} selects no job of sweep {spec.name!r}")
    return SweepSpec(spec.name, jobs, spec.pack)
