"""Named model presets: the chapter's two CNNs, the six ZNF24 ablations, and the default recipe's motif_pool."""
from __future__ import annotations

from typing import Any

import flax.linen as nn

from tfbind_dist.errors import ConfigError
from tfbind_dist.models import families
from tfbind_dist.registry import MODEL_PRESETS

PRESETS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    name: (getattr(families, family), overrides) for name, (family, overrides) in MODEL_PRESETS.items()
}


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Instantiate preset `name`, with field overrides (e.g. dropout_rate=0.0)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    cls, preset = PRESETS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"model {name!r} has no field(s) {sorted(unknown)}; fields: {sorted(fields)}")
    return cls(**{**preset, **overrides})


def has_batch_norm(name: str) -> bool:
    """Whether the preset carries BatchNorm statistics."""
    return PRESETS[name][0] is not families.ConvModel
