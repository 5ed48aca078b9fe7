"""Run the benchmark: each file (and the Keras float model) in its own worker process, side by side."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError
from deeplab_edge.runtime.timing import LatencyStats

from .results import BenchReport, BenchRow, add_miou_drop
from .sysinfo import machine_info


@dataclass(frozen=True)
class BenchSettings:
    threads: int = 2
    warmup: int = 5
    min_runs: int = 30
    min_time_s: float = 3.0
    # auto: CPU rows plus GPU rows where a GPU (or a software Vulkan device) is present, else skipped with the
    # reason; cpu: CPU rows only; gpu: as auto, but a float file with no GPU path is a failed row
    device: str = "auto"
    timeout_s: float = 900.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Target:
    """One row to run: a model file (or a Keras checkpoint) on a backend and device."""

    name: str
    file: Path
    format: str  # keras, tflite, onnx
    backend: str  # keras, litert, onnxruntime
    device: str = "cpu"


def row_name(path: Path, manifest_format: str | None = None) -> str:
    """Stable row id: the manifest's format name (tflite_int8) or one derived from the file name."""
    if manifest_format:
        return manifest_format
    stem = path.stem
    kind = "tflite" if path.suffix == ".tflite" else "onnx"
    tail = stem.rsplit("_", 1)[-1] if "_" in stem else stem
    return f"{kind}_{tail}"


def targets_from(files: list[Path], keras: Path | None) -> list[Target]:
    """Expand manifest.json entries and plain files into targets; Keras first (the reference)."""
    out: list[Target] = []
    if keras is not None:
        if not Path(keras).exists():
            raise UserError(f"Keras checkpoint {keras} does not exist; pass --keras with the checkpoint the files "
                            "were exported from, or leave it out (the first float file is then the reference).")
        out.append(Target("keras_fp32", Path(keras), "keras", "keras"))
    for f in files:
        f = Path(f)
        if not f.exists():
            raise UserError(f"{f} does not exist; pass exported .tflite/.onnx files or an export manifest.json.")
        if f.name == "manifest.json" or f.suffix == ".json":
            try:
                for e in json.loads(f.read_text())["files"]:
                    path = f.parent / e["file"]
                    out.append(Target(row_name(path, e.get("format")), path, e["backend"],
                                      "litert" if e["backend"] == "tflite" else "onnxruntime"))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise UserError(f"{f} is not an export manifest (needs a 'files' list of entries with 'file' "
                                "and 'backend'); pass the manifest.json that `deeplab-edge export` wrote.") from None
        elif f.suffix in (".tflite", ".onnx"):
            kind = f.suffix[1:]
            out.append(Target(row_name(f), f, kind, "litert" if kind == "tflite" else "onnxruntime"))
        else:
            raise UserError(f"Cannot benchmark {f}: expected .tflite, .onnx or an export manifest.json.")
    if keras is None:  # the reference row comes first: prefer a float32 file
        out.sort(key=lambda t: not t.name.endswith("fp32"))
    return _distinct_names(out)


def _distinct_names(targets: list[Target]) -> list[Target]:
    """Rows of different models whose short names collide get longer ones: kind_stem, then folder/kind_stem."""
    from dataclasses import replace

    for longer in (lambda t: f"{t.format}_{t.file.stem}", lambda t: f"{t.file.parent.name}/{t.format}_{t.file.stem}"):
        names = [t.name for t in targets]
        targets = [replace(t, name=longer(t)) if names.count(t.name) > 1 and t.backend != "keras" else t
                   for t in targets]
    names = [t.name for t in targets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"The same file is listed twice ({', '.join(dupes)}); pass each file once.")
    return targets


BENCH_DEVICES = ("auto", "cpu", "gpu")
FLOAT_GPU = ("fp32", "fp16")  # the precisions a GPU row runs (int8 stays on the CPU/edge rows)


