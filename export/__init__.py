"""Export a trained DeepLabV3+ to TFLite and ONNX, each file verified against Keras. Imports TensorFlow.

    from deeplab_edge.export import export_checkpoint
    report = export_checkpoint("runs/edge/best.keras", "exported", formats=["tflite_fp32", "tflite_int8"])
    print(report.summary()); assert report.passed

`export_checkpoint` (and `ExportReport`, `Thresholds`) load TensorFlow when first used; the format table
does not.
"""

from __future__ import annotations

from .formats import FORMATS, OPTION_HELP, ExportFormat, check_options, resolve_formats

__all__ = ["FORMATS", "OPTION_HELP", "ExportFormat", "ExportReport", "Thresholds", "check_options",
           "export_checkpoint", "resolve_formats"]

_LAZY = {"export_checkpoint": "pipeline", "ExportReport": "pipeline", "Thresholds": "verify"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
