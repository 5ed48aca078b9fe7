"""`deeplab-edge bench`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_data_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help=".tflite / .onnx files, or an export manifest.json")
    p.add_argument("--keras", metavar="CHECKPOINT", help="the Keras float model as the baseline row "
                   "(default: the checkpoint named in the manifest, if any)")
    add_data_arg(p, required_hint=" (its validation split is the evaluation set)")
    p.add_argument("--eval-images", type=int, default=100, help="validation images for mIoU (default 100)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every row (default 2)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--min-runs", type=int, default=30)
    p.add_argument("--min-time", type=float, default=3.0, help="minimum seconds of timed runs per row")
    p.add_argument("--gpu", choices=("auto", "off"), default="auto",
                   help="auto: GPU rows where onnxruntime has CUDA, listed as skipped otherwise")
    p.add_argument("--out", default="bench", help="folder for bench.json, bench.md and plots (default bench/)")
    p.add_argument("--budget", metavar="FILE", help="JSON limits; exit 1 naming each broken limit")


def load_eval(data: str | None, size: tuple[int, int], count: int, mean, std):
    """Validation images (normalised as the files say), masks, and one real photo for pre/post timing."""
    import numpy as np

    from deeplab_edge.errors import UserError
    from deeplab_edge.model.data import load_arrays, read_image

    from ._common import open_dataset

    ds = open_dataset(data)
    if not ds.val:
        raise UserError(f"{ds.root} has no validation images to evaluate on.")
    images, masks = load_arrays(ds.val[:count], size, ds.num_classes)
    norm = (images.astype(np.float32) - np.float32(mean)) / np.float32(std)
    photos = sorted((ds.root / "photos").glob("*.jpg")) if (ds.root / "photos").is_dir() else []
    photo = read_image(photos[0] if photos else ds.val[0].image)
    return norm, masks, photo, ds


def run(args: argparse.Namespace) -> int:
    import json

    from deeplab_edge.benchmarks.bench import BenchSettings, run_bench, targets_from
    from deeplab_edge.benchmarks.budget import check_budget, format_violations, load_budget
    from deeplab_edge.benchmarks.plots import plot_latency_bars, plot_latency_vs_miou
    from deeplab_edge.benchmarks.report import to_terminal, write_markdown
    from deeplab_edge.errors import UserError
    from deeplab_edge.runtime.predictor import load_predictor

    budget = load_budget(args.budget) if args.budget else None  # refuse a bad budget before any work
    if args.threads <= 0 or args.eval_images <= 0:
        raise UserError("--threads and --eval-images must be positive.")
    files = [Path(f) for f in args.files]
    keras = args.keras
    targets = targets_from(files, None)  # validates every file and manifest first
    if keras is None:
        for f in files:
            if f.name == "manifest.json":
                named = (json.loads(f.read_text()).get("model") or {}).get("checkpoint")
                if named and Path(named).is_file():
                    keras = named
                elif named:
                    print(f"note: the checkpoint named in {f} ({named}) is gone; the first float file is the "
                          "reference row")
    if keras is not None:
        targets = targets_from(files, Path(keras))
    first = next((t for t in targets if t.backend != "keras"), None)
    if first is None:
        raise UserError("Pass at least one exported .tflite/.onnx file (or a manifest.json) to benchmark.")
    meta = load_predictor(first.file).meta
    images, masks, photo, ds = load_eval(args.data, meta.input_size, args.eval_images, meta.mean, meta.std)
    settings = BenchSettings(threads=args.threads, warmup=args.warmup, min_runs=args.min_runs,
                             min_time_s=args.min_time, gpu=args.gpu)
    report = run_bench(targets, images, masks, photo, len(meta.class_names), settings,
                       progress=lambda m: print(f"[bench] {m}", flush=True),
                       eval_note=f"{len(images)} validation images of {ds.root}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "bench.json")
    write_markdown(report, out / "bench.md")
    plot_latency_vs_miou(report, out / "latency_vs_miou.png")
    plot_latency_bars(report, out / "latency.png")
    print()
    print(to_terminal(report))
    print(f"\nwrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'latency_vs_miou.png'}, {out / 'latency.png'}")
    if budget is not None:
        violations = check_budget(report, budget)
        print(format_violations(violations))
        return 1 if violations else 0
    return 0