def gpu_targets(targets: list[Target], settings: BenchSettings) -> tuple[list[Target], list[BenchRow]]:
    """GPU rows beside the CPU ones: float .tflite files on LiteRT's GPU accelerator where a Vulkan device exists
    (a software one is marked emulated in its row), float .onnx files on onnxruntime's GPU providers, the Keras
    model where TensorFlow can see an NVIDIA GPU; the rest listed as skipped with the reason."""
    if settings.device not in BENCH_DEVICES:
        raise UserError(f"device must be one of {', '.join(BENCH_DEVICES)}; received {settings.device!r}.")
    if settings.device == "cpu":
        return [], []
    import onnxruntime as ort

    from deeplab_edge.runtime.backends import GPU_PROVIDERS
    from deeplab_edge.runtime.vulkan import find_vulkan

    vulkan = find_vulkan()
    ort_gpu = [p for p in ort.get_available_providers() if p in GPU_PROVIDERS]
    nvidia = Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())
    run, skipped = [], []
    for t in targets:
        name = f"{t.name}_gpu"
        if not t.name.endswith(FLOAT_GPU) and t.backend != "keras":
            continue
        if t.backend == "litert" and vulkan is not None:
            run.append(Target(name, t.file, t.format, t.backend, "gpu"))
        elif t.backend == "litert":
            skipped.append(BenchRow.skipped(name, t.format, t.backend, device="gpu", reason=(
                "no Vulkan device for LiteRT's GPU accelerator: install the GPU's Vulkan driver, or "
                "`deeplab-edge gpu --install-swiftshader` for the software device (emulated)")))
        elif t.backend == "onnxruntime" and t.name.endswith("fp32") and ort_gpu:
            run.append(Target(name, t.file, t.format, t.backend, "gpu"))
        elif t.backend == "onnxruntime" and t.name.endswith("fp32"):
            skipped.append(BenchRow.skipped(name, t.format, t.backend, device="gpu", reason=(
                f"no GPU execution provider in onnxruntime {ort.__version__} (CUDA/TensorRT need onnxruntime-gpu "
                "and an NVIDIA GPU: the [gpu] extra)")))
        elif t.backend == "keras" and nvidia:
            run.append(Target(name, t.file, t.format, t.backend, "gpu"))
        elif t.backend == "keras":
            skipped.append(BenchRow.skipped(name, t.format, t.backend, device="gpu",
                                            reason="no NVIDIA GPU for TensorFlow here"))
    if settings.device == "gpu":  # asked for: a missing GPU path is a failure, not a skip
        skipped = [replace(r, status="failed", reason=f"--device gpu: {r.reason}") for r in skipped]
    return run, skipped


def _run_worker(target: Target, spec: dict, tmp: Path, settings: BenchSettings, suffix: str = "latency") -> dict:
    stem = target.name.replace("/", "_")
    spec_path, out_path = tmp / f"{stem}.{suffix}.spec.json", tmp / f"{stem}.{suffix}.out.json"
    spec_path.write_text(json.dumps(spec))
    try:
        proc = subprocess.run([sys.executable, "-m", "deeplab_edge.benchmarks.worker", str(spec_path), str(out_path)],
                              capture_output=True, text=True, timeout=settings.timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {settings.timeout_s:.0f} s"}
    if not out_path.exists():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"status": "failed", "reason": f"worker died (exit {proc.returncode}): {tail[0][:200]}"}
    try:
        return json.loads(out_path.read_text())
    except ValueError:
        return {"status": "failed", "reason": f"worker wrote an unreadable result (exit {proc.returncode})"}


@dataclass(frozen=True)
class EvalSet:
    """Validation images (RGB uint8, all one size) with their masks, for the rows that can be scored."""

    images: np.ndarray
    masks: np.ndarray
    num_classes: int
    note: str = ""
    class_names: tuple[str, ...] = ()


