"""`deeplab-edge predict MODEL IMAGES... --out DIR`: mask and overlay PNGs from a .tflite or .onnx file.

TF-free: imports only deeplab_edge.runtime (numpy, Pillow, onnxruntime, ai-edge-litert).
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_model_flags, add_out_arg, model_flags
from ._flags import as_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="exported .tflite or .onnx file")
    parser.add_argument("images", nargs="+", help="image files and/or folders of images (every folder entry that "
                        "is not an image is named, with the reason)")
    add_out_arg(parser, None, "folder for <stem>_mask.png and <stem>_overlay.png", required=True)
    parser.add_argument("--backend", choices=("tflite", "onnx"), default=None,
                        help="runtime to use (default: from the file's suffix and content)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (default: the CPUs this process may use, for LiteRT and onnxruntime alike)")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                        help="cpu: XNNPACK / onnxruntime's CPU provider; gpu: a .tflite file on LiteRT's GPU "
                             "accelerator (a Vulkan device: the GPU's driver, or `deeplab-edge gpu "
                             "--install-swiftshader`), an .onnx file on onnxruntime's GPU providers, never the CPU "
                             "under the GPU's name; auto: a real GPU where the whole file runs there, else the CPU "
                             "(with a note saying why)")
    parser.add_argument("--gpu-precision", choices=("fp32", "fp16"), default="fp32",
                        help="LiteRT GPU arithmetic: fp32 (enforced) or fp16 (faster on most GPUs, agreement a "
                             "little lower)")
    parser.add_argument("--providers", default=None, metavar="LIST",
                        help="advanced, .onnx only: onnxruntime execution providers in order, e.g. openvino,cpu "
                             "(default: from --device)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="images per inference call")
    add_model_flags(parser)
    parser.add_argument("--no-overlay", action="store_true", help="write the masks only (default: masks and overlays)")
    parser.add_argument("--resample", choices=("pillow", "opencv", "mediapipe"), default="pillow",
                        help="how to resize images to the model and masks back: pillow (as in training), opencv "
                             "(10-30x faster on photos, no antialiasing; needs the opencv extra) or mediapipe (as "
                             "MediaPipe Tasks' ImageSegmenter does on a phone)")
    parser.add_argument("--upsample", choices=("labels", "scores"), default="labels",
                        help="for a file whose output is smaller than its input (e.g. --logits-at stride): labels "
                             "computes the label map at the output's resolution and resizes it once; scores "
                             "upsamples the scores bilinearly first (slower)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.runtime.folders import predict_paths

    summary = predict_paths(
        args.model, args.images, args.out, backend=args.backend, num_threads=args.threads,
        providers=args.providers, batch_size=args.batch_size, overlay=not args.no_overlay, resample=args.resample,
        upsample=args.upsample, device=args.device, gpu_precision=args.gpu_precision,
        **model_flags(args),
    )
    print(as_flags(summary.to_text(failures=False)))
    if summary.failed:
        print(summary.failures_text(), file=sys.stderr)
    return 0 if summary.ok else 1  # 1: an input could not be processed (each is named above)
