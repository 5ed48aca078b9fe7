"""The TF-free runtime on aarch64 (issue 15).

Fast: the runtime's code makes no x86 assumption (static scan), and `benchmarks/sysinfo.py` names Arm
CPUs and their int8 features from Arm /proc/cpuinfo texts, including the ones the emulated check writes.
Slow: `deeplab-edge predict` under qemu-user (an aarch64 Debian 12 Python with the core install's aarch64
wheels, built once by `deeplab_edge.benchmarks.aarch64` under ~/.cache/deeplab-edge/aarch64) gives the x86
masks; skipped with the reason when that environment cannot be built (no qemu, apt-get or network).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplab_edge.benchmarks import aarch64 as ac
from deeplab_edge.benchmarks import sysinfo

REPO = Path(__file__).resolve().parents[1]

# Names that tie code to x86 (or to reading the CPU at all): none belongs in the runtime a board runs.
X86_ONLY = re.compile(r"\bx86(_64)?\b|\bamd64\b|\bi[3-6]86\b|\bavx\w*|\bsse[234]?\b|\bssse3\b|\bfma3\b|\bvnni\b"
                      r"|\bamx\w*|/proc/cpuinfo|\bcpuid\b|platform\.(machine|processor)\(|\bDnnl", re.IGNORECASE)

CPUINFO_RPI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

Revision\t: d04170
Serial\t\t: 6d5e5c5e5e5e5e5e
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
CPUINFO_BIG_LITTLE = "".join(
    f"processor\t: {i}\nFeatures\t: fp asimd asimddp i8mm bf16\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
    for i, part in enumerate(["0xd46"] * 4 + ["0xd47"] * 3 + ["0xd48"]))


def test_runtime_code_makes_no_x86_assumption():
    files = sorted((REPO / "runtime").glob("*.py")) + [REPO / "deeplab_edge" / "commands" / "predict.py"]
    assert len(files) > 5
    hits = [f"{f.relative_to(REPO)}:{n}: {line.strip()}" for f in files
            for n, line in enumerate(f.read_text().splitlines(), 1) if X86_ONLY.search(line)]
    assert not hits, "x86-specific code in the runtime:\n" + "\n".join(hits)


@pytest.mark.parametrize("cpu, hwcap, model, isa, int8", [
    # AT_HWCAP values qemu 7.2 gives these CPUs (read in the guest by the aarch64 check).
    ("cortex-a72", 2299, "Cortex-A72", "NEON", "NEON only"),
    ("cortex-a76", 0x119FFB, "Cortex-A76", "NEON+FP16+DOTPROD", "dot product (sdot, asimddp)"),
    ("neoverse-n1", 0x119FFB, "Neoverse-N1", "NEON+FP16+DOTPROD", "dot product (sdot, asimddp)"),
])
def test_sysinfo_reads_the_emulated_cpuinfo(cpu, hwcap, model, isa, int8):
    features = ac.hwcap_features(hwcap)
    assert "cpuid" in features and "asimd" in features and features[0] == "fp"
    text = ac.arm_cpuinfo(cpu, features)
    flags = sysinfo.cpu_flags(text)
    assert sysinfo.cpu_model(text) == model
    assert sysinfo.isa_summary({"isa": {f: f in flags for f in sysinfo.ISA_FLAGS}}) == isa
    assert int8 in sysinfo.int8_isa(flags)
    # The MIDR read in the guest wins over the table: qemu's "max" (implementer 0, part 'Q').
    assert "CPU part\t: 0x051" in ac.arm_cpuinfo("max", ["fp"], midr=0x000F0510)
    assert sysinfo.cpu_model(ac.arm_cpuinfo("cortex-a76", ["fp"], midr=0x414FD0B1)) == "Cortex-A76"


def test_sysinfo_on_real_arm_layouts():
    # A board's "Model" line stays the model (as before); the cores are named beside it.
    assert sysinfo.cpu_model(CPUINFO_RPI5) == "Raspberry Pi 5 Model B Rev 1.0"
    assert sysinfo.arm_cores(CPUINFO_RPI5) == "Cortex-A76"
    assert sysinfo.cpu_model(CPUINFO_BIG_LITTLE) == "4x Cortex-A510 + 3x Cortex-A710 + 1x Cortex-X2"
    flags = sysinfo.cpu_flags(CPUINFO_BIG_LITTLE)
    assert sysinfo.int8_isa(flags) == "int8 kernels: Arm i8mm (smmla) + dot product (sdot, asimddp)"
    assert sysinfo.isa_summary({"isa": {f: f in flags for f in sysinfo.ISA_FLAGS}}) == "NEON+DOTPROD+I8MM+BF16"
    # x86 lines unchanged; unknown or broken layouts never raise.
    assert sysinfo.int8_isa({"avx2", "fma"}) == "int8 kernels: x86 AVX2 only (no VNNI)"
    assert sysinfo.int8_isa({"avx2", "avx512_vnni"}) == "int8 kernels: x86 AVX512-VNNI"
    assert "unknown" in sysinfo.int8_isa(None)
    assert sysinfo.arm_cores("CPU implementer : 0x99\nCPU part : 0x123\n") == "Arm implementer 0x99 part 0x123"
    for text in ("", "CPU part : zz\nCPU implementer : ?\n", ":::\n\x00\nFeatures:\n", "CPU part: 0xd08"):
        assert isinstance(sysinfo.cpu_model(text), str) and isinstance(sysinfo.arm_cores(text), str)
        assert isinstance(sysinfo.int8_isa(sysinfo.cpu_flags(text), "aarch64"), str)


def test_check_cli_parsing_and_one_line_errors(tmp_path, monkeypatch, capsys):
    assert ac.parse_cpus("cortex-a72, max,sme=off,sve=off,neoverse-n1") == [
        "cortex-a72", "max,sme=off,sve=off", "neoverse-n1"]
    assert ac.asserted("cortex-a76") and not ac.asserted("max") and not ac.asserted("max,sme=off")
    # No manifest: one line on stderr naming the flag, exit 2, nothing built.
    assert ac.main(["--models", str(tmp_path), "--photos", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "manifest.json" in err and "--models" in err
    # No qemu on PATH and no installing: the error says what to install.
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ac.SetupError, match="apt-get install qemu-user-static"):
        ac.ensure_qemu(install=False)


@pytest.mark.slow
def test_emulated_predict_matches_x86(exported, tmp_path):
    """int8 TFLite and ONNX files of the tiny model: masks under QEMU_CPU=cortex-a76 equal the x86 masks."""
    report, _, _, vx, _ = exported
    models = Path(report.out_dir)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, img in enumerate(vx[:3]):
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(photos / f"val{i}.png")
    big = Image.fromarray(np.asarray(vx[3], dtype=np.uint8)).resize((160, 120), Image.BILINEAR)
    big.save(photos / "val3_160x120.jpg", quality=95)  # resized to the model and the mask back
    try:
        result = ac.run_check(models, sorted(photos.iterdir()), ["cortex-a76"], formats=["tflite_int8", "onnx_int8"],
                              bench=False, sizes=False)
    except ac.SetupError as e:
        pytest.skip(f"aarch64 emulation unavailable: {e}")
    rows = {r["format"]: r for r in result["results"]}
    assert set(rows) == {"tflite_int8", "onnx_int8"}
    for fmt, row in rows.items():
        assert not row.get("error"), f"{fmt} under qemu: {row.get('error')}"
        assert row["min"] >= 0.99, f"{fmt}: {row['per_photo']}"
    assert result["passed"], result["failures"]
    assert result["guest"]["cortex-a76"]["machine"] == "aarch64"
    assert result["guest"]["cortex-a76"]["sysinfo"]["cpu_model"] == "Cortex-A76"
