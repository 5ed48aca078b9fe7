"""The TF-free runtime on aarch64 without an Arm machine: qemu-user, per emulated CPU.

    python benchmarks/aarch64_check.py --models report/models --photos DIR [--cpus cortex-a72,...] [--out DIR]
    python -m deeplab_edge.benchmarks.aarch64_check ...        (the same)

What it does:
1. Builds once, under $DEEPLAB_EDGE_AARCH64_ROOT (default ~/.cache/deeplab-edge/aarch64), an aarch64
   Python: Debian 12 arm64 packages (python3.11 and its libraries, fetched with a private apt
   configuration: the host's apt setup is not changed) unpacked into a folder that qemu-aarch64-static
   uses as its library prefix (-L), no binfmt, no chroot; and the core install (`pip install
   deeplab-edge`, no extras) as aarch64 manylinux wheels, resolved by pip from the project's own
   requirements with the versions in constraints.txt. Each step is cached and resumable.
2. Builds a wheel of the working tree every run and installs it beside those wheels, so the check runs
   the current source (the x86 reference runs the same wheel).
3. For each CPU (QEMU_CPU) writes an Arm /proc/cpuinfo and /sys/devices/system/cpu/{possible,present,online}
   under the prefix (onnxruntime's cpuinfo library crashes at import on the x86 host's), with the
   features qemu gives that CPU (its AT_HWCAP/AT_HWCAP2), then runs `deeplab-edge predict` with every
   file of an export folder's manifest.json on the photos, compares each mask with the x86 mask of the
   same file and photo, times each call (wall seconds, emulated: proof of behaviour, not of speed), and
   runs `deeplab-edge bench` once on one file.
4. Writes <date>-aarch64.md and .json to --out (default benchmarks/results/).

Exit codes: 0 all agreed; 1 a float file (fp32/fp16/dynamic) agreed on < 100% of the pixels of some photo,
an int8 file on < 99%, or an emulated predict failed, on a CPU other than `max` (reported, never asserted);
2 the check could not run: the environment could not be built, or no manifest/photos, or the x86
reference failed (one line naming what is missing and how to fix it).

Needs: Linux x86_64, qemu-user-static (installed with apt-get when running as root), apt-get + dpkg-deb +
the Debian archive keyring (to fetch Debian 12 arm64 packages), network once (apt, pip). Imports only the
standard library, numpy and Pillow (no TensorFlow).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from deeplab_edge.benchmarks.sysinfo import cpu_model as _host_cpu_model
except ImportError:  # run as a plain script without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sysinfo import cpu_model as _host_cpu_model  # type: ignore[no-redef]

__all__ = ["CPUS", "DEFAULT_CPUS", "AArch64Env", "CheckError", "SetupError", "arm_cpuinfo", "asserted",
           "hwcap_features", "main", "parse_cpus", "prepare", "run_check", "write_report"]

REPO = Path(__file__).resolve().parents[1]
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


def asserted(cpu: str) -> bool:
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
GUEST_CPUS = 2  # processors listed in the emulated /proc/cpuinfo and /sys/devices/system/cpu

# Linux arch/arm64/include/uapi/asm/hwcap.h, in /proc/cpuinfo "Features" order.
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
         "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
          "svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme sme_i16i64 sme_f64f64 sme_i8i32 "
          "sme_f16f32 sme_b16f32 sme_f32f32 sme_fa64 wfxt ebf16 sve_ebf16 cssc rprfm sve2p1").split()
SHOWN_FEATURES = ("asimd", "fphp", "asimddp", "i8mm", "bf16", "sve")

# Debian 12 (bookworm) arm64: Python 3.11 (the wheels' ABI) and the shared libraries it and the wheels load.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g", "libexpat1",
    "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libgcc-s1", "libstdc++6", "libgomp1", "libsqlite3-0",
    "libuuid1", "libtirpc3", "libnsl2", "libcrypt1", "libzstd1", "libncursesw6", "libtinfo6", "libreadline8",
    "libdb5.3",
)
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Wheels a glibc >= 2.28 system can install (ai-edge-litert 2.x ships only manylinux_2_27 for aarch64).
MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_24", "manylinux_2_27", "manylinux_2_28")
PY_VERSION = "3.11"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class SetupError(Exception):
    """The environment cannot be built; the message is one line naming what is missing and the fix."""


class CheckError(Exception):
    """The check cannot run on what it was given (no manifest, no photos, the x86 reference failed)."""


def _log(msg: str) -> None:
    print(f"[aarch64] {msg}", flush=True)


def cache_root() -> Path:
    """$DEEPLAB_EDGE_AARCH64_ROOT, else <deeplab-edge cache>/aarch64 (~/.cache/deeplab-edge/aarch64)."""
    if os.environ.get("DEEPLAB_EDGE_AARCH64_ROOT"):
        return Path(os.environ["DEEPLAB_EDGE_AARCH64_ROOT"]).expanduser()
    if os.environ.get("DEEPLAB_EDGE_CACHE"):
        return Path(os.environ["DEEPLAB_EDGE_CACHE"]) / "aarch64"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeplab-edge" / "aarch64"


def _tail(text: str | bytes | None, n: int = 1) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if "is ignored: it is neither a file nor a directory" not in ln] or lines
    return " | ".join(lines[-n:])[:400] if lines else ""


_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution", "Name or service not known",
            "Network is unreachable", "Could not resolve", "Connection refused", "Failed to fetch", "timed out")


def _reason(text: str) -> str:
    """The most telling line of a failed tool's output: a network failure, else its first error line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if "is ignored: it is neither a file nor a directory" not in ln]
    for ln in lines:
        if any(k in ln for k in _OFFLINE):
            return "no network? " + ln[:300]
    errors = [ln for ln in lines if ln.startswith(("ERROR:", "E:")) and "ResolutionImpossible" not in ln]
    return (errors[0] if errors else lines[-1] if lines else "")[:300]


