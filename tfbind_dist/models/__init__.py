"""Flax model families and their named presets."""
from tfbind_dist.models.families import ConvModel, ConvModelV2, ConvTransformerModel, MotifPoolModel
from tfbind_dist.models.registry import PRESETS, build_model, has_batch_norm

__all__ = ["ConvModel", "ConvModelV2", "ConvTransformerModel", "MotifPoolModel", "PRESETS", "build_model",
           "has_batch_norm"]
