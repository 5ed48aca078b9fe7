"""`deeplab-edge profile`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .tflite or .onnx file")
    p.add_argument("--threads", type=int, default=None,
                   help="interpreter threads (default: the CPUs this process may use, as predict and bench)")
    p.add_argument("--top", type=int, default=15, help="layers to list")
    from ._common import add_json_arg

    add_json_arg(p, "the profile and the machine")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.benchmarks.profile import profile_file
    from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary
    from deeplab_edge.errors import UserError

    if args.threads is None:
        from deeplab_edge.runtime.backends import default_threads

        args.threads = default_threads()
    if args.threads <= 0:
        raise UserError(f"--threads must be positive; received {args.threads}.")
    prof = profile_file(args.model, threads=args.threads)
    info = machine_info()
    from ._common import emit_json

    if not emit_json(args.json, {"machine": info, **prof.to_dict()}):
        print(machine_summary(info, threads=args.threads))
        print(prof.table(args.top))
    return 0
