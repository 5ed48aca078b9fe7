"""Export a trained DeepLabV3+ to TFLite and ONNX, each file verified against Keras. Imports TensorFlow."""

from __future__ import annotations

from .formats import FORMATS, ExportFormat, check_options, resolve_formats

__all__ = ["FORMATS", "ExportFormat", "check_options", "resolve_formats"]
