"""`deeplab-edge train`."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import add_config_args, add_data_arg, add_out_arg, config_from_args, renamed

# The one set of training defaults; `demo` states where it differs and why (commands/demo.py).
TRAIN_EPOCHS, TRAIN_LR, BATCH_SIZE = 10, 2e-3, 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arg(p)
    add_out_arg(p, None, "run folder: best.keras, last.keras, log.csv, curves.png (default runs/PRESET; with "
                "--qat-from: runs/PRESET-qat)")
    p.add_argument("--qat-from", metavar="CHECKPOINT", help="quantisation-aware fine-tuning of this trained float "
                   "checkpoint (fake int8, BatchNorm folded into the convs; tensorflow-model-optimization): writes best_qat.h5, "
                   "which `deeplab-edge export` turns into a full-integer tflite_int8 file (default: none, train from scratch)")
    p.add_argument("--qat-per-tensor", action="store_true", help="with --qat-from: int8 weights with one scale "
                   "per tensor, for accelerators that need it; the export follows (default: per channel)")
    add_config_args(p)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=TRAIN_EPOCHS, help="passes over the training set")
    t.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="global batch size")
    t.add_argument("--lr", type=float, help=f"peak learning rate (AdamW, cosine decay; default {TRAIN_LR:g}, "
                   "with --qat-from 1e-4)")
    t.add_argument("--steps-per-epoch", type=int, help="steps per epoch (default: one pass over the training set)")
    ti = t.add_argument("--train-images", dest="max_train_images", type=int, metavar="N",
                        help="use only the first N training images (default: all)")
    renamed(t, "--max-train-images", ti)
    t.add_argument("--backbone-weights", metavar="FILE|imagenet", help="a local Keras .h5 for the backbone (loaded "
                   "by layer name), or `imagenet`: keras.applications' ImageNet file, from ~/.keras/models or "
                   "downloaded there (offline: an error naming the file to fetch; default: random init)")
    t.add_argument("--cache", metavar="memory|DIR", help="keep the decoded images after the first pass: in RAM "
                   "(`memory`; needs the decoded dataset's size in RAM) or as tf.data cache files in DIR (a changed "
                   "dataset gets new files). Default: decode from disk every pass, RAM independent of dataset size")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from last.keras "
                   "(default: a new run)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.model._keras import KERAS_IMPL
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.model.train import TrainSettings, train

    # Options are checked before the dataset is scanned or built.
    config_from_args(args)
    lr = args.lr if args.lr is not None else (1e-4 if args.qat_from else TRAIN_LR)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=lr,
                             steps_per_epoch=args.steps_per_epoch, max_train_images=args.max_train_images,
                             seed=args.seed, resume=args.resume, verbose=1 if not args.quiet and sys.stdout.isatty() else 2,
                             backbone_weights=args.backbone_weights, cache=args.cache)
    if args.qat_from:
        return _qat(args, settings)
    ds = open_dataset(args.data)
    config = config_from_args(args, num_classes=ds.num_classes)
    print(f"keras: {KERAS_IMPL}")
    print(f"data: {ds.root} ({ds.layout} layout, {len(ds.train)} train / {len(ds.val)} val, "
          f"{ds.num_classes} classes)")
    print(f"model: preset {args.preset}: {json.dumps(config.to_dict())}")
    result = train(config, ds, args.out or f"runs/{args.preset}", settings, preset=args.preset)
    if not result.kept:
        print(f"best validation mIoU {100 * result.best_val_miou:.1f}%; this worker's outputs were scratch (the "
              f"chief writes the run); final weights sha256 {result.final_weights_sha256}")
        return 0
    print(f"best validation mIoU {100 * result.best_val_miou:.1f}% -> {result.best_checkpoint}")
    print(f"final weights sha256 {result.final_weights_sha256}")
    print(f"{result.epochs_run} epoch(s) in {result.seconds:.0f} s ({result.images_per_second:.1f} img/s); "
          f"log {result.out_dir / 'log.csv'}, curves {result.out_dir / 'curves.png'}")
    return 0


def _qat(args: argparse.Namespace, settings) -> int:
    from deeplab_edge.errors import UserError
    from deeplab_edge.model.checkpoint import read_info
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.model.qat import train_qat

    if args.resume or args.backbone_weights:
        raise UserError("--qat-from fine-tunes a trained checkpoint; it takes neither --resume nor --backbone-weights.")
    info = read_info(args.qat_from) if str(args.qat_from).endswith(".keras") else None
    ds = open_dataset(args.data or (info.extra.get("dataset") if info else None))
    out = args.out or f"runs/{args.preset}-qat"
    print(f"data: {ds.root} ({len(ds.train)} train / {len(ds.val)} val); QAT of {args.qat_from} -> {out}")
    result = train_qat(args.qat_from, ds, out, settings, per_tensor=args.qat_per_tensor)
    print(f"QAT: best validation mIoU {100 * result.best_val_miou:.1f}% (fake int8) in {result.seconds:.0f} s "
          f"-> {result.checkpoint}")
    print(f"export it: deeplab-edge export {result.checkpoint} --data {ds.root}")
    return 0
