"""`deeplab-edge demo`: the main job. Train -> export every format -> verify -> benchmark -> predict -> report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deeplab_edge.job import DemoOptions

    from ._common import add_out_arg, renamed

    d = DemoOptions()
    add_out_arg(p, str(d.out), "report folder")
    p.add_argument("--preset", default=d.preset, help="model preset (see `deeplab-edge presets`)")
    p.add_argument("--data", metavar="DIR", help="your dataset folder (default: the built-in demo set)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default: {d.epochs}; train's is "
                   "10: the demo is one time-boxed job, so a shorter schedule at a higher --lr)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size, as train")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default: {d.lr:g}; train's is 2e-3, "
                   "for its 10 epochs)")
    ti = p.add_argument("--train-images", dest="max_train_images", type=int, metavar="N",
                        help="use only the first N training images (default: all)")
    renamed(p, "--max-train-images", ti)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="override the preset's input size (default: the preset's)")
    p.add_argument("--threads", type=int, default=None, help="threads for verification, benchmark rows and predict "
                   "(default: the CPUs this process may use, as in predict and bench)")
    p.add_argument("--eval-images", type=int, default=d.eval_images,
                   help="validation images for verification and bench")
    cal = p.add_argument("--calibration-images", dest="calibration_count", type=int, default=None, metavar="N",
                         help="int8 calibration images (default 200, or all training images when fewer)")
    renamed(p, "--calibration-count", cal)
    mt = p.add_argument("--min-time", dest="bench_min_time", type=float, default=d.bench_min_time, metavar="S",
                        help="minimum timed seconds per bench row")
    renamed(p, "--bench-min-time", mt)
    p.add_argument("--force", action="store_true", help="replace an existing report folder's run (default: refuse)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.job import DemoOptions, run_demo

    return run_demo(DemoOptions(
        out=Path(args.out), preset=args.preset, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, max_train_images=args.max_train_images,
        input_size=tuple(args.input_size) if args.input_size else None, threads=args.threads,
        eval_images=args.eval_images, calibration_count=args.calibration_count,
        bench_min_time=args.bench_min_time, force=args.force))
