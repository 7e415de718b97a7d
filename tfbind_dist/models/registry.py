"""Named model presets: the chapter's two CNNs, the six ZNF24 ablations, and the default recipe's motif_pool."""
from __future__ import annotations

from typing import Any

import flax.linen as nn

from tfbind_dist.models.families import ConvModel, ConvModelV2, ConvTransformerModel, MotifPoolModel

PRESETS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "conv": (ConvModel, {}),
    "conv_v2": (ConvModelV2, {}),
    "baseline": (ConvTransformerModel, {}),
    "single_conv_only": (
        ConvTransformerModel,
        {"num_conv_blocks": 1, "num_transformer_blocks": 0, "num_mlp_blocks": 0},
    ),
    "fewer_conv_channels": (ConvTransformerModel, {"conv_filters": 8}),
    "remove_MLP": (ConvTransformerModel, {"num_mlp_blocks": 0}),
    "add_one_transformer_block": (ConvTransformerModel, {"num_transformer_blocks": 1}),
    "add_two_transformer_block": (ConvTransformerModel, {"num_transformer_blocks": 2}),
    "motif_pool": (MotifPoolModel, {}),
}


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Instantiate preset `name`, with field overrides (e.g. dropout_rate=0.0)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    cls, preset = PRESETS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"model {name!r} has no field(s) {sorted(unknown)}; fields: {sorted(fields)}")
    return cls(**{**preset, **overrides})


def has_batch_norm(name: str) -> bool:
    """Whether the preset carries BatchNorm statistics."""
    return PRESETS[name][0] is not ConvModel
