"""The TF-free runtime on aarch64 without an Arm machine: qemu-user, per emulated CPU.

    python -m deeplab_edge.benchmarks.aarch64 --models report/models --out DIR [--photos DIR] [--cpus ...]

1. Environment (`env`, `sysroot`, `wheels`): built once under $DEEPLAB_EDGE_AARCH64_ROOT (default
   ~/.cache/deeplab-edge/aarch64), an aarch64 Python: Debian 12 arm64 packages (python3.11 and its
   libraries, fetched with a private apt configuration: the host's apt setup is not changed) unpacked into
   a folder that qemu-aarch64-static uses as its library prefix (-L), no binfmt, no chroot; and the core
   install (`pip install deeplab-edge`, no extras) as aarch64 manylinux wheels, resolved by pip from the
   project's own requirements with the versions in constraints.txt. Each step is cached and resumable.
   A wheel of the working tree is built every run and installed beside those wheels (the guest finds both
   on its PYTHONPATH), so the check runs the current source; the x86 reference runs the same wheel.
2. Checks (`cpus`, `check`): for each CPU (QEMU_CPU) an Arm /proc/cpuinfo and
   /sys/devices/system/cpu/{possible,present,online} under the prefix with the features qemu gives that
   CPU, then `deeplab-edge predict` with every file of an export folder's manifest.json on the photos,
   each mask compared with the x86 mask of the same file and photo, each call timed (wall seconds,
   emulated: proof of behaviour, not of speed), and `deeplab-edge bench` once on one file. `arm_labels`
   gives `export --verify-on-target` the label maps of the Arm kernels.
3. Report (`report`): <date>-aarch64.md and .json in --out.

Needs: Linux x86_64, qemu-user-static (installed with apt-get when running as root), apt-get + dpkg-deb +
the Debian archive keyring (to fetch Debian 12 arm64 packages), network once (apt, pip). Imports no
TensorFlow.
"""

from __future__ import annotations

from ._common import CheckError, SetupError, cache_root
from .check import arm_labels, compare, default_photos, run_check
from .cli import main
from .cpus import CPUS, DEFAULT_CPUS, VERIFY_CPU, arm_cpuinfo, asserted, hwcap_features, parse_cpus
from .env import AArch64Env, prepare
from .report import to_markdown, write_report
from .sysroot import ensure_qemu

__all__ = [
    "CPUS",
    "DEFAULT_CPUS",
    "VERIFY_CPU",
    "AArch64Env",
    "CheckError",
    "SetupError",
    "arm_cpuinfo",
    "arm_labels",
    "asserted",
    "cache_root",
    "compare",
    "default_photos",
    "ensure_qemu",
    "hwcap_features",
    "main",
    "parse_cpus",
    "prepare",
    "run_check",
    "to_markdown",
    "write_report",
]
