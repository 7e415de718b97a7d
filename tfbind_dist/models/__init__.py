"""Flax model families and their named presets.

Imported lazily; the preset names are plain data in `tfbind_dist.registry` (no Flax, no JAX).
"""
from __future__ import annotations

import importlib

_EXPORTS = {"ConvModel": "families", "ConvModelV2": "families", "ConvTransformerModel": "families",
            "MotifPoolModel": "families", "PRESETS": "registry", "build_model": "registry",
            "has_batch_norm": "registry"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tfbind_dist.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tfbind_dist.models' has no attribute {name!r}")
