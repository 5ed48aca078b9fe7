"""`deeplab-edge data`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.model.demo_data import demo_dataset

    root = demo_dataset(n_train=args.train, n_val=args.val, size=args.size, seed=args.seed)
    ds = scan_folder(root)
    print(f"{root}\n{len(ds.train)} train / {len(ds.val)} val images, {ds.num_classes} classes: "
          f"{', '.join(ds.class_names)}\nreal photos for predict: {root / 'photos'}")
    return 0
