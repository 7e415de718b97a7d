"""The named presets as plain data (family name, field overrides): readable without importing Flax."""
from __future__ import annotations

from typing import Any

PRESET_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "conv": ("ConvModel", {}),
    "conv_v2": ("ConvModelV2", {}),
    "baseline": ("ConvTransformerModel", {}),
    "single_conv_only": ("ConvTransformerModel", {"num_conv_blocks": 1, "num_transformer_blocks": 0, "num_mlp_blocks": 0}),
    "fewer_conv_channels": ("ConvTransformerModel", {"conv_filters": 8}),
    "remove_MLP": ("ConvTransformerModel", {"num_mlp_blocks": 0}),
    "add_one_transformer_block": ("ConvTransformerModel", {"num_transformer_blocks": 1}),
    "add_two_transformer_block": ("ConvTransformerModel", {"num_transformer_blocks": 2}),
    "motif_pool": ("MotifPoolModel", {}),
}
