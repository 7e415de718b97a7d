"""Search specs for `tfbind tune`: a base recipe, the TFs, a search space, a searcher and a scheduler.

```yaml
name: lr_dropout
recipe: default              # a named recipe or a YAML path (none: the default recipe, as tfbind train)
defaults:                    # run-config sections applied on top of the recipe
  train: {eval_every: 150}
tfs: [GABPA, REST]           # the objective is the mean valid auROC over these TFs ...
objective: mean              # ... or `per_tf`: one search per TF
space:                       # any run-config field, by dotted key
  train.learning_rate: {loguniform: [3.0e-4, 1.0e-2]}
  model.overrides.dropout_rate: {uniform: [0.0, 0.4]}
  model.overrides.kernel_size: {choice: [11, 15, 19]}
  train.batch_size: {grid: [32, 64]}            # every value, crossed with the samples
  model.overrides.conv_filters: {randint: [32, 129]}   # [low, high)
searcher: random             # random | optuna (TPE; not with `grid`)
scheduler: {name: asha, grace_period: 300, reduction_factor: 3}   # or `none`
resources: {cpus: 1, gpus: 0, tpus: 0, hosts: 1}   # per training process; hosts > 1: one process per node
pack: true                   # a trial's runs (one per TF) train as one vmapped program in one process
max_concurrent: 2            # trials at once (0: as many as fit)
num_samples: 8
seed: 0
```
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tfbind_dist import config as C
from tfbind_dist.experiment import Resources, base_config, number, parse_resources, read_spec

SPEC_KEYS = {"name", "recipe", "defaults", "tfs", "objective", "space", "searcher", "scheduler", "resources",
             "max_concurrent", "num_samples", "seed", "pack"}
DOMAINS = ("choice", "grid", "uniform", "loguniform", "randint")
SEARCHERS = ("random", "optuna")
OBJECTIVES = ("mean", "per_tf")


@dataclass(frozen=True)
class Scheduler:
    """ASHA's settings (in training steps), or name `none`."""

    name: str = "asha"
    grace_period: int = 0  # 0: two evaluations
    reduction_factor: float = 3.0


@dataclass(frozen=True)
class SearchSpec:
    name: str
    base: C.RunConfig  # recipe + defaults + command-line overrides (data.tf set per trial)
    tfs: tuple[str, ...]
    objective: str
    space: dict[str, tuple[str, list[Any]]]  # dotted key -> (domain, arguments)
    searcher: str = "random"
    scheduler: Scheduler = field(default_factory=Scheduler)
    resources: Resources = Resources()
    max_concurrent: int = 0
    num_samples: int = 4
    seed: int = 0
    pack: bool = False  # a trial's per-TF runs as one packed program (training/packing.py), on one bundle

    def trial_processes(self) -> int:
        """Training processes one trial starts: one packed process, else one per TF and host."""
        return 1 if self.pack else self.resources.hosts * len(self.tfs)

    def max_steps(self) -> int:
        """The longest a trial trains (train.steps, or its largest searched value)."""
        domain, args = self.space.get("train.steps", ("choice", [self.base.train.steps]))
        return int(max(args) if domain in ("choice", "grid") else args[1])

    def grace_steps(self) -> int:
        return self.scheduler.grace_period or 2 * self.base.train.eval_every

    def to_dict(self) -> dict[str, Any]:
        """What identifies the experiment (compared when a search directory is resumed)."""
        return {"name": self.name, "base": self.base.identity(), "tfs": list(self.tfs), "objective": self.objective,
                "space": {k: [d, list(a)] for k, (d, a) in self.space.items()}, "searcher": self.searcher,
                "scheduler": vars(self.scheduler), "cpus": self.resources.cpus, "gpus": self.resources.gpus,
                "tpus": self.resources.tpus, "hosts": self.resources.hosts,
                "max_concurrent": self.max_concurrent, "num_samples": self.num_samples, "seed": self.seed,
                "pack": self.pack}

    def tune_space(self) -> dict[str, Any]:
        """The space as Ray Tune domains, keyed by dotted config key."""
        from ray import tune

        make = {"choice": tune.choice, "grid": tune.grid_search, "uniform": lambda a: tune.uniform(*a),
                "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a)}
        return {key: make[domain](args) for key, (domain, args) in self.space.items()}

    def trial_config(self, params: dict[str, Any], tf: str) -> C.RunConfig:
        """The run config of one trial's run on one TF."""
        return C.with_overrides(self.base, {**params, "data.tf": tf})


def _domain(key: str, value: Any, where: str) -> tuple[str, list[Any]]:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DOMAINS:
        raise C.ConfigError(f"{where}: space.{key} must be one of {{{', '.join(f'{d}: [...]' for d in DOMAINS)}}}, "
                            f"got {value!r}")
    domain, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise C.ConfigError(f"{where}: space.{key}.{domain} must be a non-empty list, got {args!r}")
    if domain in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) \
                or not args[0] < args[1]:
            raise C.ConfigError(f"{where}: space.{key}.{domain} must be [low, high] numbers with low < high, "
                                f"got {args!r}")
        if domain == "loguniform" and args[0] <= 0:
            raise C.ConfigError(f"{where}: space.{key}.loguniform needs a positive low bound, got {args[0]!r}")
        if domain == "randint" and not all(float(a).is_integer() for a in args):
            raise C.ConfigError(f"{where}: space.{key}.randint bounds must be integers, got {args!r}")
        args = [int(a) for a in args] if domain == "randint" else [float(a) for a in args]
    return domain, list(args)


