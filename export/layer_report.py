"""The per-layer quantisation report of a checkpoint: the int8 file export would write, compared layer by
layer with its float model (`deeplab-edge quant-report`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from deeplab_edge.errors import UserError

from .formats import FORMATS
from .graph import export_graph, make_metadata
from .options import ExportOptions
from .quant_report import QuantReport, onnx_report, tflite_report
from .targets import choose_target, onnx_int8_settings


def checkpoint_report(model, info, fmt_name: str, calibration, spec, *, images: int = 16, options=None) -> QuantReport:
    """The per-layer error report (`quant_report.QuantReport`) of the int8 file `fmt_name` (tflite_int8 or
    onnx_int8) that export would write, on `images` of the calibration images; `options` an `ExportOptions`."""
    from .onnx import export_onnx, onnx_int8_writer, preprocess_for_quantization
    from .tflite import calibrate_tflite

    options = options or ExportOptions()
    if fmt_name not in ("tflite_int8", "onnx_int8"):
        raise UserError(f"The per-layer report takes tflite_int8 or onnx_int8; received {fmt_name!r}.")
    if images <= 0:
        raise UserError(f"`images` must be positive; received {images}.")
    graph = export_graph(model, info)
    subset = calibration.inputs(images)
    if fmt_name == "tflite_int8":
        return tflite_report(calibrate_tflite(graph, calibration), subset, fmt_name,
                             per_channel=options.per_channel_on)
    meta = make_metadata(info, spec, graph.input_shape[1:3], FORMATS[fmt_name], "logits")
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-qreport-") as tmp:
        fp32 = export_onnx(graph, Path(tmp) / "fp32.onnx", metadata=meta)
        settings = onnx_int8_settings(options, choose_target(options.target))
        int8 = onnx_int8_writer(fp32, meta, calibration, settings)(Path(tmp) / "int8.onnx")
        return onnx_report(preprocess_for_quantization(fp32, Path(tmp) / "pre.onnx"), int8, subset, fmt_name)
