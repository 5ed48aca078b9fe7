"""Where an int8 file will run, and the onnx_int8 settings that suit that CPU's kernels (`--target`).

onnxruntime's int8 kernels (MLAS) differ by CPU. On x86 without VNNI (AVX2 only) the U8S8 kernels add
pairs of int8 products in int16 (vpmaddubsw) and saturate with full 8-bit weights, so 7-bit weights
(`reduce_range`) are needed there. VNNI (vpdpbusd) and Arm's NEON / dot-product kernels accumulate in
int32 and need no such cut: 7-bit weights only lose accuracy there (-5.6 mIoU points on a real
3-class grayscale dataset, issue 25). TFLite int8 runs on XNNPACK everywhere: no setting differs.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from deeplab_edge.errors import unknown_name_error


@dataclass(frozen=True)
class QuantTarget:
    """A CPU family an int8 file is exported for, and its onnx_int8 defaults."""

    name: str
    description: str
    reduce_range: bool  # onnx_int8 7-bit weights
    activation_type: str  # onnx_int8 activations: uint8 (U8S8) or int8 (S8S8)
    quant_format: str  # onnx_int8 graph form: "qdq" (QuantizeLinear/DequantizeLinear pairs) or "qoperator"
    why: str

    def settings(self) -> dict:
        return {"reduce_range": self.reduce_range, "activation_type": self.activation_type,
                "quant_format": self.quant_format}


TARGETS: dict[str, QuantTarget] = {t.name: t for t in (
    QuantTarget("arm64", "64-bit Arm (Cortex-A, Neoverse; NEON, dot product, i8mm)", False, "uint8", "qdq",
                "Arm's int8 kernels accumulate in int32: full 8-bit weights"),
    QuantTarget("x86-vnni", "x86-64 with AVX512-VNNI or AVX-VNNI (Intel Ice Lake+, AMD Zen 4+)", False, "uint8",
                "qdq", "VNNI (vpdpbusd) accumulates in int32: full 8-bit weights"),
    QuantTarget("x86-avx2", "x86-64 with AVX2 and no VNNI (Intel Haswell-Skylake, AMD Zen 1-3)", True, "uint8",
                "qdq", "onnxruntime's U8S8 kernels on AVX2 add int8 product pairs in int16 (vpmaddubsw) and "
                "saturate with full 8-bit weights: 7-bit weights"),
)}
TARGET_CHOICES = ("auto", *TARGETS)


@dataclass(frozen=True)
class ChosenTarget:
    target: QuantTarget
    how: str  # why this target: named, or what `auto` read from this machine
    note: str = ""  # set when `auto` had to guess (an unknown CPU)


def host_target(flags: set[str] | None = None, machine: str | None = None) -> ChosenTarget:
    """The target of the machine this runs on (`--target auto`), from its CPU flags."""
    if flags is None:
        from deeplab_edge.benchmarks.sysinfo import cpu_flags

        flags = cpu_flags()
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return ChosenTarget(TARGETS["arm64"], f"auto: this machine is {machine}")
    if machine in ("x86_64", "amd64") and flags is not None:
        if flags & {"avx512_vnni", "avx_vnni"}:
            vnni = "+".join(sorted(flags & {"avx512_vnni", "avx_vnni"}))
            return ChosenTarget(TARGETS["x86-vnni"], f"auto: this machine's CPU has {vnni}")
        if "avx2" in flags:
            return ChosenTarget(TARGETS["x86-avx2"], "auto: this machine's CPU has AVX2 and no VNNI")
    what = f"{machine} with CPU flags {'unreadable' if flags is None else 'without AVX2 or VNNI'}"
    return ChosenTarget(TARGETS["x86-avx2"], f"auto: unknown target ({what})",
                        note=f"`target` auto could not tell this machine's int8 kernels ({what}); onnx_int8 uses "
                             "the x86-avx2 settings (7-bit weights: safe on every CPU, up to a few mIoU points "
                             "lower); pass `target` arm64, x86-vnni or x86-avx2 for the CPU the file will run on")


def choose_target(name: str | None) -> ChosenTarget:
    """`--target NAME` (None = auto)."""
    if name is None or name == "auto":
        return host_target()
    if name not in TARGETS:
        raise unknown_name_error("target", name, TARGET_CHOICES)
    return ChosenTarget(TARGETS[name], f"named (--target {name})")  # in the files' metadata, as it always was


def same_kernels(target: QuantTarget) -> tuple[bool, str]:
    """Whether this machine runs `target`'s int8 kernels, and this machine's int8 kernels in words
    ("x86 AVX512-VNNI kernels of this machine"), for the runtime's name to go in front of."""
    from deeplab_edge.benchmarks.sysinfo import cpu_flags, int8_isa

    flags = cpu_flags()
    host = host_target(flags)
    words = f"{int8_isa(flags, platform.machine()).removeprefix('int8 kernels: ')} kernels of this machine"
    return host.target.name == target.name and not host.note, words

ONNX_SETTING_KEYS = ("reduce_range", "activation_type", "quant_format", "per_channel", "symmetric_activations",
                     "calibration_method")


def onnx_int8_settings(options, chosen: ChosenTarget) -> dict:
    """The onnx_int8 quantisation settings: the target's defaults, then any option given (`ExportOptions`)."""
    settings = {**chosen.target.settings(), "per_channel": True, "symmetric_activations": False,
                "calibration_method": "minmax"}
    settings.update({k: getattr(options, k) for k in ONNX_SETTING_KEYS if getattr(options, k) is not None})
    return settings


def quant_record(target: ChosenTarget, settings: dict) -> dict:
    """What an int8 file records of its making (metadata and manifest)."""
    return {"target": target.target.name, "target_chosen": target.how, **settings}


def setting_candidates(settings: dict, options, target: QuantTarget) -> list[tuple[str, dict]]:
    """What the automatic search tries, in order, one change each: weight range, per-channel, activation
    type, symmetric activations, calibration method. Settings the user gave stay as given; 8-bit weights
    are never tried for x86-avx2, whose kernels saturate with them (the export machine's kernels would
    not show it)."""
    out: list[tuple[str, dict]] = []

    def free(key: str) -> bool:
        return getattr(options, key) is None

    if free("reduce_range") and not (target.reduce_range and target.name == "x86-avx2"):
        out.append((f"{'8' if settings['reduce_range'] else '7'}-bit weights",
                    {"reduce_range": not settings["reduce_range"]}))
    if free("per_channel"):
        out.append(("per-tensor weights" if settings["per_channel"] else "per-channel weights",
                    {"per_channel": not settings["per_channel"]}))
    if free("activation_type"):
        other = "int8" if settings["activation_type"] == "uint8" else "uint8"
        out.append((f"{other} activations", {"activation_type": other}))
    if free("symmetric_activations") and not settings["symmetric_activations"]:
        out.append(("symmetric activations", {"symmetric_activations": True}))
    if free("calibration_method"):
        out += [(f"{m} calibration", {"calibration_method": m}) for m in ("percentile", "entropy")
                if m != settings["calibration_method"]]
    return out
