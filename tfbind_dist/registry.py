"""The names the package knows, as plain data: TFs (and their JASPAR matrix), data splits, N policies,
model presets. At the floor of the package: imports nothing, so any module (config included) may read it."""
from __future__ import annotations

from typing import Any

# The chapter's ten TFs and the JASPAR 2026 matrix of each (pyjaspar, offline): what the synthetic data
# plants, what explain scans for, and the own-TF matrix motif discovery looks for.
JASPAR_IDS: dict[str, str] = {
    "ARID3": "MA0151.1",
    "ATF2": "MA1632.2",
    "BACH1": "MA1633.2",
    "CTCF": "MA0139.2",
    "ELK1": "MA0028.3",
    "GABPA": "MA0062.4",
    "MAX": "MA0058.4",
    "REST": "MA0138.3",
    "SRF": "MA0083.3",
    "ZNF24": "MA1124.1",
}
TFS = tuple(JASPAR_IDS)
SPLITS = ("train", "valid", "test")

# How an N base is one-hot encoded: 0.25 each (default), zeros, ones (the chapter's), or rejected.
N_POLICIES = ("uniform", "zeros", "ones", "error")

# Model presets: name -> (model family in models/families.py, field overrides).
MODEL_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "conv": ("ConvModel", {}),
    "conv_v2": ("ConvModelV2", {}),
    "baseline": ("ConvTransformerModel", {}),
    "single_conv_only": ("ConvTransformerModel", {"num_conv_blocks": 1, "num_transformer_blocks": 0,
                                                  "num_mlp_blocks": 0}),
    "fewer_conv_channels": ("ConvTransformerModel", {"conv_filters": 8}),
    "remove_MLP": ("ConvTransformerModel", {"num_mlp_blocks": 0}),
    "add_one_transformer_block": ("ConvTransformerModel", {"num_transformer_blocks": 1}),
    "add_two_transformer_block": ("ConvTransformerModel", {"num_transformer_blocks": 2}),
    "motif_pool": ("MotifPoolModel", {}),
}
