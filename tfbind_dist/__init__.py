"""tfbind_dist: distributed training and batch scoring of TF-binding models."""

__version__ = "0.1.0"
