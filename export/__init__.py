"""Export a trained DeepLabV3+ to TFLite and ONNX, each file verified against Keras. Imports TensorFlow.

    from deeplab_edge.export import ExportOptions, export_checkpoint
    report = export_checkpoint("runs/edge/best.keras", "exported", formats=["tflite_fp32", "tflite_int8"],
                               options=ExportOptions(calibration_count=100))
    print(report.summary()); assert report.passed

`export_checkpoint` loads TensorFlow when first used; the format table and `ExportOptions` do not.
"""

from __future__ import annotations

from .formats import FORMATS, ExportFormat, resolve_formats
from .options import OPTION_HELP, ExportOptions

__all__ = ["FORMATS", "OPTION_HELP", "ExportFormat", "ExportOptions", "ExportReport", "Thresholds", "export_checkpoint",
           "resolve_formats"]

_LAZY = {"export_checkpoint": "pipeline", "ExportReport": "report", "Thresholds": "verify"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
