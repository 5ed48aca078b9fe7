"""What machine a benchmark ran on: CPU model and ISA flags, cores, OS, package versions, GPUs.

int8 speed-ups depend on the CPU's instruction set (1.3-1.5x on AVX2 only, ~4x with AVX-512 VNNI),
so every result carries these facts. Package versions are read from installed metadata with
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

__all__ = ["ISA_FLAGS", "PACKAGES", "cpu_flags", "cpu_model", "isa_summary", "machine_info", "machine_summary"]

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
    "asimddp": "DOTPROD",
    "i8mm": "I8MM",
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


def cpu_model(cpuinfo: str | None = None) -> str:
    """CPU model name from /proc/cpuinfo ("model name", Arm: "Hardware"/"Model"), else platform.processor()."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    name = _cpuinfo_field(text, "model name", "hardware", "model", "cpu model")
    if name and not name.isdigit():  # x86 "model" is a number, not a name
        return name
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
    isa_summary, cpu_count (logical CPUs), cpu_affinity (CPUs this process may run on), machine
    (architecture), os, python, versions (distribution -> version or None), ort_providers, gpus
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
