"""The checks: `deeplab-edge predict` on the x86 host (the reference) and under each emulated CPU with
every file of an export folder, masks compared pixel by pixel; `deeplab-edge bench` on one file under
emulation; and `arm_labels`, the label maps of the Arm kernels for `export --verify-on-target`."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..results import load_report
from ..sysinfo import cpu_model
from ._common import REPO, CheckError, cache_root, deeplab_cache, log, tail
from .cpus import SHOWN_FEATURES, VERIFY_CPU, asserted
from .env import AArch64Env, CacheLock, prepare
from .sysroot import PY_VERSION, qemu_version
from .wheels import MANYLINUX, needs_glibc, wheel_rows

__all__ = ["arm_labels", "compare", "default_photos", "run_check"]


def _read_mask(path: Path) -> np.ndarray:
    """A `<stem>_mask.png` as class indices, through the project's one mask reader."""
    from deeplab_edge.model.data import read_mask

    return read_mask(path)


def _predict(python: list[str], env: dict, model: Path, photos: list[Path], out: Path, threads: int,
             timeout: float) -> dict:
    """One `deeplab-edge predict --no-overlay` call writing masks into `out`: ok, exit code, error, wall s."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [*python, "-m", "deeplab_edge", "predict", str(model), *map(str, photos), "--out", str(out),
           "--no-overlay", "--threads", str(threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        rc, err = proc.returncode, tail(proc.stderr or proc.stdout, 2)
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
    with CacheLock(cache):
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
            out[Path(m)] = np.stack([_read_mask(dest / f"{p.stem}_mask.png") for p in photos])
    return out


def compare(ref_dir: Path, got_dir: Path, photos: list[Path]) -> dict:
    """Pixel agreement of got_dir's masks with ref_dir's, per photo, min and pixel-weighted."""
    per, equal, total = {}, 0, 0
    for p in photos:
        ref, got = ref_dir / f"{p.stem}_mask.png", got_dir / f"{p.stem}_mask.png"
        if not got.is_file() or not ref.is_file():
            per[p.name] = None
            continue
        a, b = _read_mask(ref), _read_mask(got)
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
    """The agreement a file needs: 99% of the pixels for int8, all of them for float files."""
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
              "last_line": tail(text), "rows": []}
    if (out / "bench.json").is_file():
        report = load_report(out / "bench.json")
        result["machine"] = {k: report.machine.get(k) for k in ("cpu_model", "isa_summary", "int8_isa", "machine")}
        result["rows"] = [{"name": row.name, "status": row.status, "reason": row.reason,
                           "median_ms": row.latency.p50_ms if row.latency else None,
                           "runs": row.latency.runs if row.latency else None, "miou": row.miou,
                           "provider": row.provider} for row in report.rows]
    result["ok"] = any(r["status"] == "ok" for r in result["rows"])
    return result


def default_photos() -> Path | None:
    """photos/ of the built-in demo dataset in the deeplab-edge cache (the newest version), if made."""
    found = sorted(p for p in deeplab_cache().glob("demo-v*/photos") if p.is_dir())
    return found[-1] if found else None


def _entries(models: Path, formats: list[str] | None) -> tuple[dict, list[dict]]:
    """The manifest of `models` and its files to check; CheckError when absent or missing."""
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
    return manifest, entries


def _check_file(env: AArch64Env, cpu: str, e: dict, models: Path, photos: list[Path], work: Path, threads: int,
                timeout: float, shown: list[str]) -> tuple[dict, str]:
    """One file's row under `cpu` (its masks against the x86 ones, the threshold, whether it passed) and
    the line naming it among the failures."""
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
    log(f"{cpu} {e['format']:15s} {agree} ({r['wall_s']:.1f} s emulated)")
    return row, f"{cpu} {e['format']}: {agree} (needs {100 * need:.0f}%)"


def _bench_cpu(env: AArch64Env, cpu: str, models: Path, file: str, work: Path, timeout: float) -> list[dict]:
    """bench under `cpu` with an empty deeplab-edge cache, and with this host's if it holds the demo set."""
    caches = [work / "guest-cache"]  # a fresh board: no deeplab-edge cache
    if any(deeplab_cache().glob("demo-v*/dataset.json")):
        caches.append(None)  # and with this host's cache (the built-in demo set made)
    runs = []
    for i, c in enumerate(caches):
        b = _bench(env, cpu, Path(models) / file, work / cpu / f"bench{i}", timeout, c)
        runs.append(b)
        rows = ", ".join(f"{r['name']} {r['status']}" + (f" {r['median_ms']:.1f} ms emulated"
                                                          if r.get("median_ms") else "")
                         for r in b["rows"])
        log(f"{cpu} bench {file} (cache: {b['cache']}): exit {b['rc']}; {rows or 'no rows'}; {b['last_line']}")
    return runs


