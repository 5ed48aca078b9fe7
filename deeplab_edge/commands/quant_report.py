"""`deeplab-edge quant-report`."""

from __future__ import annotations

import argparse

from ._common import add_data_arg, add_load_args, add_spec_args, load_options, spec_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .keras checkpoint (e.g. runs/edge/best.keras), or a model built elsewhere "
                   "(tf-keras or Keras 3 file, SavedModel folder)")
    p.add_argument("--format", dest="formats", nargs="+", default=["tflite_int8", "onnx_int8"],
                   choices=("tflite_int8", "onnx_int8"), help="the int8 files to report on (default both)")
    p.add_argument("--out", default="quant_report", help="output folder (default quant_report/): "
                   "<format>.json, .md and .png")
    add_data_arg(p, required_hint=" or the dataset the checkpoint was trained on")
    p.add_argument("--calibration-count", type=int, help="images to calibrate on (default 200, or all when fewer)")
    p.add_argument("--calibration-data", metavar="DIR", help="calibrate on this folder of images (no masks needed)")
    p.add_argument("--calibration-method", choices=("minmax", "percentile", "entropy"), help="onnx_int8 calibrator")
    p.add_argument("--no-per-channel", dest="per_channel", action="store_false", default=True,
                   help="int8 weights with one scale per tensor")
    p.add_argument("--images", type=int, default=16, help="calibration images the report runs (default 16)")
    p.add_argument("--top", type=int, default=15, help="worst tensors to print (default 15)")
    add_spec_args(p)
    add_load_args(p)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="the size to convert a model whose spatial size is dynamic at (default: the size it declares)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.errors import UserError
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import load_for_export, quant_report
    from deeplab_edge.export.quant_report import short

    if args.images <= 0 or args.top <= 0:
        raise UserError(f"--images and --top must be positive; received {args.images} and {args.top}.")
    model, info, ds, _ = load_for_export(args.checkpoint, args.data, None, load_options(args))
    spec = spec_from_args(model, info, ds, args)
    size = tuple(model.input_shape[1:3])
    if None in size:
        raise UserError(f"{args.checkpoint} takes inputs of any size; quant-report needs a fixed-size model.")
    calibration, _, _ = calibration_and_verification(
        ds, size, resolve_formats(args.formats), args.calibration_count, 1, spec.mean, spec.std,
        progress=lambda m: print(f"[quant-report] {m}", flush=True), calibration_data=args.calibration_data)
    for fmt in args.formats:
        print(f"[quant-report] {fmt}: calibrating on {len(calibration)} images, comparing on "
              f"{min(args.images, len(calibration))}", flush=True)
        report = quant_report(model, info, fmt, calibration, spec, images=args.images,
                              options={"calibration_method": args.calibration_method,
                                       "per_channel": args.per_channel})
        paths = report.write(args.out, stem=fmt)
        print(f"\n{fmt}: {len(report.layers)} quantised tensors, worst {min(args.top, len(report.layers))} by SQNR:")
        for e in report.worst(args.top):
            print(f"  {e.sqnr_db:6.1f} dB  cos {e.cosine:.4f}  {e.op:<18} {short(e.name)}")
        print(f"written: {', '.join(str(p) for p in paths)}")
    print("\nKeep a layer in float with `deeplab-edge export ... --keep-float NAME`, or let "
          "`--auto-keep-float` choose them.")
    return 0
