"""`deeplab-edge data`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._common import renamed

    p.add_argument("action", nargs="?", choices=("check",), help="check DIR: read every image/mask pair of your "
                   "dataset and list every problem (exit 1 if any), with the class balance; runs on the core install")
    p.add_argument("folder", nargs="?", metavar="DIR", help="the dataset folder to check")
    tr = p.add_argument("--train-images", dest="train", type=int, default=2000, metavar="N",
                        help="training images of the built-in set")
    renamed(p, "--train", tr)
    va = p.add_argument("--val-images", dest="val", type=int, default=200, metavar="N",
                        help="validation images of the built-in set")
    renamed(p, "--val", va)
    sz = p.add_argument("--image-size", dest="size", type=int, default=256, metavar="N",
                        help="side in pixels of the built-in set's square images (a dataset's image size, not a "
                             "model's --input-size)")
    renamed(p, "--size", sz)
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in set's composition")


def needs_extra(args: argparse.Namespace) -> bool:
    """`data check` reads a dataset with numpy and Pillow alone; building the demo set needs the train extra."""
    return args.action != "check"


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.errors import UserError
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.model.data_check import check_dataset

    if args.action == "check":
        if not args.folder:
            raise UserError("`deeplab-edge data check` needs the dataset folder: deeplab-edge data check DIR.")
        ds = scan_folder(args.folder)
        report = check_dataset(ds, progress=True)
        print(report.summary(ds.class_names))
        return 1 if report.problems else 0
    if args.folder:
        raise UserError(f"Unexpected argument {args.folder!r}; did you mean `deeplab-edge data check {args.folder}`?")
    from deeplab_edge.model.demo_data import demo_dataset

    root = demo_dataset(n_train=args.train, n_val=args.val, size=args.size, seed=args.seed)
    ds = scan_folder(root)
    print(f"{root}\n{len(ds.train)} train / {len(ds.val)} val images, {ds.num_classes} classes: "
          f"{', '.join(ds.class_names)}\nreal photos for predict: {root / 'photos'}")
    return 0