def _corners(space: dict[str, tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Points covering every value a config check can reject: each choice, both ends of each range."""
    points = []
    for key, (domain, args) in space.items():
        values = args if domain in ("choice", "grid") else [args[0], args[1] - 1 if domain == "randint" else args[1]]
        points += [{key: v} for v in values]
    return points


def load_search(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchSpec:
    """Parse and validate a search spec; `overrides` (--set / --data) apply to the base of every trial.

    Every searched value is tried against the run config, so a bad key or value is reported
    here, naming it, before any trial starts.
    """
    path = Path(path)
    raw = read_spec(path, "search spec", SPEC_KEYS)
    base = base_config(path, raw, overrides)
    tfs = raw.get("tfs") or [base.data.tf]
    if isinstance(tfs, str):
        tfs = [tfs]
    if not isinstance(tfs, list):
        raise C.ConfigError(f"{path}: tfs must be a list of TF names, got {tfs!r}")
    bad = [t for t in tfs if t not in C.TFS]
    if bad:
        raise C.ConfigError(f"{path}: tfs: unknown TF {bad[0]!r}; known: {list(C.TFS)}")
    if len(set(tfs)) < len(tfs):
        raise C.ConfigError(f"{path}: tfs: {sorted(t for t in set(tfs) if tfs.count(t) > 1)[0]!r} is listed twice")
    objective = raw.get("objective", "mean")
    if objective not in OBJECTIVES:
        raise C.ConfigError(f"{path}: objective must be one of {OBJECTIVES}, got {objective!r}")
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, dict) or not space_raw:
        raise C.ConfigError(f"{path}: space must map dotted config keys to domains, e.g. "
                            "train.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}")
    space = {key: _domain(key, value, str(path)) for key, value in space_raw.items()}
    if "data.tf" in space:
        raise C.ConfigError(f"{path}: space.data.tf: list the TFs under `tfs:` instead")
    from tfbind_dist.models import build_model

    for point in _corners(space):
        try:
            config = C.with_overrides(base, {**point, "data.tf": tfs[0]})
            try:
                build_model(config.model.name, **config.model.overrides)
            except (TypeError, ValueError) as err:
                raise C.ConfigError(f"model.overrides: {err}") from None
        except C.ConfigError as err:
            raise C.ConfigError(f"{path}: space.{next(iter(point))}={next(iter(point.values()))!r}: {err}") from None
    searcher = raw.get("searcher", "random")
    if searcher not in SEARCHERS:
        raise C.ConfigError(f"{path}: searcher must be one of {SEARCHERS}, got {searcher!r}")
    if searcher == "optuna" and any(d == "grid" for d, _ in space.values()):
        raise C.ConfigError(f"{path}: searcher optuna cannot search a `grid` domain; use `choice` or searcher random")
    sched_raw = raw.get("scheduler", {"name": "asha"})
    if sched_raw in (None, "none"):
        sched_raw = {"name": "none"}
    if isinstance(sched_raw, str):
        sched_raw = {"name": sched_raw}
    if not isinstance(sched_raw, dict) or set(sched_raw) - {"name", "grace_period", "reduction_factor"} \
            or sched_raw.get("name", "asha") not in ("asha", "none"):
        raise C.ConfigError(f"{path}: scheduler must be `none` or {{name: asha, grace_period: STEPS, "
                            f"reduction_factor: R}}; got {sched_raw!r}")
    scheduler = Scheduler(sched_raw.get("name", "asha"),
                          number(sched_raw.get("grace_period", 0), f"{path}: scheduler.grace_period", int, 0),
                          number(sched_raw.get("reduction_factor", 3), f"{path}: scheduler.reduction_factor", float, 1))
    if scheduler.reduction_factor <= 1:
        raise C.ConfigError(f"{path}: scheduler.reduction_factor must be > 1, got {scheduler.reduction_factor}")
    resources = parse_resources(raw.get("resources"), str(path))
    hosts = resources.hosts
    if hosts > 1 and objective == "mean" and len(tfs) > 1:
        raise C.ConfigError(f"{path}: resources.hosts={hosts} trains one TF per trial; use objective: per_tf")
    pack = raw.get("pack", False)
    if not isinstance(pack, bool) or (pack and hosts > 1):
        raise C.ConfigError(f"{path}: pack must be true or false (and false with resources.hosts > 1: a pack "
                            f"runs in one process); got {pack!r}")
    spec = SearchSpec(
        name=raw.get("name") or path.stem, base=base, tfs=tuple(tfs), objective=objective, space=space,
        searcher=searcher, scheduler=scheduler, resources=resources,
        max_concurrent=number(raw.get("max_concurrent", 0), f"{path}: max_concurrent", int, 0),
        num_samples=number(raw.get("num_samples", 4), f"{path}: num_samples", int, 1),
        seed=number(raw.get("seed", 0), f"{path}: seed", int, 0), pack=pack)
    if scheduler.name == "asha" and spec.grace_steps() > spec.max_steps():
        raise C.ConfigError(f"{path}: scheduler.grace_period={spec.grace_steps()} is longer than the trials "
                            f"({spec.max_steps()} steps); lower it or raise train.steps")
    return spec


def with_samples(spec: SearchSpec, num_samples: int | None) -> SearchSpec:
    """The spec with --num-samples applied."""
    if num_samples is None:
        return spec
    if num_samples < 1:
        raise C.ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    return replace(spec, num_samples=num_samples)
