"""`deeplab-edge eval`."""

from __future__ import annotations

import argparse

from ._common import (
    add_data_arg,
    add_json_arg,
    add_load_args,
    add_spec_args,
    emit_json,
    load_options,
    spec_from_args,
)
from ._flags import as_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .keras checkpoint (e.g. runs/edge/best.keras), or a model built elsewhere "
                   "(tf-keras or Keras 3 file, SavedModel folder)")
    add_data_arg(p)
    add_spec_args(p)
    add_load_args(p)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="the size to run a model whose spatial size is dynamic at (default: the size it declares)")
    p.add_argument("--split", choices=("val", "train"), default="val", help="the dataset split to score")
    add_json_arg(p, "the metrics")
    p.add_argument("--resolution", choices=("original", "model"), default="original",
                   help="original (default, the standard protocol): logits resized to each image's own size and "
                        "scored against its mask as it is; model: image and mask resized to the model's size "
                        "(what training's validation reports)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.errors import UserError
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.model.evaluate import evaluate_model

    model, info = load_checkpoint(args.checkpoint, options=load_options(args))
    ds = open_dataset(args.data or (info.extra.get("dataset") if info else None))
    spec = spec_from_args(model, info, ds, args)  # normalisation and classes; a foreign model's never guessed
    for note in spec.notes:
        print(f"note: {as_flags(note)}")
    samples = ds.val if args.split == "val" else ds.train
    if not samples:
        raise UserError(f"The {args.split} split of {ds.root} is empty.")
    classes = 2 if spec.channels == 1 else spec.channels
    if classes != ds.num_classes:
        raise UserError(f"The checkpoint predicts {classes} classes but {ds.root} has "
                        f"{ds.num_classes}; evaluate on the dataset it was trained for.")
    m = evaluate_model(model, samples, ds.class_names, tuple(model.input_shape[1:3]), spec.mean, spec.std,
                       progress=True, resolution=args.resolution, to_labels=spec.labels)
    where = ("each image's own size" if args.resolution == "original"
             else f"the model's size {model.input_shape[1]}x{model.input_shape[2]}")
    result = {"split": args.split, "images": len(samples), "resolution": args.resolution, **m.to_dict()}
    if not emit_json(args.json, result):
        print(f"{args.split}: {len(samples)} images of {ds.root}, scored at {where}")
        print(m.table())
    return 0
