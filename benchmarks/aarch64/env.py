"""The emulated environment: qemu, the sysroot and the aarch64 site folders put together (`prepare`), the
guest's python and process environment, the emulated CPU selected, and the lock on the shared cache.

Layout under the cache (`cache_root()`, default ~/.cache/deeplab-edge/aarch64): root/ (the Debian sysroot,
also holding the emulated /proc/cpuinfo), apt/ and debs/, wheels/<arch>/<key>/, site-aarch64/ (the
dependency wheels installed) and work/ (the working tree's wheel installed in site-project/, the masks).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ._common import REPO, SetupError, cache_root, log, tail
from .cpus import CPUS, GUEST_CPUS, arm_cpuinfo, hwcap_features
from .sysroot import PY_VERSION, ensure_qemu, ensure_root
from .wheels import build_project_wheel, ensure_site, ensure_wheels, install_target

__all__ = ["AArch64Env", "CacheLock", "prepare"]

# Run in the guest with -S -E: AT_HWCAP/AT_HWCAP2 from /proc/self/auxv and MIDR_EL1 (EL0 reads are
# emulated, HWCAP_CPUID) through `mrs x0, midr_el1; ret` in an executable page.
_PROBE = ("import json, platform, struct, sys\n"
          "aux = dict(struct.iter_unpack('<QQ', open('/proc/self/auxv', 'rb').read()))\n"
          "try:\n"
          "    import ctypes, mmap\n"
          "    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
          "    m.write(bytes.fromhex('000038d5c0035fd6'))\n"
          "    midr = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()\n"
          "except Exception:\n"
          "    midr = None\n"
          "print(json.dumps({'hwcap': aux.get(16, 0), 'hwcap2': aux.get(26, 0), 'midr': midr,"
          " 'machine': platform.machine(), 'python': platform.python_version(),"
          " 'libc': '-'.join(platform.libc_ver())}))\n")
# What the project's own sysinfo makes of the emulated CPU, inside the guest.
_SYSINFO = ("import json\nfrom deeplab_edge.benchmarks import sysinfo as s\ni = s.machine_info()\n"
            "print(json.dumps({k: i.get(k) for k in ('cpu_model', 'isa_summary', 'int8_isa', 'machine')}))\n")


@dataclass
class AArch64Env:
    """A built environment: the qemu binary, the sysroot, the aarch64 site folders and the wheel lists."""

    qemu: str
    root: Path
    site: Path  # dependency wheels, aarch64
    project_site: Path  # the working tree's wheel (pure Python: the x86 reference uses it too)
    project_wheel: Path
    wheels_aarch64: list[Path]
    wheels_x86_64: list[Path] = field(default_factory=list)
    probes: dict = field(default_factory=dict)

    @property
    def python(self) -> Path:
        """A host-executable wrapper for the aarch64 python (also what its sys.executable names, so that
        subprocesses of the guest, e.g. bench's workers, run under qemu too without binfmt)."""
        return self.root / "usr" / "bin" / "python3-qemu-aarch64"

    def write_wrapper(self) -> None:
        def q(p) -> str:
            return "'" + str(p).replace("'", "'\\''") + "'"

        self.python.write_text(f'#!/bin/sh\nexec {q(self.qemu)} -L {q(self.root)} -0 "$0" '
                               f'{q(self.root / "usr" / "bin" / f"python{PY_VERSION}")} "$@"\n')
        self.python.chmod(0o755)

    def env(self, cpu: str) -> dict:
        """The guest process's environment: QEMU_CPU, and the working tree's wheel and the dependency
        wheels on PYTHONPATH (the host's Python, qemu and loader variables dropped)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "QEMU_", "LD_", "VIRTUAL_ENV", "CONDA"))}
        env.update(QEMU_CPU=cpu, PYTHONPATH=f"{self.project_site}{os.pathsep}{self.site}", PYTHONNOUSERSITE="1",
                   PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
        return env

    def select_cpu(self, cpu: str, timeout: float = 300) -> dict:
        """Probe qemu's features for `cpu` (AT_HWCAP from the guest's /proc/self/auxv) and write the matching
        /proc/cpuinfo and /sys/devices/system/cpu files under the prefix. Returns the probe."""
        cpuinfo = self.root / "proc" / "cpuinfo"
        cpuinfo.parent.mkdir(parents=True, exist_ok=True)
        cpuinfo.write_text(arm_cpuinfo(cpu, ["fp", "asimd"]))  # a valid file even for the probe
        sysdir = self.root / "sys" / "devices" / "system" / "cpu"
        sysdir.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present", "online"):
            (sysdir / name).write_text(f"0-{GUEST_CPUS - 1}\n")
        try:
            proc = subprocess.run([str(self.python), "-S", "-E", "-c", _PROBE], capture_output=True, text=True,
                                  env=self.env(cpu), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SetupError(f"the aarch64 python did not start within {timeout:.0f} s under qemu "
                             f"(QEMU_CPU={cpu}).") from None
        if proc.returncode != 0:
            known = "" if cpu.split(",")[0] in CPUS else f" (`{self.qemu} -cpu help` lists the CPUs qemu knows)"
            raise SetupError(f"the aarch64 python failed under qemu (QEMU_CPU={cpu}, exit {proc.returncode}: "
                             f"{tail(proc.stderr or proc.stdout)}){known}; delete {self.root} to rebuild it.")
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
        probe["features"] = hwcap_features(probe["hwcap"], probe["hwcap2"])
        cpuinfo.write_text(arm_cpuinfo(cpu, probe["features"], midr=probe.get("midr")))
        probe["cpuinfo_part"] = next((ln.split(":")[1].strip() for ln in cpuinfo.read_text().splitlines()
                                      if ln.startswith("CPU part")), None)
        try:
            proc = subprocess.run([str(self.python), "-c", _SYSINFO], capture_output=True, text=True,
                                  env=self.env(cpu), timeout=timeout)
            probe["sysinfo"] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else \
                {"error": tail(proc.stderr) or f"exit {proc.returncode}"}
        except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
            probe["sysinfo"] = {"error": str(e)[:200]}
        self.probes[cpu] = probe
        return probe


def prepare(*, source: Path = REPO, cache: Path | None = None, constraints: Path | None = None,
            install_qemu: bool = True, sizes: bool = True) -> AArch64Env:
    """Build (or reuse) everything; install the working tree's wheel fresh. Raises SetupError."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise SetupError(f"this check emulates aarch64 on a Linux x86_64 host (this is {platform.system()} "
                         f"{platform.machine()}); on an aarch64 board run `deeplab-edge predict` directly.")
    cache = Path(cache) if cache else cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    if constraints is None and (source / "constraints.txt").is_file():
        constraints = source / "constraints.txt"
    qemu = ensure_qemu(install=install_qemu)
    root = ensure_root(cache)
    work = cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    wheel = build_project_wheel(source, work)
    a64 = ensure_wheels(cache, wheel, "aarch64", constraints)
    x86 = ensure_wheels(cache, wheel, "x86_64", constraints) if sizes else []
    site = ensure_site(cache, a64)
    project_site = work / "site-project"
    install_target([wheel], project_site, "aarch64")  # pure Python: the same files serve both sides
    env = AArch64Env(qemu, root, site, project_site, wheel, a64, x86)
    env.write_wrapper()
    return env


class CacheLock:
    """An exclusive lock on the cache (the emulated /proc/cpuinfo is shared by every run)."""

    def __init__(self, cache: Path):
        self.path = Path(cache) / ".lock"

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w")  # noqa: SIM115
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"waiting for another aarch64 check holding {self.path}")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()
