"""What machine a benchmark ran on: CPU model and ISA flags, cores, OS, package versions, GPUs.

int8 speed-ups depend on the CPU's instruction set (1.3-1.5x on AVX2 only, ~4x with AVX-512 VNNI;
on Arm, the dot-product (asimddp: sdot/udot) and i8mm (smmla) instructions), so every result carries
these facts. x86 and Arm (aarch64) /proc/cpuinfo layouts are both read: on Arm without a model name
the core is named from "CPU implementer" / "CPU part" (e.g. Cortex-A76, Neoverse-N1). Package versions are read from installed metadata with
`importlib.metadata`, never by importing the package (this module never imports TensorFlow).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

__all__ = ["ARM_PARTS", "ISA_FLAGS", "PACKAGES", "arm_cores", "cpu_flags", "cpu_model", "int8_isa", "isa_summary",
           "machine_info", "machine_summary"]

# /proc/cpuinfo flag -> label in the summary, in summary order. x86 first, then Arm.
ISA_FLAGS: dict[str, str] = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX512F",
    "avx512_vnni": "VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_tile": "AMX",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimd": "NEON",
    "fphp": "FP16",
    "asimddp": "DOTPROD",
    "i8mm": "I8MM",
    "bf16": "BF16",
    "sve": "SVE",
}
# Summary labels implied by a shorter one already shown (AMX tile without int8 is rare).
_IMPLIED = {"amx_int8": "amx_tile", "amx_bf16": "amx_tile"}

# Distribution names whose versions are recorded (first installed alternative wins).
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "ai-edge-litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "tf-keras": ("tf-keras",),
    "onnx": ("onnx",),
    "tf2onnx": ("tf2onnx",),
    "deeplab-edge": ("deeplab-edge",),
}


# Arm "CPU implementer" -> {"CPU part" -> core name} (Linux arch/arm64/include/asm/cputype.h).
ARM_PARTS: dict[int, tuple[str, dict[int, str]]] = {
    0x41: ("Arm", {
        0xD01: "Cortex-A32", 0xD02: "Cortex-A34", 0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55",
        0xD06: "Cortex-A65", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75",
        0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77", 0xD0E: "Cortex-A76AE",
        0xD40: "Neoverse-V1", 0xD41: "Cortex-A78", 0xD42: "Cortex-A78AE", 0xD43: "Cortex-A65AE",
        0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710", 0xD48: "Cortex-X2",
        0xD49: "Neoverse-N2", 0xD4A: "Neoverse-E1", 0xD4B: "Cortex-A78C", 0xD4C: "Cortex-X1C",
        0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3", 0xD4F: "Neoverse-V2", 0xD80: "Cortex-A520",
        0xD81: "Cortex-A720", 0xD82: "Cortex-X4", 0xD84: "Neoverse-V3", 0xD85: "Cortex-X925",
        0xD87: "Cortex-A725", 0xD8E: "Neoverse-N3",
    }),
    0x42: ("Broadcom", {0x516: "ThunderX2 (Vulcan)"}),
    0x43: ("Cavium", {0x0A1: "ThunderX", 0x0AF: "ThunderX2"}),
    0x46: ("Fujitsu", {0x001: "A64FX"}),
    0x48: ("HiSilicon", {0xD01: "TaiShan v110 (Kunpeng 920)"}),
    0x4E: ("NVIDIA", {0x003: "Denver", 0x004: "Carmel"}),
    0x51: ("Qualcomm", {0x800: "Kryo 2xx Gold", 0x801: "Kryo 2xx Silver", 0x802: "Kryo 3xx Gold",
                        0x803: "Kryo 3xx Silver", 0x804: "Kryo 4xx Gold", 0x805: "Kryo 4xx Silver",
                        0xC00: "Falkor", 0xC01: "Saphira"}),
    0x61: ("Apple", {}),
    0xC0: ("Ampere", {0xAC3: "Ampere-1", 0xAC4: "Ampere-1A"}),
}


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_field(text: str, *keys: str) -> str:
    for key in keys:
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == key and value.strip():
                return value.strip()
    return ""


def _hex(value: str) -> int | None:
    try:
        return int(value.strip(), 0)
    except ValueError:
        return None


def arm_cores(cpuinfo: str | None = None) -> str:
    """The Arm cores named by /proc/cpuinfo's "CPU implementer" / "CPU part" fields, e.g. "Cortex-A72",
    "4x Cortex-A76 + 4x Cortex-A55" (big.LITTLE), "Arm part 0xd99" (unknown part); "" when the text has
    no such fields (x86, or an unreadable layout). Never raises."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    counts: dict[str, int] = {}
    implementer = None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        if not sep:
            continue
        if key == "cpu implementer":
            implementer = _hex(value)
        elif key == "cpu part":
            part = _hex(value)
            if part is None:
                continue
            vendor, parts = ARM_PARTS.get(implementer if implementer is not None else -1, ("", {}))
            if not vendor:
                vendor = f"Arm implementer {hex(implementer)}" if implementer is not None else "Arm"
            label = parts.get(part) or f"{vendor} part {hex(part)}"
            counts[label] = counts.get(label, 0) + 1
    if not counts:
        return ""
    if len(counts) == 1:
        return next(iter(counts))
    return " + ".join(f"{n}x {label}" for label, n in counts.items())


