"""Typed run configuration, loaded from YAML and overridden from the command line.

A run is described by one `RunConfig` (data, model, train sections). YAML files
under `jobs/` hold these sections; `--set key=value` overrides one field, by its
dotted path (`train.steps`) or, when unambiguous, by its bare name (`steps`).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfbind_dist.errors import ConfigError
from tfbind_dist.registry import MODEL_PRESETS, N_POLICIES, SPLITS, TFS  # noqa: F401 (SPLITS, TFS: re-exported)
from tfbind_dist.storage import epath, is_remote

# Settings of how one invocation runs, not of what it trains (ignored when resuming or naming a job).
OPERATIONAL_KEYS = ("train.halt_after", "train.stall_timeout", "train.steps_per_dispatch", "train.preempt_grace")
# Settings added after runs and sweeps existed: left out of the identity while at their default (off), so those
# runs resume and those sweep jobs keep their ids.
LATER_KEYS = ("train.evo_mutate_frac", "train.evo_delete_max", "train.evo_insert_max", "train.evo_invert_max",
              "train.evo_translocate_max", "train.evo_max_per_seq", "train.finetune_steps",
              "train.finetune_learning_rate", "data.flank")


def absolute_data_path(path: str) -> str:
    """`data.path` made absolute against the working directory ('synthetic' and object-store URLs unchanged)."""
    if path == "synthetic" or is_remote(path):
        return path
    return str(Path(path).expanduser().absolute())


@dataclass
class DataConfig:
    """Where a TF's splits come from and how sequences are encoded."""

    tf: str = "CTCF"
    path: str = "synthetic"  # a Parquet dataset dir, a chapter CSV dir, or "synthetic"
    n_policy: str = "uniform"  # how N is one-hot encoded: uniform | zeros | ones | error
    loader: str = "grain"  # grain | tfdata
    eval_batch_size: int = 1024
    synth_n_train: int = 6000  # rows per TF in the train split when path == "synthetic"
    synth_seed: int = 0
    flank: int = 0  # bases stored on each side of the model's window (`tfbind data peaks --flank`): training shifts
    #                 the window by up to train.jitter of them (real bases, not N); evaluation takes the centred one


@dataclass
class ModelConfig:
    """A named preset plus field overrides (e.g. dropout_rate: 0.0)."""

    name: str = "conv_v2"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """The optimisation recipe; defaults are chapter 3's."""

    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 1e-4  # used by adamw
    warmup_steps: int = 0
    eval_every: int = 100
    seed: int = 42
    augment_rc: bool = False  # train on a random strand of each sequence (reverse complement half the time)
    jitter: int = 0  # shift each training sequence by up to this many bases (vacated bases become N)
    # Evolution-inspired augmentations (EvoAug; 0 = off): each training sequence gets 1..evo_max_per_seq of those on
    evo_mutate_frac: float = 0.0  # substitutions: about this fraction of the bases mutated to random bases
    evo_delete_max: int = 0  # deletion of up to this many bases (random bases fill the freed length at both ends)
    evo_insert_max: int = 0  # insertion of up to this many random bases (length kept: half pushed out at each end)
    evo_invert_max: int = 0  # inversion (reverse complement) of a stretch of up to this many bases
    evo_translocate_max: int = 0  # translocation: circular shift by up to this many bases either way
    evo_max_per_seq: int = 3  # at most this many of the enabled evolution augmentations per sequence
    finetune_steps: int = 0  # the last this many steps train on unaugmented sequences at finetune_learning_rate
    finetune_learning_rate: float = 1e-4  # the constant learning rate of the fine-tuning phase
    patience: int = 0  # stop after this many evaluations without a better validation auROC (0 = never)
    with_baseline: bool = False  # also fit the 6-mer logistic-regression baseline; its auROC goes in summary.json
    halt_after: int | None = None  # stop this invocation after N more steps (preemption drill)
    steps_per_dispatch: int = 1  # train steps per device dispatch (less host overhead; halt_after stops at a block end)
    stall_timeout: float = 600.0  # exit (status 75) when a step, evaluation or checkpoint makes no progress this long (0 = never)
    preempt_grace: float = 20.0  # after SIGTERM/SIGINT: seconds to finish the step and save it before giving up (status 143)


