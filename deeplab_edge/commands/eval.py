"""`deeplab-edge eval`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_data_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .keras checkpoint (e.g. runs/edge/best.keras)")
    add_data_arg(p)
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON to FILE")
    p.add_argument("--resolution", choices=("original", "model"), default="original",
                   help="original (default, the standard protocol): logits resized to each image's own size and "
                        "scored against its mask as it is; model: image and mask resized to the model's size "
                        "(what training's validation reports)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.errors import UserError
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.model.evaluate import evaluate_model
    from deeplab_edge.model.presets import DEFAULT_MEAN, DEFAULT_STD

    model, info = load_checkpoint(args.checkpoint)
    ds = open_dataset(args.data or (info.extra.get("dataset") if info else None))
    samples = ds.val if args.split == "val" else ds.train
    if not samples:
        raise UserError(f"The {args.split} split of {ds.root} is empty.")
    if model.output_shape[-1] != ds.num_classes:
        raise UserError(f"The checkpoint predicts {model.output_shape[-1]} classes but {ds.root} has "
                        f"{ds.num_classes}; evaluate on the dataset it was trained for.")
    m = evaluate_model(model, samples, ds.class_names, tuple(model.input_shape[1:3]),
                       info.mean if info else DEFAULT_MEAN, info.std if info else DEFAULT_STD, progress=True,
                       resolution=args.resolution)
    where = ("each image's own size" if args.resolution == "original"
             else f"the model's size {model.input_shape[1]}x{model.input_shape[2]}")
    print(f"{args.split}: {len(samples)} images of {ds.root}, scored at {where}")
    print(m.table())
    if args.json:
        from deeplab_edge.fileio import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps({"split": args.split, "images": len(samples),
                                                       "resolution": args.resolution,
                                                       **m.to_dict()}, indent=2))
    return 0
