"""The emulated Arm CPUs: qemu's CPU names, which are asserted, and the /proc/cpuinfo each one gets.

onnxruntime's cpuinfo library crashes at import on the x86 host's /proc/cpuinfo, so the guest is given
an Arm one with the features qemu gives that CPU (its AT_HWCAP/AT_HWCAP2 bits, named as Linux names them).
"""

from __future__ import annotations

__all__ = ["CPUS", "DEFAULT_CPUS", "GUEST_CPUS", "NOT_ASSERTED", "SHOWN_FEATURES", "VERIFY_CPU", "arm_cpuinfo",
           "asserted", "hwcap_features", "parse_cpus"]

DEFAULT_CPUS = ("cortex-a72", "cortex-a76", "neoverse-n1")
VERIFY_CPU = "cortex-a76"  # the Arm CPU that `export --verify-on-target` (arm_labels) emulates
# QEMU_CPU name -> (CPU implementer, CPU part, CPU variant, CPU revision): qemu 7.2's MIDR_EL1 of each CPU,
# used when the guest cannot read its MIDR (normally the emulated /proc/cpuinfo gets the MIDR read in the
# guest). "max" has implementer 0x00 ("reserved for software use") and part 0x051 ('Q'); it is reported,
# never asserted.
CPUS: dict[str, tuple[int, int, int, int]] = {
    "cortex-a35": (0x41, 0xD04, 0x1, 0),
    "cortex-a53": (0x41, 0xD03, 0x0, 4),
    "cortex-a57": (0x41, 0xD07, 0x1, 0),
    "cortex-a72": (0x41, 0xD08, 0x0, 3),
    "cortex-a76": (0x41, 0xD0B, 0x4, 1),
    "neoverse-n1": (0x41, 0xD0C, 0x4, 1),
    "a64fx": (0x46, 0x001, 0x1, 0),
    "max": (0x00, 0x051, 0x0, 0),
}
NOT_ASSERTED = ("max",)  # QEMU_CPU names (with or without ",prop=value" options) reported, never asserted
GUEST_CPUS = 2  # processors listed in the emulated /proc/cpuinfo and /sys/devices/system/cpu

# Linux arch/arm64/include/uapi/asm/hwcap.h, in /proc/cpuinfo "Features" order.
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
         "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
          "svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme sme_i16i64 sme_f64f64 sme_i8i32 "
          "sme_f16f32 sme_b16f32 sme_f32f32 sme_fa64 wfxt ebf16 sve_ebf16 cssc rprfm sve2p1").split()
SHOWN_FEATURES = ("asimd", "fphp", "asimddp", "i8mm", "bf16", "sve")


def asserted(cpu: str) -> bool:
    """Whether a failure on QEMU_CPU `cpu` fails the check (`max` is reported only)."""
    return cpu.split(",")[0] not in NOT_ASSERTED


def parse_cpus(text: str) -> list[str]:
    """--cpus: comma-separated QEMU_CPU names; a `prop=value` item belongs to the CPU before it, so
    "cortex-a72,max,sme=off" is ["cortex-a72", "max,sme=off"]."""
    cpus: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if "=" in item and cpus:
            cpus[-1] += "," + item
        else:
            cpus.append(item)
    return cpus


def hwcap_features(hwcap: int, hwcap2: int = 0) -> list[str]:
    """/proc/cpuinfo "Features" names of AT_HWCAP / AT_HWCAP2 bits, in the kernel's order."""
    return ([name for bit, name in enumerate(HWCAP) if hwcap >> bit & 1]
            + [name for bit, name in enumerate(HWCAP2) if hwcap2 >> bit & 1])


def arm_cpuinfo(cpu: str, features: list[str], processors: int = GUEST_CPUS, midr: int | None = None) -> str:
    """An aarch64 Linux /proc/cpuinfo for QEMU_CPU `cpu`: MIDR fields from `midr` (MIDR_EL1 as read in the
    guest), else from `CPUS`."""
    if midr is not None:
        implementer, variant, part, revision = midr >> 24 & 0xFF, midr >> 20 & 0xF, midr >> 4 & 0xFFF, midr & 0xF
    else:
        implementer, part, variant, revision = CPUS.get(cpu.split(",")[0], (0x00, 0x000, 0x0, 0))
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {' '.join(features)}\nCPU implementer\t: 0x{implementer:02x}\n"
             f"CPU architecture: 8\nCPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\n"
             f"CPU revision\t: {revision}\n\n")
    return "".join(f"processor\t: {i}\n{block}" for i in range(processors))