@dataclass
class RunConfig:
    """Everything one training run needs; saved as RUN_DIR/config.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that decide a run's results: `to_dict` without OPERATIONAL_KEYS (nor LATER_KEYS at their
        default), data path absolute.

        Two configs with the same identity train the same model, so a run directory may be
        resumed, and a sweep job keeps its id, when only operational settings differ.
        """
        data = self.to_dict()
        data["data"]["path"] = absolute_data_path(data["data"]["path"])
        for key in OPERATIONAL_KEYS:
            section, name = key.split(".")
            data[section].pop(name, None)
        defaults = RunConfig()
        for key in LATER_KEYS:
            section, name = key.split(".")
            if getattr(getattr(self, section), name) == getattr(getattr(defaults, section), name):
                data[section].pop(name)
        return data

    def validate(self) -> "RunConfig":
        checks = [
            (self.data.n_policy in N_POLICIES, "data.n_policy", f"one of {N_POLICIES}"),
            (self.data.loader in ("grain", "tfdata"), "data.loader", "grain or tfdata"),
            (self.model.name in MODEL_PRESETS, "model.name", f"one of {sorted(MODEL_PRESETS)}"),
            (self.train.optimizer in ("adam", "adamw"), "train.optimizer", "adam or adamw"),
            (self.train.steps > 0, "train.steps", "positive"),
            (self.train.batch_size > 0, "train.batch_size", "positive"),
            (self.train.eval_every > 0, "train.eval_every", "positive"),
            (self.train.jitter >= 0, "train.jitter", "zero or positive"),
            (0.0 <= self.train.evo_mutate_frac < 0.75, "train.evo_mutate_frac", "in [0, 0.75)"),
            *((getattr(self.train, f"evo_{name}_max") >= 0, f"train.evo_{name}_max", "zero or positive")
              for name in ("delete", "insert", "invert", "translocate")),
            (self.train.evo_max_per_seq > 0, "train.evo_max_per_seq", "positive"),
            (0 <= self.train.finetune_steps < self.train.steps, "train.finetune_steps",
             f"zero or positive and less than train.steps ({self.train.steps})"),
            (self.train.finetune_learning_rate > 0, "train.finetune_learning_rate", "positive"),
            (self.train.patience >= 0, "train.patience", "zero or positive"),
            (self.train.steps_per_dispatch > 0, "train.steps_per_dispatch", "positive"),
            (self.train.stall_timeout >= 0, "train.stall_timeout", "zero or positive"),
            (self.train.preempt_grace > 0, "train.preempt_grace", "positive"),
            (self.data.eval_batch_size > 0, "data.eval_batch_size", "positive"),
            (self.data.flank >= 0, "data.flank", "zero or positive"),
            (not self.data.flank or self.train.jitter <= self.data.flank, "train.jitter",
             f"at most data.flank ({self.data.flank}): the shifts come from the stored flanks"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ConfigError(f"{key} must be {expected}, got {get_value(self, key)!r}")
        return self


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or raise naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}") from None
    return value


def _from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        key = f"{prefix}{sorted(unknown)[0]}"
        raise ConfigError(f"unknown config key {key!r}; known keys here: {sorted(names)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _from_dict(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**values)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build a validated RunConfig from nested dicts (missing keys take defaults)."""
    return _from_dict(RunConfig, data or {}, "").validate()


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Parse a YAML file (local or object storage); a missing, binary or malformed file is one ConfigError."""
    path = epath.Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a {what} is YAML)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def load(path: str | Path) -> RunConfig:
    """Load a RunConfig from a YAML file (local or object storage)."""
    data = read_yaml(path, "config file") or {}
    try:
        return from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


RECIPES_DIR = Path(__file__).parent / "recipes"  # also reachable as jobs/recipes
DEFAULT_RECIPE = "default"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path | None = None) -> RunConfig:
    """A named recipe (`default`, `chapter`, ...) or a YAML file path, as a RunConfig.

    The one rule for where a run's settings start: the recipe named, else the default recipe
    (`tfbind train`, sweep and search specs, and the Python API all come through here).
    """
    name_or_path = name_or_path or DEFAULT_RECIPE
    if is_remote(name_or_path):  # a recipe file on object storage (Path() would fold its `//`)
        return load(str(name_or_path))
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown recipe {str(name_or_path)!r}; named recipes: {recipe_names()} "
                              "(or give a YAML file path)")
    return load(path)


def save(config: RunConfig, path: str | Path) -> None:
    from tfbind_dist.storage import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _resolve_key(key: str) -> str:
    """Map a bare field name to its dotted path, if exactly one section has it."""
    if "." in key:
        return key
    owners = [f.name for f in dataclasses.fields(RunConfig) if key in {g.name for g in dataclasses.fields(typing.get_type_hints(RunConfig)[f.name])}]
    if len(owners) != 1:
        raise ConfigError(f"unknown or ambiguous config key {key!r}; use section.key (e.g. train.steps)")
    return f"{owners[0]}.{key}"


def get_value(config: RunConfig, key: str) -> Any:
    obj: Any = config
    for part in _resolve_key(key).split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def with_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a copy with dotted-key overrides applied (`model.overrides.x` is allowed)."""
    data = config.to_dict()
    for key, value in overrides.items():
        path = _resolve_key(key).split(".")
        node = data
        for part in path[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown config key {key!r}")
            node = node[part]
        if path[:2] != ["model", "overrides"] and path[-1] not in node:
            raise ConfigError(f"unknown config key {key!r}")
        if isinstance(value, str) and path[:2] == ["model", "overrides"]:
            value = yaml.safe_load(value)
        node[path[-1]] = value
    return from_dict(data)


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """Parse repeated `KEY=VALUE` flags."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out
