"""The per-format export options: one frozen dataclass, checked against the formats chosen.

`None` means "not given": the format's default applies (`per_channel_on`, `tflite_io_type`, `onnx_opset`),
and an option that is given but that no chosen format takes is refused before any work.

    options = ExportOptions(io_type="uint8", calibration_count=100)
    options.check(resolve_formats(["tflite_int8"]))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from deeplab_edge.errors import UserError, did_you_mean

ONNX_OPSET = 17  # the ONNX opset files are written with (tf2onnx)
IO_TYPES = ("int8", "uint8", "float32")
ACTIVATION_TYPES = ("uint8", "int8")
QUANT_FORMATS = ("qdq", "qoperator")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


INT8 = ("tflite_int8", "onnx_int8")


def _option(help_text: str, formats: tuple[str, ...]):
    """A field: None (not given) by default; `formats` are the formats that take it."""
    return field(default=None, metadata={"help": help_text, "formats": formats})


@dataclass(frozen=True)
class ExportOptions:
    """What the int8 and ONNX writers may be told; every field None = the format's default."""

    io_type: str | None = _option("tflite_int8 input/output type: int8, uint8 or float32", ("tflite_int8",))
    calibration_count: int | None = _option("number of real training images to calibrate int8 on", ("tflite_int8", "tflite_int16x8", "onnx_int8"))
    opset: int | None = _option("ONNX opset", ("onnx_fp32", "onnx_int8"))
    per_channel: bool | None = _option(
        "int8 per-channel weight scales (off: one scale per tensor, what some accelerators need; the 16x8 "
        "converter needs per-channel depthwise weights)", INT8)
    reduce_range: bool | None = _option("onnx_int8 7-bit weights (default: as `target` says; on for x86-avx2 only)", ("onnx_int8",))
    quant_format: str | None = _option("onnx_int8 graph form: qdq or qoperator", ("onnx_int8",))
    symmetric_activations: bool | None = _option("onnx_int8 symmetric activation ranges (zero point at the middle)", ("onnx_int8",))
    verify_on_target: bool | None = _option(
        "int8 files: verify again with the target's own kernels (arm64: the aarch64 runtime under qemu)", INT8)
    target: str | None = _option(
        "int8 files: the CPU they will run on (arm64, x86-vnni, x86-avx2, auto): sets the onnx_int8 defaults "
        "and says whether verification ran on the target's kernels", INT8)
    activation_type: str | None = _option("onnx_int8 activation type: uint8 (U8S8, fastest on x86) or int8", ("onnx_int8",))
    calibration_method: str | None = _option(
        "onnx_int8 calibration: minmax, percentile or entropy (onnxruntime's calibrators; the TFLite converter "
        "calibrates min/max only)", ("onnx_int8",))
    keep_float: tuple[str, ...] | None = _option("int8 files: layers (name substring or glob) or op types kept in float", INT8)
    auto_keep_float: bool | None = _option(
        "int8 files: keep the most harmful layers in float until within `max_miou_drop` of float; "
        "tflite_int8 then also the layers slower in int8 than in float here, where the whole file gets faster", INT8)
    max_keep_float: int | None = _option("int8 files: the most layers `auto_keep_float` may keep in float", INT8)

    def __post_init__(self) -> None:
        if self.keep_float is not None and not isinstance(self.keep_float, tuple):
            patterns = [self.keep_float] if isinstance(self.keep_float, str) else list(self.keep_float)
            object.__setattr__(self, "keep_float", tuple(patterns))

    @classmethod
    def from_mapping(cls, options: Mapping[str, object] | None) -> ExportOptions:
        """From keyword options (`export_checkpoint(**options)`); an unknown key is refused with close matches."""
        options = dict(options or {})
        for key in options:
            if key not in OPTION_HELP:
                raise UserError(f"Unknown export option {key!r}.{did_you_mean(key, OPTION_HELP)} Valid options: "
                                f"{', '.join(OPTION_HELP)}.")
        return cls(**options)

    def given(self) -> dict[str, object]:
        """The options that were given (not None)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def replace(self, **changes) -> ExportOptions:
        return replace(self, **changes)

    @property
    def per_channel_on(self) -> bool:
        """int8 weights per channel unless `per_channel` is False."""
        return self.per_channel is not False

    @property
    def tflite_io_type(self) -> str:
        return self.io_type or "float32"

    @property
    def onnx_opset(self) -> int:
        return self.opset or ONNX_OPSET

    def check(self, formats) -> None:
        """Refuse, before any work, an option that none of `formats` (`ExportFormat`s) takes, or a bad value."""
        accepted = set().union(*(f.options for f in formats)) if formats else set()
        for key in self.given():
            if key not in accepted:
                takers = OPTION_FORMATS[key]
                raise UserError(f"Option `{key}` ({OPTION_HELP[key]}) applies to {', '.join(takers)} only; the "
                                f"chosen formats are {', '.join(f.name for f in formats)}. Drop the option or add "
                                "one of those formats.")
        for key, allowed in (("io_type", IO_TYPES), ("activation_type", ACTIVATION_TYPES),
                             ("quant_format", QUANT_FORMATS), ("calibration_method", CALIBRATION_METHODS)):
            value = getattr(self, key)
            if value is not None and value not in allowed:
                raise UserError(f"`{key}` must be one of {', '.join(allowed)}; received {value!r}.")
        if self.target is not None:
            from .targets import choose_target

            choose_target(self.target)  # an unknown name is refused here, with the valid ones
        for key in ("max_keep_float", "calibration_count"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise UserError(f"`{key}` must be positive; received {value}.")


OPTION_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(ExportOptions)}
OPTION_FORMATS: dict[str, tuple[str, ...]] = {f.name: f.metadata["formats"] for f in fields(ExportOptions)}


def options_of(format_name: str) -> frozenset[str]:
    """The options a format takes."""
    return frozenset(k for k, names in OPTION_FORMATS.items() if format_name in names)
