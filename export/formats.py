"""The table of export formats: name, file suffix, backend, and the options each accepts."""

from __future__ import annotations

from dataclasses import dataclass

from deeplab_edge.errors import UserError, did_you_mean


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    backend: str  # "tflite" or "onnx": the runtime that loads it
    precision: str  # fp32, fp16, dynamic, int8
    options: frozenset[str]
    description: str
    default: bool = True  # written when no formats are named

    @property
    def quantized(self) -> bool:
        return self.precision in ("dynamic", "int8", "int16x8")

    @property
    def needs_calibration(self) -> bool:
        return self.precision in ("int8", "int16x8")


FALLBACK = ("keep_float", "auto_keep_float", "max_keep_float")  # int8 files: layers kept in float

FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite_fp32", "_fp32.tflite", "tflite", "fp32", frozenset(), "TFLite float32"),
        ExportFormat("tflite_fp16", "_fp16.tflite", "tflite", "fp16", frozenset(),
                     "TFLite with float16 weights (dequantised to float32 on CPU, native on GPU delegates)"),
        ExportFormat("tflite_dynamic", "_dynamic.tflite", "tflite", "dynamic", frozenset(),
                     "TFLite dynamic-range: int8 weights, float activations"),
        ExportFormat("tflite_int8", "_int8.tflite", "tflite", "int8", frozenset({"io_type", "calibration_count", "per_channel", "target", "verify_on_target",
                                                                     *FALLBACK}),
                     "TFLite full-integer: every op int8, calibrated on real images; int8/uint8/float32 I/O"),
        ExportFormat("tflite_int16x8", "_int16x8.tflite", "tflite", "int16x8", frozenset({"calibration_count"}),
                     "TFLite 16x8: int16 activations, int8 weights, float32 I/O (closer to float than int8; "
                     "LiteRT runs it on reference kernels, not XNNPACK)", default=False),
        ExportFormat("onnx_fp32", "_fp32.onnx", "onnx", "fp32", frozenset({"opset"}),
                     "ONNX float32 (tf2onnx), dynamic batch"),
        ExportFormat("onnx_int8", "_int8.onnx", "onnx", "int8", frozenset({"opset", "calibration_count", "per_channel", "activation_type", "reduce_range", "calibration_method",
                                "quant_format", "symmetric_activations", "target", "verify_on_target",
                                *FALLBACK}),
                     "ONNX int8 QDQ (onnxruntime static quantisation, per-channel int8 weights, uint8 or int8 "
                     "activations)"),
    )
}

OPTION_HELP = {
    "io_type": "tflite_int8 input/output type: int8, uint8 or float32",
    "calibration_count": "number of real training images to calibrate int8 on",
    "opset": "ONNX opset",
    "per_channel": "int8 per-channel weight scales (off: one scale per tensor, what some accelerators need; "
                   "the 16x8 converter needs per-channel depthwise weights)",
    "reduce_range": "onnx_int8 7-bit weights (default: as --target says; on for x86-avx2 only)",
    "quant_format": "onnx_int8 graph form: qdq or qoperator",
    "symmetric_activations": "onnx_int8 symmetric activation ranges (zero point at the middle)",
    "verify_on_target": "int8 files: verify again with the target's own kernels (arm64: the aarch64 runtime "
                        "under qemu)",
    "target": "int8 files: the CPU they will run on (arm64, x86-vnni, x86-avx2, auto): sets the onnx_int8 "
              "defaults and says whether verification ran on the target's kernels",
    "activation_type": "onnx_int8 activation type: uint8 (U8S8, fastest on x86) or int8",
    "calibration_method": "onnx_int8 calibration: minmax, percentile or entropy (onnxruntime's calibrators; "
                          "the TFLite converter calibrates min/max only)",
    "keep_float": "int8 files: layers (name substring or glob) or op types kept in float",
    "auto_keep_float": "int8 files: keep the most harmful layers in float until within --max-miou-drop of float",
    "max_keep_float": "int8 files: the most layers --auto-keep-float may keep in float",
}
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


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


def check_options(formats: list[ExportFormat], options: dict) -> None:
    """Refuse, before any work, an option (not None) that none of the chosen formats accepts."""
    accepted = set().union(*(f.options for f in formats)) if formats else set()
    for key, value in options.items():
        if value is None:
            continue
        if key not in OPTION_HELP:
            raise UserError(f"Unknown export option {key!r}.{did_you_mean(key, OPTION_HELP)}")
        if key not in accepted:
            takers = [f.name for f in FORMATS.values() if key in f.options]
            raise UserError(f"Option {key!r} ({OPTION_HELP[key]}) applies to {', '.join(takers)} only; "
                            f"the chosen formats are {', '.join(f.name for f in formats)}. Drop the option or "
                            "add one of those formats.")
    if options.get("io_type") not in (None, "int8", "uint8", "float32"):
        raise UserError(f"io_type must be int8, uint8 or float32; received {options['io_type']!r}.")
    if options.get("activation_type") not in (None, "uint8", "int8"):
        raise UserError(f"activation_type must be uint8 or int8; received {options['activation_type']!r}.")
    if options.get("quant_format") not in (None, "qdq", "qoperator"):
        raise UserError(f"quant_format must be qdq or qoperator; received {options['quant_format']!r}.")
    if options.get("target") is not None:
        from .targets import choose_target

        choose_target(options["target"])  # an unknown name is refused here, with the valid ones
    if options.get("calibration_method") not in (None, *CALIBRATION_METHODS):
        raise UserError(f"calibration_method must be one of {', '.join(CALIBRATION_METHODS)}; received "
                        f"{options['calibration_method']!r}.")
    if options.get("max_keep_float") is not None and options["max_keep_float"] <= 0:
        raise UserError(f"max_keep_float must be positive; received {options['max_keep_float']}.")
    if options.get("calibration_count") is not None and options["calibration_count"] <= 0:
        raise UserError(f"calibration_count must be positive; received {options['calibration_count']}.")
