"""`deeplab-edge quant-report`."""

from __future__ import annotations

import argparse

from ._common import (
    add_calibration_args,
    add_checkpoint_arg,
    add_data_arg,
    add_load_args,
    add_out_arg,
    add_spec_args,
    load_options,
    renamed,
    spec_from_args,
)

INT8 = ("tflite_int8", "onnx_int8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arg(p)
    fmts = p.add_argument("--formats", nargs="+", default=list(INT8), choices=INT8, metavar="FMT",
                          help=f"the int8 files to report on: {', '.join(INT8)}")
    renamed(p, "--format", fmts)
    add_out_arg(p, "quant_report", "output folder for <format>.json, .md and .png")
    add_data_arg(p, required_hint=" or the dataset the checkpoint was trained on")
    add_calibration_args(p)
    p.add_argument("--no-per-channel", dest="per_channel", action="store_false", default=True,
                   help="int8 weights with one scale per tensor (default: per channel)")
    ev = p.add_argument("--eval-images", dest="images", type=int, default=16, metavar="N",
                        help="calibration images the float and int8 tensors are compared on")
    renamed(p, "--images", ev)
    p.add_argument("--top", type=int, default=15, help="worst tensors to print")
    add_spec_args(p)
    add_load_args(p)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="the size to convert a model whose spatial size is dynamic at (default: the size it declares)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.errors import UserError
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.layer_report import checkpoint_report
    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import load_for_export
    from deeplab_edge.export.quant_report import short
    from deeplab_edge.progress import steps

    if args.images <= 0 or args.top <= 0:
        raise UserError(f"--eval-images and --top must be positive; received {args.images} and {args.top}.")
    model, info, ds, _ = load_for_export(args.checkpoint, args.data, None, load_options(args))
    spec = spec_from_args(model, info, ds, args)
    size = tuple(model.input_shape[1:3])
    if None in size:
        raise UserError(f"{args.checkpoint} takes inputs of any size; quant-report needs a fixed-size model.")
    calibration, _, _ = calibration_and_verification(
        ds, size, resolve_formats(args.formats), args.calibration_count, 1, spec.mean, spec.std,
        note=print, calibration_data=args.calibration_data)
    for fmt in args.formats:
        steps("quant-report")(f"{fmt}: calibrating on {len(calibration)} images, comparing on "
              f"{min(args.images, len(calibration))}")
        report = checkpoint_report(model, info, fmt, calibration, spec, images=args.images,
                                   options=ExportOptions(calibration_method=args.calibration_method,
                                                         per_channel=args.per_channel))
        paths = report.write(args.out, stem=fmt)
        print(f"\n{fmt}: {len(report.layers)} quantised tensors, worst {min(args.top, len(report.layers))} by SQNR:")
        for e in report.worst(args.top):
            print(f"  {e.sqnr_db:6.1f} dB  cos {e.cosine:.4f}  {e.op:<18} {short(e.name)}")
        print(f"written: {', '.join(str(p) for p in paths)}")
    print("\nKeep a layer in float with `deeplab-edge export ... --keep-float NAME`, or let "
          "`--auto-keep-float` choose them.")
    return 0