def _run_setup(cmd: list[str], what: str, fix: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise SetupError(f"{what}: cannot run {cmd[0]} ({e.strerror}). {fix}") from None
    if proc.returncode != 0:
        raise SetupError(f"{what} failed (exit {proc.returncode}: {_reason(proc.stderr + proc.stdout)}). {fix}")
    return proc


# ---------------------------------------------------------------------------------------------- qemu, root


def ensure_qemu(*, install: bool = True) -> str:
    """Path of qemu-aarch64-static (or qemu-aarch64); installs qemu-user-static with apt-get as root."""
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        exe = shutil.which(name)
        if exe:
            return exe
    if install and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        _log("installing qemu-user-static with apt-get (root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "qemu-user-static"], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:  # stale package lists: update once, then retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env)
            _run_setup(["apt-get", "install", "-y", "-q", "qemu-user-static"], "apt-get install qemu-user-static",
                       "Check the network, or install it yourself: sudo apt-get install qemu-user-static.", env=env)
        exe = shutil.which("qemu-aarch64-static")
        if exe:
            return exe
    raise SetupError("qemu-aarch64-static not found: install it with `sudo apt-get install qemu-user-static` "
                     "(Debian/Ubuntu; other distributions: their qemu-user-static package).")


def qemu_version(qemu: str) -> str:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def _apt_options(apt: Path) -> list[str]:
    """apt-get options for a private arm64-only configuration under `apt` (the host's apt state untouched)."""
    return [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={apt / 'sources.list.d'}",
        "-o", f"Dir::Etc::Preferences={apt / 'preferences'}", "-o", f"Dir::Etc::PreferencesParts={apt / 'preferences.d'}",
        "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::State::status={apt / 'status'}",
        "-o", f"Dir::Cache={apt / 'cache'}", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
        "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1", "-o", "Acquire::Languages=none",
        "-o", "Acquire::Retries=3",
    ]


def ensure_root(cache: Path) -> Path:
    """The aarch64 sysroot: Debian 12 arm64 packages unpacked into cache/root (made once)."""
    root, stamp = cache / "root", cache / "root" / ".deeplab-edge-root.json"
    wanted = sorted(DEBIAN_PACKAGES)
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()).get("packages") == wanted:
                return root
        except ValueError:
            pass
    for tool, fix in (("apt-get", "This step fetches Debian 12 arm64 packages with apt (Debian/Ubuntu hosts)."),
                      ("dpkg-deb", "Install dpkg.")):
        if not shutil.which(tool):
            raise SetupError(f"{tool} not found. {fix} Or copy a prepared {root} from another machine.")
    if not DEBIAN_KEYRING.is_file():
        raise SetupError(f"{DEBIAN_KEYRING} not found: install the Debian archive keyring "
                         "(`sudo apt-get install debian-archive-keyring`).")
    apt, debs = cache / "apt", cache / "debs"
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial", apt / "sources.list.d",
              apt / "preferences.d", debs):
        d.mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    mirror = os.environ.get("DEEPLAB_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")
    security = os.environ.get("DEEPLAB_EDGE_DEBIAN_SECURITY", "http://deb.debian.org/debian-security").rstrip("/")
    opt = f"[arch=arm64 signed-by={DEBIAN_KEYRING}]"
    (apt / "sources.list").write_text(
        f"deb {opt} {mirror} {DEBIAN_SUITE} main\n"
        f"deb {opt} {mirror} {DEBIAN_SUITE}-updates main\n"
        f"deb {opt} {security} {DEBIAN_SUITE}-security main\n")
    opts = _apt_options(apt)
    missing = [p for p in wanted if not list(debs.glob(f"{p}_*_arm64.deb"))]
    if missing:
        _log(f"fetching {len(missing)} Debian {DEBIAN_SUITE} arm64 packages into {debs}")
        fix = (f"Needs network access to {mirror} once (set DEEPLAB_EDGE_DEBIAN_MIRROR for another mirror); "
               f"the packages are then cached in {debs}.")
        proc = _run_setup(["apt-get", *opts, "-q", "update"], "apt-get update (Debian arm64 package lists)", fix)
        if not any((apt / "lists").glob("*Packages*")):  # apt-get update exits 0 when every fetch failed
            raise SetupError(f"apt-get update fetched no Debian arm64 package lists "
                             f"({_reason(proc.stderr + proc.stdout) or 'no output'}). {fix}")
        _run_setup(["apt-get", *opts, "-q", "download", *[f"{p}:arm64" for p in missing]],
                   "apt-get download (Debian arm64 packages)", fix, cwd=debs)
    files = sorted(f for p in wanted for f in debs.glob(f"{p}_*_arm64.deb"))
    tmp = cache / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in files:
        _run_setup(["dpkg-deb", "-x", str(deb), str(tmp)], f"dpkg-deb -x {deb.name}",
                   f"Delete {deb} and run again (it is fetched again).")
    python = tmp / "usr" / "bin" / f"python{PY_VERSION}"
    if not python.is_file():
        raise SetupError(f"{python} missing after unpacking the Debian packages; delete {cache} and run again.")
    (tmp / ".deeplab-edge-root.json").write_text(json.dumps({"packages": wanted, "debs": [f.name for f in files]},
                                                            indent=1))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    _log(f"aarch64 Python {PY_VERSION} unpacked into {root}")
    return root