def cpu_model(cpuinfo: str | None = None) -> str:
    """CPU model name from /proc/cpuinfo ("model name", Arm: "Hardware"/"Model", else the cores named from
    "CPU implementer"/"CPU part"), else platform.processor()."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    name = _cpuinfo_field(text, "model name", "hardware", "model", "cpu model")
    if name and not name.isdigit():  # x86 "model" is a number, not a name
        return name
    cores = arm_cores(text)
    if cores:
        return cores
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags (x86 "flags", Arm "Features") as a set; None if they cannot be read."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    line = _cpuinfo_field(text, "flags", "features")
    return set(line.lower().split()) if line else None


def isa_summary(info: dict) -> str:
    """Short ISA label from `machine_info()["isa"]`, e.g. "AVX2+FMA+AVX512F+VNNI+AMX".

    "none" when the flags were read and none of interest is present; "unknown" when they could not
    be read (not Linux).
    """
    isa = info["isa"] if "isa" in info else {k: info[k] for k in ISA_FLAGS if k in info}
    if not isa or all(v is None for v in isa.values()):
        return "unknown"
    labels = [label for flag, label in ISA_FLAGS.items()
              if isa.get(flag) and not (flag in _IMPLIED and isa.get(_IMPLIED[flag]))]
    return "+".join(labels) or "none"


def int8_isa(flags: set[str] | None, machine: str | None = None) -> str:
    """One line: which instructions the int8 kernels (XNNPACK in LiteRT, MLAS in onnxruntime) can use here.

    x86: AMX-INT8 > AVX512-VNNI / AVX-VNNI > AVX2 (no VNNI); Arm: i8mm (smmla) and the dot product
    (asimddp: sdot/udot) > plain NEON. "unknown" when the flags could not be read.
    """
    if flags is None:
        return "int8 kernels: unknown (CPU flags unreadable)"
    machine = (machine or "").lower()
    if "asimd" in flags or machine in ("aarch64", "arm64") or machine.startswith("arm"):
        fast = [label for flag, label in (("i8mm", "i8mm (smmla)"), ("asimddp", "dot product (sdot, asimddp)"))
                if flag in flags]
        if fast:
            return "int8 kernels: Arm " + " + ".join(fast)
        if "asimd" in flags:
            return "int8 kernels: Arm NEON only (no sdot, no i8mm)"
        return "int8 kernels: Arm without NEON reported"
    fast = [label for flag, label in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"),
                                      ("avx_vnni", "AVX-VNNI")) if flag in flags]
    if fast:
        return "int8 kernels: x86 " + " + ".join(fast)
    if "avx2" in flags:
        return "int8 kernels: x86 AVX2 only (no VNNI)"
    return "int8 kernels: no AVX2/VNNI/NEON reported (scalar or SSE paths)"


def _version(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _ort_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _gpus(timeout_s: float = 5.0) -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)" -> "NVIDIA H100 80GB HBM3"
    names = []
    for line in out.stdout.splitlines():
        _, sep, rest = line.partition(": ")
        if sep:
            names.append(rest.split(" (UUID")[0].strip())
    return names


def machine_info() -> dict:
    """Facts about this machine and its packages, as JSON-ready data with stable keys.

    Keys: cpu_model, isa (flag -> bool, or None when flags are unreadable; see `ISA_FLAGS`),
    isa_summary, int8_isa (one line, see `int8_isa`), cpu_count (logical CPUs), cpu_affinity (CPUs this
    process may run on), machine (architecture), os, python, versions (distribution -> version or None), ort_providers, gpus
    (names from `nvidia-smi -L`, [] when none), date (UTC, ISO 8601).
    """
    text = _read_cpuinfo()
    flags = cpu_flags(text)
    isa = {flag: (flag in flags if flags is not None else None) for flag in ISA_FLAGS}
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    info = {
        "cpu_model": cpu_model(text),
        "isa": isa,
        "isa_summary": "",
        "int8_isa": int8_isa(flags, platform.machine()),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "versions": {name: _version(dists) for name, dists in PACKAGES.items()},
        "ort_providers": _ort_providers(),
        "gpus": _gpus(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info["isa_summary"] = isa_summary(info)
    return info


def machine_summary(info: dict, *, threads: int | None = None) -> str:
    """One line for a report header or plot subtitle, e.g.
    "AMD EPYC 7B13 | AVX2+FMA | 2 CPUs (2 usable) | 2 threads | Python 3.11.9".
    """
    parts = [str(info.get("cpu_model") or "unknown CPU"), info.get("isa_summary") or isa_summary(info)]
    cpus, usable = info.get("cpu_count"), info.get("cpu_affinity")
    if cpus:
        parts.append(f"{cpus} CPUs" + (f" ({usable} usable)" if usable and usable != cpus else ""))
    if threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if info.get("gpus"):
        parts.append(", ".join(info["gpus"]))
    if info.get("python"):
        parts.append(f"Python {info['python']}")
    return " | ".join(parts)
