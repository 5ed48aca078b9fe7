"""`deeplab-edge inspect FILE`: a file's input/output contract (TF-free for .tflite/.onnx)."""

from __future__ import annotations

import argparse

from ._common import add_json_arg, add_load_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .tflite or .onnx file, or a .keras/.h5 checkpoint or SavedModel folder (those "
                   "need the train extra)")
    add_json_arg(p, "the contract")
    add_load_args(p)


def needs_extra(args: argparse.Namespace) -> bool:
    """Only a Keras model or SavedModel needs TensorFlow."""
    from pathlib import Path

    path = Path(args.model)
    return path.is_dir() or path.suffix.lower() in (".keras", ".h5", ".hdf5")


def run(args: argparse.Namespace) -> int:
    from ._common import emit_json

    if needs_extra(args):
        from deeplab_edge.export.inspect import inspect_keras

        from ._common import load_options

        contract = inspect_keras(args.model, load_options(args))
    else:
        from deeplab_edge.runtime.inspect import inspect_file

        contract = inspect_file(args.model)
    if not emit_json(args.json, contract.to_dict()):
        print(contract.to_text())
    return 0