# ---------------------------------------------------------------------------------------------------- wheels


def _platforms(arch: str) -> list[str]:
    return [f"{tag}_{arch}" for tag in MANYLINUX]


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def _source_files(source: Path) -> list[Path]:
    """Files of the working tree: tracked and untracked-not-ignored when a git checkout, else all but caches."""
    try:
        out = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, timeout=60, check=True).stdout.decode()
        files = [source / f for f in out.split("\0") if f]
        if files:
            return [f for f in files if f.is_file()]
    except (OSError, subprocess.SubprocessError):
        pass
    skip = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return [f for f in source.rglob("*") if f.is_file() and not (set(f.relative_to(source).parts) & skip)
            and not any(p.endswith(".egg-info") for p in f.relative_to(source).parts)]


def build_project_wheel(source: Path, work: Path) -> Path:
    """A wheel of the working tree at `source`, built from a copy (nothing is written into the checkout)."""
    if not (source / "pyproject.toml").is_file():
        raise CheckError(f"{source} has no pyproject.toml: pass --source with the deeplab-edge checkout.")
    copy, dist = work / "source", work / "dist"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(dist, ignore_errors=True)
    for f in _source_files(source):
        rel = f.relative_to(source)
        if rel.parts[:1] in (("tests",), ("docs",)) or rel.parts[:2] == ("benchmarks", "results"):
            continue
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, copy / rel)
    isolation = []
    if subprocess.run([sys.executable, "-c", "import setuptools, wheel"], capture_output=True).returncode == 0:
        isolation = ["--no-build-isolation"]  # offline and faster; the build backend is already here
    try:  # a broken build is the project's failure, not the environment's
        _run_setup(_pip("wheel", "-q", "--no-deps", *isolation, "-w", str(dist), str(copy)),
                   "building a wheel of the working tree", "Fix the build error shown (try `pip wheel --no-deps .`).")
    except SetupError as e:
        raise CheckError(str(e)) from None
    wheels = sorted(dist.glob("deeplab_edge-*.whl"))
    if not wheels:
        raise CheckError(f"no deeplab_edge wheel was built in {dist}; try `pip wheel --no-deps {source}`.")
    return wheels[-1]


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    return sorted(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:"))


def ensure_wheels(cache: Path, project_wheel: Path, arch: str, constraints: Path | None) -> list[Path]:
    """The core install's dependency wheels for `arch` (aarch64 / x86_64), resolved by pip for CPython 3.11
    manylinux <= 2.28 with constraints.txt's pins; cached per (requirements, constraints, tags)."""
    cons = constraints.read_text() if constraints and constraints.is_file() else ""
    key = hashlib.sha256(json.dumps([_requires(project_wheel), cons, _platforms(arch), PY_VERSION]).encode())
    folder = cache / "wheels" / arch / key.hexdigest()[:16]
    stamp = folder / ".complete.json"
    if stamp.is_file():
        names = json.loads(stamp.read_text())["wheels"]
        if all((folder / n).is_file() for n in names):
            return [folder / n for n in names]
    _log(f"resolving the core install's {arch} wheels (pip download, CPython {PY_VERSION}, {MANYLINUX[-1]})")
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)  # kept between attempts: pip reuses what it downloaded
    args = ["download", "-q", "-d", str(tmp), "--only-binary=:all:", "--python-version", PY_VERSION,
            "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for p in _platforms(arch):
        args += ["--platform", p]
    if cons:
        args += ["-c", str(constraints)]
    _run_setup(_pip(*args, str(project_wheel)), f"pip download of the {arch} wheels",
               "Needs network access to the package index once (or a pip config pointing at a mirror); "
               f"they are then cached in {cache / 'wheels'}.")
    # pip also copies the project wheel in; drop it and anything a former resolution left behind.
    proc = _run_setup(_pip("install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(tmp),
                           "--target", str(tmp / "_dry"), "--only-binary=:all:", "--python-version", PY_VERSION,
                           "--implementation", "cp", *sum((["--platform", p] for p in _platforms(arch)), []),
                           "--report", "-", "-q", str(project_wheel)),
                      f"checking the {arch} wheel set", "Delete the folder and run again.")
    picked = {Path(item["download_info"]["url"]).name for item in json.loads(proc.stdout)["install"]}
    names = sorted(n for n in picked if not n.startswith("deeplab_edge-") and (tmp / n).is_file())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for n in names:
        shutil.move(str(tmp / n), folder / n)
    shutil.rmtree(tmp, ignore_errors=True)
    (stamp).write_text(json.dumps({"wheels": names, "requires": _requires(project_wheel)}, indent=1))
    for old in folder.parent.iterdir():  # keep one resolution per architecture
        if old != folder and old.is_dir() and not old.name.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    return [folder / n for n in names]


def install_target(wheels: list[Path], target: Path, arch: str) -> None:
    """pip install --target (no deps, no index) of `wheels` built for `arch`."""
    shutil.rmtree(target, ignore_errors=True)
    args = ["install", "-q", "--no-deps", "--no-index", "--target", str(target), "--only-binary=:all:",
            "--python-version", PY_VERSION, "--implementation", "cp"]
    for p in _platforms(arch):
        args += ["--platform", p]
    _run_setup(_pip(*args, *map(str, wheels)), f"pip install --target {target}", f"Delete {target} and run again.")


def ensure_site(cache: Path, wheels: list[Path]) -> Path:
    """The dependency wheels installed for aarch64 into one folder (cached per wheel set)."""
    site = cache / "site-aarch64"
    stamp = site / ".deeplab-edge-site.json"
    names = sorted(w.name for w in wheels)
    if stamp.is_file() and json.loads(stamp.read_text()).get("wheels") == names:
        return site
    _log(f"installing {len(wheels)} aarch64 wheels into {site}")
    install_target(wheels, site, "aarch64")
    stamp.write_text(json.dumps({"wheels": names}, indent=1))
    return site


# ------------------------------------------------------------------------------------------ emulated CPU


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
        code = ("import json, platform, struct, sys\n"
                "aux = dict(struct.iter_unpack('<QQ', open('/proc/self/auxv', 'rb').read()))\n"
                "try:\n"  # MIDR_EL1 (EL0 reads are emulated, HWCAP_CPUID): `mrs x0, midr_el1; ret`
                "    import ctypes, mmap\n"
                "    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
                "    m.write(bytes.fromhex('000038d5c0035fd6'))\n"
                "    midr = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()\n"
                "except Exception:\n"
                "    midr = None\n"
                "print(json.dumps({'hwcap': aux.get(16, 0), 'hwcap2': aux.get(26, 0), 'midr': midr,"
                " 'machine': platform.machine(), 'python': platform.python_version(),"
                " 'libc': '-'.join(platform.libc_ver())}))\n")
        try:
            proc = subprocess.run([str(self.python), "-S", "-E", "-c", code], capture_output=True, text=True,
                                  env=self.env(cpu), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SetupError(f"the aarch64 python did not start within {timeout:.0f} s under qemu "
                             f"(QEMU_CPU={cpu}).") from None
        if proc.returncode != 0:
            known = "" if cpu.split(",")[0] in CPUS else f" (`{self.qemu} -cpu help` lists the CPUs qemu knows)"
            raise SetupError(f"the aarch64 python failed under qemu (QEMU_CPU={cpu}, exit {proc.returncode}: "
                             f"{_tail(proc.stderr or proc.stdout)}){known}; delete {self.root} to rebuild it.")
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
        probe["features"] = hwcap_features(probe["hwcap"], probe["hwcap2"])
        cpuinfo.write_text(arm_cpuinfo(cpu, probe["features"], midr=probe.get("midr")))
        probe["cpuinfo_part"] = next((ln.split(":")[1].strip() for ln in cpuinfo.read_text().splitlines()
                                      if ln.startswith("CPU part")), None)
        # What the project's own sysinfo makes of this CPU, inside the guest.
        code = ("import json\nfrom deeplab_edge.benchmarks import sysinfo as s\ni = s.machine_info()\n"
                "print(json.dumps({k: i.get(k) for k in ('cpu_model', 'isa_summary', 'int8_isa', 'machine')}))\n")
        try:
            proc = subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, env=self.env(cpu),
                                  timeout=timeout)
            probe["sysinfo"] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else \
                {"error": _tail(proc.stderr) or f"exit {proc.returncode}"}
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


class _Lock:
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
            _log(f"waiting for another aarch64 check holding {self.path}")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()


# ---------------------------------------------------------------------------------------------------- checks


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


def _predict(python: list[str], env: dict, model: Path, photos: list[Path], out: Path, threads: int,
             timeout: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [*python, "-m", "deeplab_edge", "predict", str(model), *map(str, photos), "--out", str(out),
           "--no-overlay", "--threads", str(threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        rc, err = proc.returncode, _tail(proc.stderr or proc.stdout, 2)
    except subprocess.TimeoutExpired:
        rc, err = -1, f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    if rc != 0:
        if rc < 0 and rc != -1:
            err = f"killed by signal {-rc}" + (f": {err}" if err else "")
        return {"ok": False, "rc": rc, "error": err or f"exit {rc}", "wall_s": round(wall, 2)}
    return {"ok": True, "rc": 0, "wall_s": round(wall, 2)}


def arm_labels(models: list[Path], images: np.ndarray, *, cpu: str = VERIFY_CPU, threads: int = 2,
               timeout: float = 1800, cache: Path | None = None) -> dict[Path, np.ndarray]:
    """Each model's label maps of `images` ((N, H, W, 3) uint8), computed by `deeplab-edge predict` on the
    aarch64 runtime under qemu (the real Arm kernels of onnxruntime and XNNPACK). Builds the environment
    on first use (apt and pip downloads; SetupError offline). CheckError if a predict fails."""
    cache = Path(cache) if cache else cache_root()
    out: dict[Path, np.ndarray] = {}
    with _Lock(cache):
        env = prepare(cache=cache, sizes=False)
        env.select_cpu(cpu)
        work = cache / "work" / "labels"
        shutil.rmtree(work, ignore_errors=True)
        (work / "images").mkdir(parents=True)
        photos = []
        for i, img in enumerate(images):
            photos.append(work / "images" / f"v{i:04d}.png")
            Image.fromarray(img).save(photos[-1])
        for m in models:
            dest = work / Path(m).stem
            r = _predict([str(env.python)], env.env(cpu), Path(m), photos, dest, threads, timeout)
            if not r["ok"]:
                raise CheckError(f"predict of {m} under qemu ({cpu}) failed: {r['error']}")
            out[Path(m)] = np.stack([read_mask(dest / f"{p.stem}_mask.png") for p in photos])
    return out


def compare(ref_dir: Path, got_dir: Path, photos: list[Path]) -> dict:
    """Pixel agreement of got_dir's masks with ref_dir's, per photo, min and pixel-weighted."""
    per, equal, total = {}, 0, 0
    for p in photos:
        ref, got = ref_dir / f"{p.stem}_mask.png", got_dir / f"{p.stem}_mask.png"
        if not got.is_file() or not ref.is_file():
            per[p.name] = None
            continue
        a, b = read_mask(ref), read_mask(got)
        if a.shape != b.shape:
            per[p.name] = 0.0
            total += a.size
            continue
        same = int(np.count_nonzero(a == b))
        per[p.name] = same / a.size
        equal, total = equal + same, total + a.size
    values = [v for v in per.values() if v is not None]
    complete = len(values) == len(photos)
    return {"per_photo": per, "min": min(values) if complete and values else None,
            "pixel_weighted": equal / total if complete and total else None}


def _threshold(precision: str) -> float:
    return 0.99 if precision == "int8" else 1.0


def _bench(env: AArch64Env, cpu: str, model: Path, out: Path, timeout: float, cache: Path | None) -> dict:
    """`deeplab-edge bench` on one file under emulation; `cache`: the guest's DEEPLAB_EDGE_CACHE (an empty
    folder: a fresh board), None: this host's deeplab-edge cache (the built-in demo set, if made)."""
    shutil.rmtree(out, ignore_errors=True)
    guest_env = env.env(cpu)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        guest_env["DEEPLAB_EDGE_CACHE"] = str(cache)
    cmd = [str(env.python), "-m", "deeplab_edge", "bench", str(model), "--threads", "2", "--warmup", "1",
           "--min-runs", "3", "--min-time", "0.1", "--eval-images", "4", "--device", "cpu", "--out", str(out)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=guest_env, timeout=timeout)
        rc, text = proc.returncode, (proc.stdout or "") + (proc.stderr or "")
    except subprocess.TimeoutExpired:
        rc, text = -1, f"timed out after {timeout:.0f} s"
    result = {"file": model.name, "cache": "empty (a fresh board)" if cache is not None else "this host's",
              "rc": rc, "wall_s": round(time.perf_counter() - t0, 1),
              "last_line": _tail(text), "rows": []}
    data = out / "bench.json"
    if data.is_file():
        report = json.loads(data.read_text())
        machine = report.get("machine") or {}
        result["machine"] = {k: machine.get(k) for k in ("cpu_model", "isa_summary", "int8_isa", "machine")}
        for row in report.get("rows") or []:
            lat = row.get("latency") or {}
            result["rows"].append({
                "name": row.get("name"), "status": row.get("status"), "reason": row.get("reason"),
                "median_ms": lat.get("p50_ms"), "runs": lat.get("runs"), "miou": row.get("miou"),
                "provider": row.get("provider")})
    result["ok"] = any(r["status"] == "ok" for r in result["rows"])
    return result


def _wheel_rows(wheels: list[Path]) -> list[dict]:
    rows = []
    for w in sorted(wheels, key=lambda p: p.name.lower()):
        name, version = w.name.split("-")[:2]
        with zipfile.ZipFile(w) as z:
            unpacked = sum(i.file_size for i in z.infolist())
        rows.append({"package": name.lower().replace("_", "-"), "version": version, "wheel": w.name,
                     "mb": round(w.stat().st_size / 2**20, 2), "unpacked_mb": round(unpacked / 2**20, 2),
                     "glibc": _wheel_glibc(w.name)})
    return rows


def _wheel_glibc(filename: str) -> str | None:
    """The oldest glibc a manylinux wheel installs on ("2.27" for ..manylinux_2_27_aarch64.manylinux_2_28..)."""
    found = [(2, 17) if t.startswith("manylinux2014") else (2, 12) if t.startswith("manylinux2010")
             else (2, 5) if t.startswith("manylinux1") else tuple(map(int, t.split("_")[1:3]))
             for t in filename[:-4].split("-")[-1].split(".") if t.startswith("manylinux")]
    return ".".join(map(str, min(found))) if found else None


def _needs_glibc(rows: list[dict]) -> tuple[str | None, list[str]]:
    """The glibc the whole set needs and the packages that set it."""
    versions = [tuple(map(int, r["glibc"].split("."))) for r in rows if r.get("glibc")]
    if not versions:
        return None, []
    top = max(versions)
    return ".".join(map(str, top)), [r["package"] for r in rows if r.get("glibc") and
                                     tuple(map(int, r["glibc"].split("."))) == top]


def _deeplab_cache() -> Path:
    return Path(os.environ.get("DEEPLAB_EDGE_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeplab-edge")


def default_photos() -> Path | None:
    """photos/ of the built-in demo dataset in the deeplab-edge cache (the newest version), if made."""
    found = sorted(p for p in _deeplab_cache().glob("demo-v*/photos") if p.is_dir())
    return found[-1] if found else None


def run_check(models: Path, photos: list[Path], cpus: list[str], *, formats: list[str] | None = None,
              bench_file: str | None = None, bench: bool = True, threads: int = 2, timeout: float = 900,
              env: AArch64Env | None = None, cache: Path | None = None, source: Path = REPO,
              sizes: bool = True, notes: list[str] | None = None) -> dict:
    """Run the whole check and return its results (JSON-ready). Raises SetupError."""
    manifest_path = Path(models) / "manifest.json"
    if not manifest_path.is_file():
        raise CheckError(f"{manifest_path} not found: --models must be an export folder with its manifest.json.")
    manifest = json.loads(manifest_path.read_text())
    entries = [e for e in manifest.get("files") or [] if not formats or e.get("format") in formats]
    if not entries:
        raise CheckError(f"no files{' of formats ' + ','.join(formats) if formats else ''} in {manifest_path}.")
    missing = [e["file"] for e in entries if not (Path(models) / e["file"]).is_file()]
    if missing:
        raise CheckError(f"{', '.join(missing)} listed in {manifest_path} but missing from {models}.")
    if not photos:
        raise CheckError("no photos: pass --photos with a folder of .jpg/.png images.")
    cache = Path(cache) if cache else cache_root()
    with _Lock(cache):
        env = env or prepare(source=source, cache=cache, sizes=sizes)
        work = cache / "work"
        started = _dt.datetime.now(_dt.timezone.utc)
        x86_python = [sys.executable]
        x86_env = {**os.environ, "PYTHONPATH": str(env.project_site), "PYTHONNOUSERSITE": "1"}
        x86_env.pop("PYTHONHOME", None)
        results, failures = [], []
        _log(f"x86 reference masks ({len(entries)} files x {len(photos)} photos)")
        for e in entries:
            r = _predict(x86_python, x86_env, Path(models) / e["file"], photos, work / "x86" / e["format"], threads,
                         timeout)
            if not r["ok"]:
                raise CheckError(f"the x86 reference predict failed for {e['file']}: {r['error']}")
        benches = {}
        bench_entry = next((e for e in entries if e["file"] == bench_file or e["format"] == bench_file), None) \
            if bench_file else next((e for e in entries if e["format"] == "tflite_int8"), entries[0])
        if bench_file and bench_entry is None:
            raise CheckError(f"--bench-file {bench_file} is not among the checked files.")
        for cpu in cpus:
            probe = env.select_cpu(cpu)
            shown = [f for f in SHOWN_FEATURES if f in probe["features"]]
            _log(f"{cpu}: features {' '.join(probe['features'])}")
            for e in entries:
                out = work / cpu / e["format"]
                r = _predict([str(env.python)], env.env(cpu), Path(models) / e["file"], photos, out, threads, timeout)
                row = {"cpu": cpu, "format": e["format"], "file": e["file"], "precision": e.get("precision"),
                       "emulated_wall_s": r["wall_s"], "asserted": asserted(cpu), "features": shown}
                if r["ok"]:
                    row.update(compare(work / "x86" / e["format"], out, photos))
                else:
                    row.update(error=r["error"], min=None, pixel_weighted=None)
                need = _threshold(e.get("precision") or "")
                row["threshold"] = need
                row["passed"] = row["min"] is not None and row["min"] >= need
                agree = "failed: " + row["error"] if not r["ok"] else \
                    f"min {100 * row['min']:.2f}%, pixel-weighted {100 * row['pixel_weighted']:.2f}%"
                _log(f"{cpu} {e['format']:15s} {agree} ({r['wall_s']:.1f} s emulated)")
                if row["asserted"] and not row["passed"]:
                    failures.append(f"{cpu} {e['format']}: {agree} (needs {100 * need:.0f}%)")
                results.append(row)
            if bench:
                caches = [work / "guest-cache"]  # a fresh board: no deeplab-edge cache
                if any(_deeplab_cache().glob("demo-v*/dataset.json")):
                    caches.append(None)  # and with this host's cache (the built-in demo set made)
                benches[cpu] = []
                for i, c in enumerate(caches):
                    b = _bench(env, cpu, Path(models) / bench_entry["file"], work / cpu / f"bench{i}", timeout, c)
                    benches[cpu].append(b)
                    rows = ", ".join(f"{r['name']} {r['status']}" + (f" {r['median_ms']:.1f} ms emulated"
                                                                      if r.get("median_ms") else "")
                                     for r in b["rows"])
                    _log(f"{cpu} bench {bench_entry['file']} (cache: {b['cache']}): exit {b['rc']}; "
                         f"{rows or 'no rows'}; {b['last_line']}")
        a64, x86 = _wheel_rows(env.wheels_aarch64 + [env.project_wheel]), _wheel_rows(env.wheels_x86_64 +
                                                                                       [env.project_wheel])
        # The Arm CPUs among themselves: each CPU's masks against the first asserted CPU's.
        first = next((c for c in cpus if asserted(c)), cpus[0])
        for row in results:
            if row["cpu"] != first and not row.get("error"):
                row["vs_" + first] = compare(work / first / row["format"], work / row["cpu"] / row["format"],
                                             photos)["min"]
        glibc, glibc_by = _needs_glibc(a64)
        return {
            "date": started.date().isoformat(),
            "started": started.isoformat(timespec="seconds"),
            "host": {"cpu_model": _host_cpu_model(), "machine": platform.machine(), "os": platform.platform(),
                     "python": platform.python_version()},
            "qemu": qemu_version(env.qemu),
            "guest": {cpu: {k: p.get(k) for k in ("machine", "python", "libc", "midr", "cpuinfo_part", "features",
                                                  "sysinfo")}
                      for cpu, p in env.probes.items()},
            "models": str(models), "photos": [str(p) for p in photos],
            "photo_sizes": {p.name: list(Image.open(p).size) for p in photos},
            "model": {"preset": (manifest.get("model") or {}).get("preset"),
                      "input_size": (manifest.get("model") or {}).get("input_size"),
                      "num_classes": len((manifest.get("model") or {}).get("class_names") or []) or None},
            "threads": threads,
            "cpus": cpus, "not_asserted": [c for c in cpus if not asserted(c)],
            "results": results, "bench": benches, "bench_file": bench_entry["file"] if bench else None,
            "install": {"aarch64": a64, "x86_64": x86,
                        "aarch64_mb": round(sum(r["mb"] for r in a64), 1),
                        "x86_64_mb": round(sum(r["mb"] for r in x86), 1) if env.wheels_x86_64 else None,
                        "aarch64_unpacked_mb": round(sum(r["unpacked_mb"] for r in a64), 1),
                        "x86_64_unpacked_mb": round(sum(r["unpacked_mb"] for r in x86), 1)
                        if env.wheels_x86_64 else None,
                        "platforms": list(MANYLINUX), "python": PY_VERSION,
                        "aarch64_needs_glibc": glibc, "aarch64_glibc_set_by": glibc_by},
            "arm_reference_cpu": first,
            "notes": list(notes or []),
            "failures": failures,
            "passed": not failures,
        }


# ---------------------------------------------------------------------------------------------------- report


def _pct(v) -> str:
    return "failed" if v is None else f"{100 * v:.2f}%"


def to_markdown(r: dict) -> str:
    cpus = r["cpus"]
    lines = [f"# The TF-free runtime on aarch64 under qemu-user ({r['date']})", "",
             f"Host: {r['host']['cpu_model']} ({r['host']['machine']}), {r['qemu']}. Guest: Debian 12 arm64 "
             f"Python {next(iter(r['guest'].values()), {}).get('python', '?')} "
             f"({next(iter(r['guest'].values()), {}).get('libc', '?')}) under `qemu-aarch64-static -L ROOT` "
             "(user-mode emulation, no binfmt, no chroot), the core install (`pip install deeplab-edge`, no "
             "extras) from aarch64 manylinux wheels. Produced by `benchmarks/aarch64_check.py` (raw numbers "
             "in the .json beside this file).", "",
             f"Model files: {r['models']} (preset {r['model'].get('preset')}, input "
             f"{r['model'].get('input_size')}, {r['model'].get('num_classes')} classes). Photos: "
             + ", ".join(f"{n} {w}x{h}" for n, (w, h) in r["photo_sizes"].items())
             + f". `deeplab-edge predict --no-overlay --threads {r['threads']}` on x86 (reference) and under "
             "each emulated CPU, same wheel of the working tree.", "",
             "Agreement: the fraction of mask pixels equal to the x86 mask of the same file and photo; min over "
             "the photos / pixel-weighted over all photos. Time: wall seconds of one emulated `predict` call "
             f"on the {len(r['photos'])} photos, interpreter start-up and imports included (emulated: proves "
             "behaviour, not speed). Needed: 100% (min) for float files (fp32, fp16, dynamic), 99% for int8."
             + (f" Not asserted (reported only): `{'`, `'.join(r['not_asserted'])}`." if r["not_asserted"] else ""),
             ""]
    header = "| format | " + " | ".join(f"{c} min / weighted | {c} s" for c in cpus) + " |"
    lines += [header, "|---|" + "---|---|" * len(cpus)]
    for fmt in dict.fromkeys(row["format"] for row in r["results"]):
        cells = []
        for c in cpus:
            row = next((x for x in r["results"] if x["cpu"] == c and x["format"] == fmt), None)
            if row is None:
                cells += ["", ""]
            elif row.get("error"):
                cells += [f"failed: {row['error'][:80]}", f"{row['emulated_wall_s']:.0f}"]
            else:
                mark = "" if row["passed"] or not row["asserted"] else " **FAIL**"
                cells += [f"{_pct(row['min'])} / {_pct(row['pixel_weighted'])}{mark}",
                          f"{row['emulated_wall_s']:.0f}"]
        lines.append(f"| {fmt} | " + " | ".join(cells) + " |")
    lines += ["", "Emulated CPUs: MIDR_EL1 read in the guest and the features qemu gives the CPU (AT_HWCAP), "
              "written into the emulated /proc/cpuinfo; then what the project's `benchmarks/sysinfo.py` "
              "(`machine_info()`) read back inside the guest:", "",
              "| QEMU_CPU | MIDR | features of interest | sysinfo: CPU, ISA | sysinfo: int8 line |",
              "|---|---|---|---|---|"]
    for c in cpus:
        g = r["guest"].get(c) or {}
        feats = [f for f in SHOWN_FEATURES if f in g.get("features", [])]
        m = g.get("sysinfo") or {}
        midr = f"0x{g['midr']:08x}" if isinstance(g.get("midr"), int) else "-"
        lines.append(f"| {c} | {midr} | {' '.join(feats) or '-'} | "
                     + (f"error: {m['error'][:80]} | |" if m.get("error") else
                        f"{m.get('cpu_model') or '-'}, {m.get('isa_summary') or '-'} | {m.get('int8_isa') or '-'} |"))
    if r["bench"]:
        lines += ["", f"`deeplab-edge bench {r['bench_file']} --threads 2 --warmup 1 --min-runs 3 --min-time 0.1 "
                  "--eval-images 4 --device cpu --out DIR` per CPU, core install only (no matplotlib, psutil, "
                  "imgviz), with an empty deeplab-edge cache (a fresh board) and with this host's cache (the "
                  "built-in demo set already made); latency emulated:", "",
                  "| QEMU_CPU | cache | exit code | rows | emulated median latency | wall s | last line |",
                  "|---|---|---|---|---|---|---|"]
        for c, runs in r["bench"].items():
            for b in runs:
                rows = ", ".join(f"{x['name']} {x['status']}" for x in b["rows"]) or "none"
                lat = ", ".join(f"{x['median_ms']:.0f} ms" for x in b["rows"] if x.get("median_ms")) or "-"
                lines.append(f"| {c} | {b['cache']} | {b['rc']} | {rows} | {lat} | {b['wall_s']:.0f} | "
                             f"{(b['last_line'] or '').replace('|', '/')[:160]} |")
    inst = r["install"]
    lines += ["", f"Core install size (wheels pip resolved for CPython {inst['python']}, manylinux <= "
              f"{inst['platforms'][-1].split('_', 1)[-1].replace('_', '.')}, constraints.txt pins): aarch64 "
              f"{inst['aarch64_mb']} MB download / {inst['aarch64_unpacked_mb']} MB unpacked"
              + (f"; x86_64 {inst['x86_64_mb']} MB / {inst['x86_64_unpacked_mb']} MB." if inst["x86_64_mb"] else "."),
              "", "| package | version | aarch64 MB | x86_64 MB | aarch64 wheel |", "|---|---|---|---|---|"]
    x86 = {x["package"]: x for x in inst["x86_64"]}
    for a in inst["aarch64"]:
        b = x86.get(a["package"])
        x86_mb = f"{b['mb']:.2f}" if b else "-"
        lines.append(f"| {a['package']} | {a['version']} | {a['mb']:.2f} | {x86_mb} | {a['wheel']} |")
    for b in inst["x86_64"]:
        if b["package"] not in {a["package"] for a in inst["aarch64"]}:
            lines.append(f"| {b['package']} | {b['version']} | - | {b['mb']:.2f} | (x86_64 only) |")
    ref = r.get("arm_reference_cpu")
    key = f"vs_{ref}"
    others = [x for x in r["results"] if key in x and x["asserted"]]
    if others:
        differ = sorted({f"{x['cpu']} {x['format']} ({_pct(x[key])})" for x in others if x[key] != 1.0})
        lines += ["", f"The asserted Arm CPUs among themselves (masks against {ref}'s): "
                  + ("identical for every file and photo." if not differ else "differ: " + ", ".join(differ) + ".")]
    if inst.get("aarch64_needs_glibc"):
        lines += ["", f"The aarch64 wheel set needs glibc >= {inst['aarch64_needs_glibc']} (set by "
                  f"{', '.join(inst['aarch64_glibc_set_by'])}); per wheel: "
                  + ", ".join(f"{a['package']} {a['glibc']}" for a in inst["aarch64"] if a.get("glibc")) + "."]
    if r.get("notes"):
        lines += ["", "Notes:", *[f"- {n}" for n in r["notes"]]]
    lines += ["", "Result: " + ("passed." if r["passed"] else "FAILED: " + "; ".join(r["failures"])), ""]
    return "\n".join(lines)


def write_report(r: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{r['date']}-aarch64.md", out / f"{r['date']}-aarch64.json"
    js.write_text(json.dumps(r, indent=1) + "\n")
    md.write_text(to_markdown(r))
    return md, js


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aarch64_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=None,
                   help="export folder with manifest.json (default: report/models, the demo's, if it exists)")
    p.add_argument("--photos", type=Path, default=None,
                   help="folder of photos (default: the built-in demo set's photos/ in the deeplab-edge cache)")
    p.add_argument("--cpus", default=",".join(DEFAULT_CPUS),
                   help=f"comma-separated QEMU_CPU names (default {','.join(DEFAULT_CPUS)}; also "
                        f"{', '.join(c for c in CPUS if c not in DEFAULT_CPUS)}; qemu options follow their CPU, "
                        "e.g. max,sme=off; `max` is reported, not asserted)")
    p.add_argument("--formats", default=None, help="comma-separated formats of the manifest to check (default all)")
    p.add_argument("--bench-file", default=None, help="file or format to bench (default tflite_int8, else the first)")
    p.add_argument("--no-bench", action="store_true", help="skip the bench run")
    p.add_argument("--threads", type=int, default=2, help="--threads for every predict call (default 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per emulated call (default 900)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                   help="folder for <date>-aarch64.md and .json (default benchmarks/results/)")
    p.add_argument("--source", type=Path, default=REPO, help="the deeplab-edge checkout to install (default this one)")
    p.add_argument("--note", action="append", default=[], help="a line for the report's Notes (repeatable)")
    args = p.parse_args(argv)
    try:
        models = args.models
        if models is None:
            models = Path("report") / "models"
            if not (models / "manifest.json").is_file():
                raise CheckError("no --models given and report/models/manifest.json does not exist: run `deeplab-edge "
                                 "demo` (or `make demo`) first, or pass --models with an export folder.")
        photos_dir = args.photos or default_photos()
        if photos_dir is None or not photos_dir.is_dir():
            raise CheckError(f"photos folder {photos_dir or '(built-in demo set)'} not found: pass --photos DIR.")
        photos = sorted(f for f in photos_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        cpus = parse_cpus(args.cpus)
        if not cpus:
            raise CheckError("--cpus is empty.")
        formats = [f.strip() for f in args.formats.split(",")] if args.formats else None
        result = run_check(models.resolve(), photos, cpus, formats=formats, bench_file=args.bench_file,
                           bench=not args.no_bench, threads=args.threads, timeout=args.timeout,
                           source=args.source.resolve(), notes=args.note)
    except (SetupError, CheckError) as e:
        print(f"aarch64-check: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aarch64-check: interrupted", file=sys.stderr)
        return 130
    md, js = write_report(result, args.out)
    print()
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
