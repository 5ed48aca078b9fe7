"""The main job (`deeplab-edge demo`): train -> export every format -> verify -> benchmark -> predict ->
report, each step printed with its time. Every step calls the library function that the matching command
calls (`train`, `export_checkpoint`, `bench_files` + `write_outputs`, `predict_paths`); the CLI only parses
arguments into `DemoOptions`."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deeplab_edge.logs import is_quiet


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("report")
    preset: str = "edge"
    data: str | None = None  # None: the built-in demo set
    # A shorter, hotter schedule than `train`'s (10 epochs at 2e-3): the demo is one time-boxed job
    # (about 10 minutes on 2 cores) and reaches the same mIoU band in 6 epochs at a higher peak rate.
    epochs: int = 6
    batch_size: int = 16
    lr: float = 3e-3
    max_train_images: int | None = None
    input_size: tuple[int, int] | None = None
    threads: int | None = None  # None: the CPUs this process may use, as in predict and bench
    eval_images: int = 100
    calibration_count: int | None = None  # None: min(200, training images)
    bench_min_time: float = 3.0
    force: bool = False


def export_models(checkpoint: str | Path, dataset, models_dir: str | Path, *, name: str,
                  calibration_count: int | None, eval_images: int, progress=print):
    """Step 3: every default format of `checkpoint` into `models_dir` (replacing what is there), each verified
    against Keras on `eval_images` held-out images of `dataset` (a `FolderDataset`, or its folder); int8
    calibrated on `calibration_count` training images (None: min(200, training images)). `deeplab-edge
    export CHECKPOINT --data DIR --force` from Python; returns its `ExportReport`."""
    from deeplab_edge.export import export_checkpoint

    return export_checkpoint(checkpoint, models_dir, data=getattr(dataset, "root", dataset), name=name,
                             eval_images=eval_images, force=True, progress=progress,
                             calibration_count=calibration_count)


def bench_models(export, checkpoint: str | Path, dataset, bench_dir: str | Path, *, threads: int,
                 min_time_s: float, eval_images: int, progress=print):
    """Step 4: every file of `export` (an `ExportReport`) beside the Keras model `checkpoint`, scored on
    `eval_images` validation images of `dataset` (a `FolderDataset`, or its folder); bench.json, bench.md and
    the plots written to `bench_dir`. `deeplab-edge bench MANIFEST --keras CHECKPOINT --data DIR` from
    Python; returns its `BenchReport`."""
    from deeplab_edge.benchmarks import BenchSettings, bench_files, write_outputs

    report = bench_files([export.manifest], keras=checkpoint, data=getattr(dataset, "root", dataset),
                         eval_images=eval_images, settings=BenchSettings(threads=threads, min_time_s=min_time_s),
                         progress=progress)
    write_outputs(report, bench_dir)
    return report


def _step(n: int, total: int, text: str) -> float:
    print(f"\n=== [{n}/{total}] {text}", flush=True)
    return time.perf_counter()


def _checked(args: DemoOptions):
    """(preset, train settings, options with threads filled in), or the first thing the options get wrong."""
    from dataclasses import replace

    from deeplab_edge.errors import UserError
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.model.train import TrainSettings

    preset = get_preset(args.preset)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                             max_train_images=args.max_train_images,
                             verbose=1 if sys.stdout.isatty() and not is_quiet() else 2)
    for flag, name in (("threads", "`num_threads`"), ("eval_images", "`eval_images`"),
                       ("calibration_count", "`calibration_count`")):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"{name} must be at least 1; received {getattr(args, flag)}.")
    if not args.bench_min_time > 0:
        raise UserError(f"`min_time` must be positive (seconds); received {args.bench_min_time}.")
    if args.threads is None:
        from deeplab_edge.runtime.backends import default_threads

        args = replace(args, threads=default_threads())
    if args.input_size:
        preset.config.replace(input_size=tuple(args.input_size))
    return preset, settings, args


def run_demo(args: DemoOptions) -> int:
    """Run the main job; every option is checked before the dataset is built or anything trained."""
    import shutil

    from deeplab_edge.errors import UserError

    preset, settings, args = _checked(args)
    out = Path(args.out)
    run_dir, models_dir, bench_dir, pred_dir = out / "run", out / "models", out / "bench", out / "predictions"
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise UserError(f"{out} already holds a report; pass `force` to replace it, or choose another `out_dir`.")
        for d in (run_dir, models_dir, bench_dir, pred_dir):
            shutil.rmtree(d, ignore_errors=True)
    timings: dict[str, float] = {}
    total = 6

    t = _step(1, total, "built-in demo dataset (made once, then cached)" if not args.data else f"dataset {args.data}")
    from deeplab_edge.model.data import open_dataset

    ds = open_dataset(args.data)
    print(f"{ds.root}: {len(ds.train)} train / {len(ds.val)} val, {ds.num_classes} classes", flush=True)
    timings["data"] = time.perf_counter() - t

    t = _step(2, total, f"train preset {args.preset!r} for {args.epochs} epoch(s)")
    from deeplab_edge.model._keras import KERAS_IMPL
    from deeplab_edge.model.train import train

    config = preset.config.replace(
        num_classes=ds.num_classes, input_size=tuple(args.input_size) if args.input_size else None)
    print(f"keras: {KERAS_IMPL}", flush=True)
    result = train(config, ds, run_dir, settings, preset=args.preset)
    print(f"best validation mIoU {100 * result.best_val_miou:.1f}% ({result.images_per_second:.1f} img/s)")
    timings["train"] = time.perf_counter() - t

    t = _step(3, total, "export every format, each verified against Keras")
    export = export_models(result.best_checkpoint, ds, models_dir, name=args.preset,
                           calibration_count=args.calibration_count, eval_images=args.eval_images,
                           progress=lambda m: print(f"[export] {m}", flush=True))
    print(export.table())
    timings["export"] = time.perf_counter() - t

    t = _step(4, total, f"benchmark every file beside the Keras model ({args.threads} threads)")
    from deeplab_edge.benchmarks.report import to_terminal

    bench = bench_models(export, result.best_checkpoint, ds, bench_dir, threads=args.threads,
                         min_time_s=args.bench_min_time, eval_images=args.eval_images,
                         progress=lambda m: print(f"[bench] {m}", flush=True))
    print(to_terminal(bench))
    timings["bench"] = time.perf_counter() - t

    t = _step(5, total, "predict on the bundled real photos with the int8 TFLite file (TF-free runtime)")
    from deeplab_edge.runtime import predict_paths

    photos = ds.root / "photos"
    int8 = next((f.path for f in export.files if f.format == "tflite_int8"), export.files[0].path)
    summary = predict_paths(int8, [photos if photos.is_dir() else ds.val[0].image], pred_dir, num_threads=args.threads)
    print(summary.to_text())
    timings["predict"] = time.perf_counter() - t

    t = _step(6, total, "write the report")
    from .report import write_job_report

    paths = write_job_report(out, train=result, export=export, bench=bench, predict=summary, timings=timings,
                             preset=args.preset, config=config, dataset=ds)
    print(f"report: {paths[0]}\n        {paths[1]}")
    failed = [f.format for f in export.files if not f.passed]
    if failed:
        print(f"note: verification failed for {', '.join(failed)} (see the report); the demo goes on.")
    return 0
