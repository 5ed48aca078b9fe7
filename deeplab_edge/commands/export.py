"""`deeplab-edge export`."""

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
)
from ._flags import as_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deeplab_edge.export.formats import FORMATS
    from deeplab_edge.export.targets import TARGET_CHOICES

    add_checkpoint_arg(p)
    add_out_arg(p, "exported", "output folder")
    p.add_argument("--formats", nargs="+", default=None, metavar="FMT",
                   help=f"formats to write: {', '.join(FORMATS)}; default: all but tflite_int16x8; 'all': every one")
    p.add_argument("--name", help="file name stem (default: the checkpoint's preset, or 'model')")
    add_data_arg(p, required_hint=" or the dataset the checkpoint was trained on")
    add_spec_args(p)
    add_load_args(p)
    o = p.add_argument_group("format options (refused when no chosen format accepts them)")
    add_calibration_args(o)
    o.add_argument("--io-type", choices=("int8", "uint8", "float32"), help="tflite_int8 input/output type (default float32, "
                   "quantised inside the file: what MediaPipe Tasks accepts; int8/uint8 for integer-only pipelines)")
    o.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    o.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                   help="int8 per-channel weight scales (default on)")
    o.add_argument("--no-per-channel", dest="per_channel", action="store_false",
                   help="int8 weights with one scale per tensor (default: per channel)")
    o.add_argument("--target", choices=TARGET_CHOICES, default=None,
                   help="int8 files: the CPU they will run on. Sets the onnx_int8 defaults (7-bit weights for "
                        "x86-avx2 only, whose onnxruntime kernels saturate with 8-bit ones; full 8-bit for "
                        "arm64 and x86-vnni) and says whether verification ran on the target's kernels "
                        "(default auto: this machine, with a note when it cannot tell)")
    o.add_argument("--verify-on-target", action="store_true", default=None,
                   help="int8 files made for another CPU: verify them again with that CPU's kernels where this "
                        "machine can run them (arm64: the aarch64 runtime under qemu, built on first use with apt "
                        "and pip; minutes) (default: off)")
    o.add_argument("--reduce-range", dest="reduce_range", action="store_true", default=None,
                   help="onnx_int8 7-bit weights whatever the target (default: as --target says)")
    o.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                   help="onnx_int8 full 8-bit weights whatever the target (default: as --target says)")
    o.add_argument("--activation-type", choices=("uint8", "int8"),
                   help="onnx_int8 activations (default uint8: U8S8 runs fastest in onnxruntime on x86)")
    o.add_argument("--quant-format", choices=("qdq", "qoperator"),
                   help="onnx_int8 graph form (default qdq: QuantizeLinear/DequantizeLinear pairs onnxruntime fuses)")
    o.add_argument("--symmetric-activations", action="store_true", default=None,
                   help="onnx_int8 symmetric activation ranges (default: asymmetric, min/max)")
    k = p.add_argument_group("int8 layers kept in float (tflite_int8, onnx_int8)")
    k.add_argument("--keep-float", nargs="+", metavar="PATTERN", help="keep these in float: an op type "
                   "(DEPTHWISE_CONV_2D, Conv), a layer name or part of one (aspp_proj), or a glob on tensor/node "
                   "names (default: none)")
    k.add_argument("--auto-keep-float", action="store_true", default=None,
                   help="meet --max-miou-drop automatically: onnx_int8 first tries quantisation settings (weight "
                        "range, per-channel, activation type, symmetric activations, calibration method), then "
                        "both int8 files keep the layers with the worst error in float, one at a time, until the "
                        "file is within budget on the held-out images; then tflite_int8 also keeps in float the layers whose int8 op is "
                        "slower than its float one on this machine (per-op profiles of both), each only where the "
                        "whole file gets faster within the budget (default: off)")
    k.add_argument("--max-keep-float", type=int, metavar="N",
                   help="--auto-keep-float keeps at most N layers in float (default 20)")
    v = p.add_argument_group("graph and verification")
    v.add_argument("--head", choices=("logits", "labels"), default="logits",
                   help="logits: float (N,H,W,C) output; labels: argmax inside the model, (N,H,W) int32")
    v.add_argument("--pixel-input", dest="pixel_input", action="store_true", default=True,
                   help="every file takes raw uint8 RGB pixels and normalises them itself (a first op; for "
                        "tflite_int8 its uint8 input quantisation): the runtime only resizes and copies (default: on)")
    v.add_argument("--no-pixel-input", dest="pixel_input", action="store_false",
                   help="files take normalised float32 images, as the Keras model does (default: pixel input)")
    v.add_argument("--logits-at", choices=("input", "stride"), default="input",
                   help="input: logits upsampled to the input size inside the file; stride: logits at the "
                        "decoder's stride (input/4), the runtime computes labels there and upsamples them")
    v.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="export at another input size (default: the model's)")
    ev = v.add_argument("--eval-images", dest="verify_images", type=int, default=100,
                        help="held-out images to verify every file on")
    renamed(v, "--verify-images", ev)
    v.add_argument("--min-agreement", type=float, default=0.95,
                   help="quantised files: the least share of pixels whose label matches Keras's (0-1)")
    v.add_argument("--max-miou-drop", type=float, default=2.0, help="quantised files: the largest mIoU drop "
                   "against Keras in points (also the budget of --auto-keep-float)")
    v.add_argument("--threads", type=int, help="interpreter threads for verification (default: the CPUs this "
                   "process may use)")
    v.add_argument("--allow-fail", action="store_true", help="exit 0 even when a file fails verification "
                   "(default: exit 1)")
    p.add_argument("--force", action="store_true", help="overwrite existing files (default: refuse)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.options import OPTION_HELP, ExportOptions
    from deeplab_edge.progress import steps

    options = ExportOptions(**{key: getattr(args, key) for key in OPTION_HELP})
    options.check(resolve_formats(args.formats))  # before TensorFlow is imported

    from deeplab_edge.export.pipeline import export_checkpoint
    from deeplab_edge.export.verify import Thresholds

    report = export_checkpoint(
        args.checkpoint, args.out, formats=args.formats, data=args.data, name=args.name, head=args.head,
        pixel_input=args.pixel_input, logits_at=args.logits_at, input_size=args.input_size,
        eval_images=args.verify_images,
        thresholds=Thresholds(min_agreement=args.min_agreement, max_miou_drop=args.max_miou_drop),
        num_threads=args.threads, class_names=args.class_names, input_scale=args.input_scale, mean=args.mean,
        std=args.std, load=load_options(args), calibration_data=args.calibration_data, force=args.force,
        progress=steps("export"), note=lambda line: print(f"[export] {as_flags(line)}", flush=True), options=options)
    print()
    print(report.summary())
    failed = [f.format for f in report.files if not f.passed]
    if failed:
        print(f"verification FAILED for: {', '.join(failed)}" + (" (allowed by --allow-fail)" if args.allow_fail else ""))
        return 0 if args.allow_fail else 1
    return 0
