"""Build, train and evaluate DeepLabV3+ (tf-keras). Importing this package imports TensorFlow."""

from __future__ import annotations

from .presets import PRESETS, DeepLabConfig, get_preset, list_presets

__all__ = ["PRESETS", "DeepLabConfig", "get_preset", "list_presets"]