def run_bench(targets: list[Target], eval_set: EvalSet | None, photo: np.ndarray, settings: BenchSettings, *,
              progress=print, flags: dict | None = None, latency_only: dict[str, str] | None = None,
              keras_norm: tuple | None = None, row_flags: dict[str, dict] | None = None,
              keras_load: dict | None = None) -> BenchReport:
    """Benchmark every target, each in its own worker process.

    Rows named in `latency_only` (name -> reason), or all rows when `eval_set` is None, are timed but not
    scored. The first scored target is the reference for agreement and mIoU drop. `flags` are
    `load_predictor` keywords for files that do not describe themselves (--mean, --std, ...);
    `row_flags` (name -> keywords) override them for one row. `keras_load`: `foreign.LoadOptions` fields for
    the Keras row (a Keras 3 model or a SavedModel).
    """
    if not targets:
        raise UserError("Nothing to benchmark: pass .tflite/.onnx files, a manifest.json, or --keras.")
    latency_only = dict(latency_only or {})
    if eval_set is None:
        latency_only = {t.name: latency_only.get(t.name, "no evaluation set") for t in targets}
    gpu_run, rows = gpu_targets(targets, settings)
    all_targets = targets + gpu_run
    rows_by_name: dict[str, BenchRow] = {}
    scored = [t.name for t in targets if t.name not in latency_only]
    ref_name = scored[0] if scored else None
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-bench-") as tmpdir:
        tmp = Path(tmpdir)
        npz, photo_npy, ref_labels = tmp / "eval.npz", tmp / "photo.npy", tmp / "ref_labels.npy"
        np.save(photo_npy, photo)
        if eval_set is not None:
            np.savez(npz, images=eval_set.images, masks=eval_set.masks)
        for i, t in enumerate(all_targets):
            base = t.name.removesuffix("_gpu") if t.device == "gpu" else t.name
            evaluate = base not in latency_only
            progress(f"[{i + 1}/{len(all_targets)}] {t.name} ({t.backend}, {t.device}, {settings.threads} threads)")
            spec = {"file": str(t.file), "backend": t.backend, "device": t.device, "threads": settings.threads,
                    "photo_npy": str(photo_npy), "warmup": settings.warmup, "min_runs": settings.min_runs,
                    "min_time_s": settings.min_time_s, "flags": {**(flags or {}), **(row_flags or {}).get(base, {}),
                                                 **({"gpu_precision": "fp16"} if t.device == "gpu" and base.endswith("fp16")
                                                    else {})},
                    "keras_norm": keras_norm, "load": keras_load or {}}
            # Two processes per row: one only loads and times the model (its peak memory is the runtime's,
            # whatever the eval-set size), one labels the evaluation set.
            res = _run_worker(t, {**spec, "mode": "latency"}, tmp, settings)
            if res["status"] == "ok" and evaluate:
                scored = _run_worker(t, {**spec, "mode": "eval", "eval_npz": str(npz),
                                         "num_classes": eval_set.num_classes,
                                         "ref_labels": str(ref_labels) if ref_labels.exists() else None,
                                         "labels_out": str(ref_labels) if t.name == ref_name else None},
                                     tmp, settings, suffix="eval")
                res = scored if scored["status"] != "ok" else {**res, **scored, "notes": res["notes"]}
            size_mb = (t.file.stat().st_size / 2**20) if t.file.is_file() else None
            # LiteRT's GPU accelerator takes no CPU thread count: its rows say none rather than the bench's
            threads = None if (t.device, t.backend) == ("gpu", "litert") else settings.threads
            common = dict(name=t.name, format=t.format, backend=t.backend, device=t.device, threads=threads,
                          file=str(t.file), size_mb=size_mb)
            if res["status"] != "ok":
                rows_by_name[t.name] = BenchRow.failed(reason=res["reason"], **common)
                progress(f"      failed: {res['reason']}")
                continue
            notes = list(res.get("notes") or [])
            if not evaluate:
                notes.insert(0, f"latency only, mIoU not measured: {latency_only[base]}")
            rows_by_name[t.name] = BenchRow(latency=LatencyStats.from_dict(res["latency"]), pre_ms=res["pre_ms"],
                                            gpu=res.get("gpu"),
                                            post_ms=res["post_ms"], peak_rss_mb=res["peak_rss_mb"],
                                            base_rss_mb=res.get("base_rss_mb"), load_ms=res.get("load_ms"),
                                            first_ms=res.get("first_ms"), miou=res.get("miou"),
                                            pixel_acc=res.get("pixel_acc"),
                                            agreement=1.0 if t.name == ref_name else res.get("agreement"),
                                            note="; ".join(notes), provider=res.get("provider", ""),
                                            per_class_iou=res.get("per_class_iou"), **common)
            r = rows_by_name[t.name]
            miou = f"mIoU {100 * r.miou:.1f}%" if r.miou is not None else "latency only"
            progress(f"      p50 {r.latency.p50_ms:.2f} ms, {miou}")
    ordered = [rows_by_name[t.name] for t in all_targets if t.name in rows_by_name] + rows
    if ref_name and rows_by_name.get(ref_name) and rows_by_name[ref_name].ok:
        ordered = add_miou_drop(ordered, ref_name)
    machine = machine_info()
    size = list(eval_set.images.shape[1:3]) if eval_set is not None else None
    bench_settings = {**settings.to_dict(), "eval_images": int(len(eval_set.images)) if eval_set is not None else 0,
                      "input_size": size, "reference": ref_name,
                      "class_names": list(eval_set.class_names) if eval_set is not None else [], "eval": eval_set.note if eval_set is not None else
                      "none (latency only)",
                      "latency": "batch 1, inference only (interpreter invoke / session run), monotonic clock",
                      "pre_post": "one real photo at its own size: resize (+normalise, quantise unless the file "
                                  "takes pixels), labels from the raw output + one resize back",
                      "photo_size": list(photo.shape[:2])}
    return BenchReport(rows=tuple(ordered), machine=machine, settings=bench_settings)


def load_eval(ds, size: tuple[int, int], count: int):
    """Validation images of `ds` as RGB uint8 at `size`, their masks, and one real photo for pre/post timing."""
    from deeplab_edge.model.data import load_arrays, read_image

    if not ds.val:
        raise UserError(f"{ds.root} has no validation images to evaluate on.")
    images, masks = load_arrays(ds.val[:count], size, ds.num_classes)
    photos = sorted((ds.root / "photos").glob("*.jpg")) if (ds.root / "photos").is_dir() else []
    photo = read_image(photos[0] if photos else ds.val[0].image)
    return images, masks, photo


def synthetic_photo(h: int = 480, w: int = 640):
    """A deterministic 480x640 RGB image (smooth gradients plus noise) for pre/post timing without data."""
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], axis=-1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
