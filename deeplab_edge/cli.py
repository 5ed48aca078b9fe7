"""`deeplab-edge` command line: thin argparse wrappers over library functions.

Each subcommand lives in `deeplab_edge/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`, imported only when chosen (so `predict` never imports TensorFlow).
A `UserError`, an OSError (read-only or full disk, missing path, no permission) and a MemoryError print
as one clear line and exit 2; no traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import UserError, memory_error_message, os_error_message
from .logs import quiet_runtimes

# name -> one-line help. Order is the order of `--help`.
COMMANDS = {
    "demo": "the main job: train the edge preset on the built-in dataset, export, verify, benchmark, report",
    "presets": "list the model presets with parameters and MACs",
    "data": "make the built-in demo dataset (cached) and print where it is",
    "train": "train DeepLabV3+ on the built-in dataset or your folder of images and masks",
    "eval": "evaluate a checkpoint: mIoU, per-class IoU, pixel accuracy",
    "export": "export a checkpoint to TFLite and ONNX files, each verified against Keras",
    "predict": "run an exported file on images: mask PNGs and overlays (no TensorFlow needed)",
    "bench": "latency and accuracy of exported files side by side, with an optional CI budget",
    "gpu": "the GPU paths this machine offers (LiteRT over Vulkan, onnxruntime providers); a software Vulkan device",
    "profile": "time per op type and per layer of a .tflite or .onnx file",
    "quant-report": "per-layer quantisation error of the int8 files of a checkpoint (JSON, Markdown, plot)",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="deeplab-edge",
        description="DeepLabV3+ from Keras training to TFLite/ONNX on phones and embedded boards.",
        epilog="Start with `deeplab-edge demo`, or `deeplab-edge COMMAND --help`.",
    )
    parser.add_argument("--version", action="version", version=f"deeplab-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {name: sub.add_parser(name, help=text, description=text) for name, text in COMMANDS.items()}
    for p in subparsers.values():
        p.add_argument("--verbose", action="store_true",
                       help="show TensorFlow's and onnxruntime's own log lines (hidden by default)")
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, subparsers = build_parser()
    # Only the chosen command's module is imported (and so only it may import TensorFlow).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in COMMANDS:  # before the command's module may import TensorFlow
        quiet_runtimes(onnxruntime=chosen in ("demo", "export", "predict", "bench", "profile", "quant-report", "gpu"),
                       verbose="--verbose" in argv)
    modules = {}
    if chosen in COMMANDS:
        modules[chosen] = importlib.import_module(f"deeplab_edge.commands.{chosen.replace('-', '_')}")
        modules[chosen].add_arguments(subparsers[chosen])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user chose: read-only, full, missing, no permission
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {memory_error_message(args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
