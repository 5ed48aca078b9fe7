"""Where a Vulkan device comes from for LiteRT's GPU accelerator (WebGPU over Vulkan on Linux).

A machine with a GPU has its driver's Vulkan ICD (`/usr/share/vulkan/icd.d/*.json`) and the loader
(`libvulkan.so.1`). A machine without one can still run the GPU path on SwiftShader, Chromium's CPU
implementation of Vulkan, from Debian's `chromium-common` package: `install_swiftshader()` downloads
that package with `apt-get download` (nothing is installed system-wide) and keeps three files of it in
`~/.cache/deeplab-edge/swiftshader`. That device proves files and code paths; its latency is a CPU's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deeplab_edge.errors import UserError

ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
SWIFTSHADER_FILES = ("libvk_swiftshader.so", "libvulkan.so.1")
ICD_JSON = "vk_swiftshader_icd.json"


def swiftshader_dir() -> Path:
    """Where the software Vulkan device lives: $DEEPLAB_EDGE_SWIFTSHADER, else ~/.cache/deeplab-edge/swiftshader."""
    env = os.environ.get("DEEPLAB_EDGE_SWIFTSHADER")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeplab-edge" / "swiftshader"


@dataclass(frozen=True)
class VulkanSetup:
    """A Vulkan loader and the drivers (ICD files) it will use; `software` when only SwiftShader is there."""

    loader: str  # path or soname of libvulkan.so.1
    icds: tuple[str, ...]  # ICD JSON files; empty: the loader's own search
    software: bool
    source: str  # "system" or the SwiftShader folder

    def environment(self) -> dict[str, str]:
        """What the process needs before the first GPU model is created."""
        env = {"LITERT_DISABLE_OPENCL": "1"}  # no OpenCL probe (it prints on stdout); WebGPU/Vulkan is used
        if self.software or os.environ.get("VK_ICD_FILENAMES"):
            env["VK_ICD_FILENAMES"] = os.pathsep.join(self.icds)
        return env


def system_icds() -> tuple[str, ...]:
    """The Vulkan drivers the system declares (VK_ICD_FILENAMES / VK_DRIVER_FILES, else the ICD folders)."""
    named = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    if named:
        return tuple(p for p in named.split(os.pathsep) if p and Path(p).is_file())
    found = []
    for d in ICD_DIRS:
        if Path(d).is_dir():
            found += sorted(str(p) for p in Path(d).glob("*.json"))
    return tuple(found)


def _is_software_icd(path: str) -> bool:
    name = Path(path).name.lower()
    return any(k in name for k in ("swiftshader", "lvp", "lavapipe"))


def find_vulkan(*, allow_software: bool = True) -> VulkanSetup | None:
    """A hardware Vulkan driver with its loader if the system has one, else the SwiftShader folder if it holds a
    complete device (and `allow_software`), else None. Reads files only: nothing is loaded."""
    loader = ctypes.util.find_library("vulkan")
    hardware = tuple(p for p in system_icds() if not _is_software_icd(p))
    if loader and hardware:
        return VulkanSetup(loader, hardware, False, "system")
    folder = swiftshader_dir()
    if allow_software and all((folder / f).is_file() for f in (*SWIFTSHADER_FILES, ICD_JSON)):
        return VulkanSetup(str(folder / "libvulkan.so.1"), (str(folder / ICD_JSON),), True, str(folder))
    return None


def activate(setup: VulkanSetup) -> None:
    """Make `setup` the process's Vulkan device: environment, then the loader opened globally so that
    LiteRT's accelerator finds it (LD_LIBRARY_PATH is read only when a process starts)."""
    os.environ.update(setup.environment())
    try:
        ctypes.CDLL(setup.loader, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise UserError(f"The Vulkan loader {setup.loader} cannot be loaded ({e}); reinstall the GPU driver, or "
                        "`deeplab-edge gpu --install-swiftshader` for the software device.") from None


def install_swiftshader(dest: Path | None = None, *, progress=print) -> Path:
    """Download Debian's chromium-common with `apt-get download` (no root needed when the package lists are
    there; as root they are refreshed once if the package is not found) and keep SwiftShader's Vulkan
    driver, Chromium's Vulkan loader and a fixed ICD file in `dest`. Nothing is installed system-wide."""
    dest = Path(dest or swiftshader_dir())
    if all((dest / f).is_file() for f in (*SWIFTSHADER_FILES, ICD_JSON)):
        progress(f"SwiftShader is already in {dest}")
        return dest
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise UserError(f"Installing SwiftShader needs Debian's {tool}, which this machine does not have. "
                            "On a machine with a GPU, install its Vulkan driver instead.")
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-swiftshader-") as tmp:
        tmp = Path(tmp)
        got = _apt_download(tmp)
        if got.returncode != 0 and os.geteuid() == 0:
            progress("refreshing the package lists (apt-get update)")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, timeout=600)
            got = _apt_download(tmp)
        debs = sorted(tmp.glob("chromium-common_*.deb"))
        if got.returncode != 0 or not debs:
            last = (got.stderr or got.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"apt-get download chromium-common failed: {last[0][:300]}. Check that Debian's package "
                            "registry is reachable (and run `apt-get update` as root).")
        x = tmp / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(x)], check=True, capture_output=True, timeout=600)
        lib = x / "usr" / "lib" / "chromium"
        missing = [f for f in SWIFTSHADER_FILES if not (lib / f).is_file()]
        if missing:
            raise UserError(f"{debs[0].name} has no {', '.join(missing)} under usr/lib/chromium; this Debian "
                            "release packages SwiftShader elsewhere.")
        staging = Path(tempfile.mkdtemp(prefix=".swiftshader-", dir=_parent(dest)))
        staging.chmod(0o755)
        for f in SWIFTSHADER_FILES:
            shutil.copy2(lib / f, staging / f)
        icd = {"file_format_version": "1.0.0",
               "ICD": {"library_path": str(dest / "libvk_swiftshader.so"), "api_version": "1.0.5"}}
        (staging / ICD_JSON).write_text(json.dumps(icd))
        (staging / "SOURCE.txt").write_text(f"{debs[0].name}: usr/lib/chromium/{{{','.join(SWIFTSHADER_FILES)}}}\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    progress(f"SwiftShader (software Vulkan) installed in {dest} from {debs[0].name}")
    return dest


def _parent(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.parent


def _apt_download(where: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["apt-get", "download", "-q", "chromium-common"], cwd=where, capture_output=True,
                              text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 1, "", "timed out after 900 s")
