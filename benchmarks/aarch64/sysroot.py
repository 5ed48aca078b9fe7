"""qemu-user and the aarch64 sysroot: Debian 12 arm64 packages unpacked into a folder that
qemu-aarch64-static uses as its library prefix (-L); no binfmt, no chroot, the host's apt setup untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ._common import SetupError, log, reason, run_setup

__all__ = ["DEBIAN_PACKAGES", "DEBIAN_SUITE", "PY_VERSION", "ensure_qemu", "ensure_root", "qemu_version"]

PY_VERSION = "3.11"  # Debian 12's Python: the ABI of the aarch64 wheels
# Debian 12 (bookworm) arm64: Python 3.11 (the wheels' ABI) and the shared libraries it and the wheels load.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g", "libexpat1",
    "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libgcc-s1", "libstdc++6", "libgomp1", "libsqlite3-0",
    "libuuid1", "libtirpc3", "libnsl2", "libcrypt1", "libzstd1", "libncursesw6", "libtinfo6", "libreadline8",
    "libdb5.3",
)
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def ensure_qemu(*, install: bool = True) -> str:
    """Path of qemu-aarch64-static (or qemu-aarch64); installs qemu-user-static with apt-get as root."""
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        exe = shutil.which(name)
        if exe:
            return exe
    if install and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        log("installing qemu-user-static with apt-get (root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "qemu-user-static"], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:  # stale package lists: update once, then retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env)
            run_setup(["apt-get", "install", "-y", "-q", "qemu-user-static"], "apt-get install qemu-user-static",
                      "Check the network, or install it yourself: sudo apt-get install qemu-user-static.", env=env)
        exe = shutil.which("qemu-aarch64-static")
        if exe:
            return exe
    raise SetupError("qemu-aarch64-static not found: install it with `sudo apt-get install qemu-user-static` "
                     "(Debian/Ubuntu; other distributions: their qemu-user-static package).")


def qemu_version(qemu: str) -> str:
    """The first line of `qemu --version`, or "unknown"."""
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


def _fetch_debs(cache: Path, wanted: list[str]) -> Path:
    """The .deb files of `wanted` in cache/debs, downloaded with a private apt configuration if missing."""
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
        log(f"fetching {len(missing)} Debian {DEBIAN_SUITE} arm64 packages into {debs}")
        fix = (f"Needs network access to {mirror} once (set DEEPLAB_EDGE_DEBIAN_MIRROR for another mirror); "
               f"the packages are then cached in {debs}.")
        proc = run_setup(["apt-get", *opts, "-q", "update"], "apt-get update (Debian arm64 package lists)", fix)
        if not any((apt / "lists").glob("*Packages*")):  # apt-get update exits 0 when every fetch failed
            raise SetupError(f"apt-get update fetched no Debian arm64 package lists "
                             f"({reason(proc.stderr + proc.stdout) or 'no output'}). {fix}")
        run_setup(["apt-get", *opts, "-q", "download", *[f"{p}:arm64" for p in missing]],
                  "apt-get download (Debian arm64 packages)", fix, cwd=debs)
    return debs


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
    debs = _fetch_debs(cache, wanted)
    files = sorted(f for p in wanted for f in debs.glob(f"{p}_*_arm64.deb"))
    tmp = cache / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in files:
        run_setup(["dpkg-deb", "-x", str(deb), str(tmp)], f"dpkg-deb -x {deb.name}",
                  f"Delete {deb} and run again (it is fetched again).")
    python = tmp / "usr" / "bin" / f"python{PY_VERSION}"
    if not python.is_file():
        raise SetupError(f"{python} missing after unpacking the Debian packages; delete {cache} and run again.")
    (tmp / ".deeplab-edge-root.json").write_text(json.dumps({"packages": wanted, "debs": [f.name for f in files]},
                                                            indent=1))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    log(f"aarch64 Python {PY_VERSION} unpacked into {root}")
    return root
