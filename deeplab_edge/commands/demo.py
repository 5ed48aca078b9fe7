"""`deeplab-edge demo`: the main job. Train -> export every format -> verify -> benchmark -> predict -> report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="report", help="report folder (default report/)")
    p.add_argument("--preset", default="edge", help="model preset (default edge)")
    p.add_argument("--data", metavar="DIR", help="your dataset folder instead of the built-in demo set")
    p.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-train-images", type=int, help="use only the first N training images")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="override the preset's input size")
    p.add_argument("--threads", type=int, default=2, help="threads for benchmark rows (default 2)")
    p.add_argument("--eval-images", type=int, default=100, help="validation images for verification and bench")
    p.add_argument("--calibration-count", type=int, default=None,
                   help="int8 calibration images (default 200, or all training images when fewer)")
    p.add_argument("--bench-min-time", type=float, default=3.0, help="minimum timed seconds per bench row")
    p.add_argument("--force", action="store_true", help="replace an existing report folder's run")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.benchmarks.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(
        out=Path(args.out), preset=args.preset, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, max_train_images=args.max_train_images,
        input_size=tuple(args.input_size) if args.input_size else None, threads=args.threads,
        eval_images=args.eval_images, calibration_count=args.calibration_count,
        bench_min_time=args.bench_min_time, force=args.force))