def _install(env: AArch64Env) -> dict:
    """The core install's wheels, sizes and glibc need, aarch64 beside x86_64."""
    a64, x86 = wheel_rows(env.wheels_aarch64 + [env.project_wheel]), wheel_rows(env.wheels_x86_64 +
                                                                                 [env.project_wheel])
    glibc, glibc_by = needs_glibc(a64)
    return {"aarch64": a64, "x86_64": x86,
            "aarch64_mb": round(sum(r["mb"] for r in a64), 1),
            "x86_64_mb": round(sum(r["mb"] for r in x86), 1) if env.wheels_x86_64 else None,
            "aarch64_unpacked_mb": round(sum(r["unpacked_mb"] for r in a64), 1),
            "x86_64_unpacked_mb": round(sum(r["unpacked_mb"] for r in x86), 1) if env.wheels_x86_64 else None,
            "platforms": list(MANYLINUX), "python": PY_VERSION,
            "aarch64_needs_glibc": glibc, "aarch64_glibc_set_by": glibc_by}


def run_check(models: Path, photos: list[Path], cpus: list[str], *, formats: list[str] | None = None,
              bench_file: str | None = None, bench: bool = True, threads: int = 2, timeout: float = 900,
              env: AArch64Env | None = None, cache: Path | None = None, source: Path = REPO,
              sizes: bool = True, notes: list[str] | None = None) -> dict:
    """Run the whole check and return its results (JSON-ready). Raises SetupError or CheckError."""
    manifest, entries = _entries(models, formats)
    if not photos:
        raise CheckError("no photos: pass --photos with a folder of .jpg/.png images.")
    cache = Path(cache) if cache else cache_root()
    with CacheLock(cache):
        env = env or prepare(source=source, cache=cache, sizes=sizes)
        work = cache / "work"
        started = _dt.datetime.now(_dt.timezone.utc)
        x86_env = {**os.environ, "PYTHONPATH": str(env.project_site), "PYTHONNOUSERSITE": "1"}
        x86_env.pop("PYTHONHOME", None)
        results, failures, benches = [], [], {}
        log(f"x86 reference masks ({len(entries)} files x {len(photos)} photos)")
        for e in entries:
            r = _predict([sys.executable], x86_env, Path(models) / e["file"], photos, work / "x86" / e["format"],
                         threads, timeout)
            if not r["ok"]:
                raise CheckError(f"the x86 reference predict failed for {e['file']}: {r['error']}")
        bench_entry = next((e for e in entries if e["file"] == bench_file or e["format"] == bench_file), None) \
            if bench_file else next((e for e in entries if e["format"] == "tflite_int8"), entries[0])
        if bench_file and bench_entry is None:
            raise CheckError(f"--bench-file {bench_file} is not among the checked files.")
        for cpu in cpus:
            probe = env.select_cpu(cpu)
            shown = [f for f in SHOWN_FEATURES if f in probe["features"]]
            log(f"{cpu}: features {' '.join(probe['features'])}")
            for e in entries:
                row, summary = _check_file(env, cpu, e, models, photos, work, threads, timeout, shown)
                if row["asserted"] and not row["passed"]:
                    failures.append(summary)
                results.append(row)
            if bench:
                benches[cpu] = _bench_cpu(env, cpu, models, bench_entry["file"], work, timeout)
        install = _install(env)
        # The Arm CPUs among themselves: each CPU's masks against the first asserted CPU's.
        first = next((c for c in cpus if asserted(c)), cpus[0])
        for row in results:
            if row["cpu"] != first and not row.get("error"):
                row["vs_" + first] = compare(work / first / row["format"], work / row["cpu"] / row["format"],
                                             photos)["min"]
        model = manifest.get("model") or {}
        return {
            "date": started.date().isoformat(),
            "started": started.isoformat(timespec="seconds"),
            "host": {"cpu_model": cpu_model(), "machine": platform.machine(), "os": platform.platform(),
                     "python": platform.python_version()},
            "qemu": qemu_version(env.qemu),
            "guest": {cpu: {k: p.get(k) for k in ("machine", "python", "libc", "midr", "cpuinfo_part", "features",
                                                  "sysinfo")}
                      for cpu, p in env.probes.items()},
            "models": str(models), "photos": [str(p) for p in photos],
            "photo_sizes": {p.name: list(Image.open(p).size) for p in photos},
            "model": {"preset": model.get("preset"), "input_size": model.get("input_size"),
                      "num_classes": len(model.get("class_names") or []) or None},
            "threads": threads,
            "cpus": cpus, "not_asserted": [c for c in cpus if not asserted(c)],
            "results": results, "bench": benches, "bench_file": bench_entry["file"] if bench else None,
            "install": install,
            "arm_reference_cpu": first,
            "notes": list(notes or []),
            "failures": failures,
            "passed": not failures,
        }
