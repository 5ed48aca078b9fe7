"""The core install as wheels: a wheel of the working tree (built every run) and its dependencies as
aarch64 (and x86_64) manylinux wheels, resolved by pip from the project's requirements with
constraints.txt's pins and cached per resolution; and the size and glibc facts of a wheel set."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ._common import CheckError, SetupError, log, run_setup
from .sysroot import PY_VERSION

__all__ = ["MANYLINUX", "build_project_wheel", "ensure_site", "ensure_wheels", "install_target", "needs_glibc",
           "wheel_rows"]

# Wheels a glibc >= 2.28 system can install (ai-edge-litert 2.x ships only manylinux_2_27 for aarch64).
MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_24", "manylinux_2_27", "manylinux_2_28")


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
        run_setup(_pip("wheel", "-q", "--no-deps", *isolation, "-w", str(dist), str(copy)),
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
    log(f"resolving the core install's {arch} wheels (pip download, CPython {PY_VERSION}, {MANYLINUX[-1]})")
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)  # kept between attempts: pip reuses what it downloaded
    args = ["download", "-q", "-d", str(tmp), "--only-binary=:all:", "--python-version", PY_VERSION,
            "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for p in _platforms(arch):
        args += ["--platform", p]
    if cons:
        args += ["-c", str(constraints)]
    run_setup(_pip(*args, str(project_wheel)), f"pip download of the {arch} wheels",
              "Needs network access to the package index once (or a pip config pointing at a mirror); "
              f"they are then cached in {cache / 'wheels'}.")
    # pip also copies the project wheel in; drop it and anything a former resolution left behind.
    proc = run_setup(_pip("install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(tmp),
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
    stamp.write_text(json.dumps({"wheels": names, "requires": _requires(project_wheel)}, indent=1))
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
    run_setup(_pip(*args, *map(str, wheels)), f"pip install --target {target}", f"Delete {target} and run again.")


def ensure_site(cache: Path, wheels: list[Path]) -> Path:
    """The dependency wheels installed for aarch64 into one folder (cached per wheel set)."""
    site = cache / "site-aarch64"
    stamp = site / ".deeplab-edge-site.json"
    names = sorted(w.name for w in wheels)
    if stamp.is_file() and json.loads(stamp.read_text()).get("wheels") == names:
        return site
    log(f"installing {len(wheels)} aarch64 wheels into {site}")
    install_target(wheels, site, "aarch64")
    stamp.write_text(json.dumps({"wheels": names}, indent=1))
    return site


def wheel_rows(wheels: list[Path]) -> list[dict]:
    """Package, version, download and unpacked MiB and oldest glibc of each wheel, by package name."""
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


def needs_glibc(rows: list[dict]) -> tuple[str | None, list[str]]:
    """The glibc the whole set needs and the packages that set it."""
    versions = [tuple(map(int, r["glibc"].split("."))) for r in rows if r.get("glibc")]
    if not versions:
        return None, []
    top = max(versions)
    return ".".join(map(str, top)), [r["package"] for r in rows if r.get("glibc") and
                                     tuple(map(int, r["glibc"].split("."))) == top]
