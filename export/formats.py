"""The table of export formats: name, file suffix, backend, the options each accepts, and its writer.

TF-free: the writers import TensorFlow, tf2onnx and onnxruntime only when they run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deeplab_edge.errors import UserError, did_you_mean

from .options import options_of
from .writers import write_onnx_fp32, write_onnx_int8, write_tflite


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    backend: str  # "tflite" or "onnx": the runtime that loads it
    precision: str  # fp32, fp16, dynamic, int8
    options: frozenset[str]
    description: str
    writer: Callable  # writer(job: writers.FileJob) -> writers.Written: writes job.path
    default: bool = True  # written when no formats are named

    @property
    def quantized(self) -> bool:
        return self.precision in ("dynamic", "int8", "int16x8")

    @property
    def needs_calibration(self) -> bool:
        return self.precision in ("int8", "int16x8")


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite_fp32", "_fp32.tflite", "tflite", "fp32", options_of("tflite_fp32"), "TFLite float32", write_tflite),
        ExportFormat("tflite_fp16", "_fp16.tflite", "tflite", "fp16", options_of("tflite_fp16"),
                     "TFLite with float16 weights (dequantised to float32 on CPU, native on GPU delegates)", write_tflite),
        ExportFormat("tflite_dynamic", "_dynamic.tflite", "tflite", "dynamic", options_of("tflite_dynamic"),
                     "TFLite dynamic-range: int8 weights, float activations", write_tflite),
        ExportFormat("tflite_int8", "_int8.tflite", "tflite", "int8", options_of("tflite_int8"),
                     "TFLite full-integer: every op int8, calibrated on real images; int8/uint8/float32 I/O", write_tflite),
        ExportFormat("tflite_int16x8", "_int16x8.tflite", "tflite", "int16x8", options_of("tflite_int16x8"),
                     "TFLite 16x8: int16 activations, int8 weights, float32 I/O (closer to float than int8; "
                     "LiteRT runs it on reference kernels, not XNNPACK)", write_tflite, default=False),
        ExportFormat("onnx_fp32", "_fp32.onnx", "onnx", "fp32", options_of("onnx_fp32"),
                     "ONNX float32 (tf2onnx), dynamic batch", write_onnx_fp32),
        ExportFormat("onnx_int8", "_int8.onnx", "onnx", "int8", options_of("onnx_int8"),
                     "ONNX int8 QDQ (onnxruntime static quantisation, per-channel int8 weights, uint8 or int8 "
                     "activations)", write_onnx_int8),
    )
}

def resolve_formats(names: list[str] | None) -> list[ExportFormat]:
    """Formats by name (None: the default six; 'all': every format), refusing unknown names with close
    matches."""
    if not names:
        return [f for f in FORMATS.values() if f.default]
    if names == ["all"]:
        return list(FORMATS.values())
    out = []
    for name in names:
        if name not in FORMATS:
            raise UserError(f"Unknown export format {name!r}.{did_you_mean(name, FORMATS)} "
                            f"Valid formats: {', '.join(FORMATS)} (or 'all').")
        if FORMATS[name] not in out:
            out.append(FORMATS[name])
    return out
