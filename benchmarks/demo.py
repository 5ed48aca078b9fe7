"""The main job (`deeplab-edge demo`): train -> export every format -> verify -> benchmark -> predict ->
report, each step printed with its time. The CLI only parses arguments into `DemoOptions`."""

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


def _step(n: int, total: int, text: str) -> float:
    print(f"\n=== [{n}/{total}] {text}", flush=True)
    return time.perf_counter()


def run_demo(args: DemoOptions) -> int:
    """Run the main job; every option is checked before the dataset is built or anything trained."""
    import shutil

    from deeplab_edge.errors import UserError
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.model.train import TrainSettings

    # Everything the options can get wrong is refused before the dataset is built or anything trained.
    preset = get_preset(args.preset)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                             max_train_images=args.max_train_images,
                             verbose=1 if sys.stdout.isatty() and not is_quiet() else 2)
    for flag, name in (("threads", "--threads"), ("eval_images", "--eval-images"),
                       ("calibration_count", "--calibration-images")):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"{name} must be at least 1; received {getattr(args, flag)}.")
    if not args.bench_min_time > 0:
        raise UserError(f"--min-time must be positive (seconds); received {args.bench_min_time}.")
    if args.threads is None:
        from dataclasses import replace

        from deeplab_edge.runtime.backends import default_threads

        args = replace(args, threads=default_threads())
    if args.input_size:
        preset.config.replace(input_size=tuple(args.input_size))
    out = Path(args.out)
    run_dir, models_dir, bench_dir, pred_dir = out / "run", out / "models", out / "bench", out / "predictions"
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise UserError(f"{out} already holds a report; pass --force to replace it, or choose another --out.")
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
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(result.best_checkpoint)
    from deeplab_edge.export.formats import resolve_formats

    calibration, vx, vy = calibration_and_verification(ds, config.input_size, resolve_formats(None),
                                                       args.calibration_count, args.eval_images, info.mean, info.std)
    export = export_all(model, info, models_dir, name=args.preset, calibration=calibration, verify_images=vx,
                        verify_masks=vy, force=True, progress=lambda m: print(f"[export] {m}", flush=True),
                        checkpoint=result.best_checkpoint)
    print(export.table())
    timings["export"] = time.perf_counter() - t

    t = _step(4, total, f"benchmark every file beside the Keras model ({args.threads} threads)")
    from .bench import BenchSettings, EvalSet, load_eval, run_bench, targets_from
    from .plots import plot_latency_bars, plot_latency_vs_miou
    from .report import to_terminal, write_markdown

    targets = targets_from([export.manifest], result.best_checkpoint)
    images, masks, photo = load_eval(ds, config.input_size, args.eval_images)
    eval_set = EvalSet(images, masks, ds.num_classes, f"{len(images)} validation images of {ds.root}",
                       tuple(ds.class_names))
    bench = run_bench(targets, eval_set, photo, BenchSettings(threads=args.threads, min_time_s=args.bench_min_time),
                      progress=lambda m: print(f"[bench] {m}", flush=True))
    bench_dir.mkdir(parents=True, exist_ok=True)
    bench.write_json(bench_dir / "bench.json")
    write_markdown(bench, bench_dir / "bench.md")
    plot_latency_vs_miou(bench, bench_dir / "latency_vs_miou.png")
    plot_latency_bars(bench, bench_dir / "latency.png")
    print(to_terminal(bench))
    timings["bench"] = time.perf_counter() - t

    t = _step(5, total, "predict on the bundled real photos with the int8 TFLite file (TF-free runtime)")
    from deeplab_edge.runtime.predict import predict_paths

    photos = ds.root / "photos"
    int8 = next((f.path for f in export.files if f.format == "tflite_int8"), export.files[0].path)
    summary = predict_paths(int8, [photos if photos.is_dir() else ds.val[0].image], pred_dir, num_threads=args.threads)
    print(summary.to_text())
    timings["predict"] = time.perf_counter() - t

    t = _step(6, total, "write the report")
    from .job_report import write_job_report

    paths = write_job_report(out, train=result, export=export, bench=bench, predict=summary, timings=timings,
                             preset=args.preset, config=config, dataset=ds)
    print(f"report: {paths[0]}\n        {paths[1]}")
    failed = [f.format for f in export.files if not f.passed]
    if failed:
        print(f"note: verification failed for {', '.join(failed)} (see the report); the demo goes on.")
    return 0
