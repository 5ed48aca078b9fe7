"""Arguments shared by several commands (model config overrides, dataset choice, renamed options, JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class _OldName(argparse.Action):
    """A hidden old spelling of a renamed option: it still works, and says the new name."""

    def __init__(self, option_strings, dest, *, new: str, convert=None, **kw) -> None:
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if self.nargs == 0:
            values = self.const
        if self.convert is not None:
            values = self.convert(values)
        print(f"note: {option_string} is now {self.new}; the old name works until the next release",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def renamed(p, old: str, action: argparse.Action, *, convert=None, choices=None) -> None:
    """Keep `old` as a hidden alias of `action` (same dest; `convert` maps an old value to the new one)."""
    if isinstance(action, argparse._StoreConstAction):  # store_true / store_false / store_const
        kw = {"nargs": 0, "const": action.const}
    else:
        kw = {"nargs": action.nargs, "type": action.type, "metavar": action.metavar,
              "choices": choices if choices is not None else action.choices}
    p.add_argument(old, action=_OldName, dest=action.dest, new=action.option_strings[-1], convert=convert, **kw)


def add_out_arg(p, default: str | None, what: str, *, required: bool = False) -> argparse.Action:
    """`-o/--out DIR`: the folder a command writes to (the one name for an output folder)."""
    return p.add_argument("-o", "--out", default=default, required=required, metavar="DIR",
                          help=what + (" (required)" if required else ""))


def add_json_arg(p, what: str) -> None:
    """`--json [FILE]`: the result as JSON, to FILE, or with no FILE (or '-') to stdout instead of the text."""
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help=f"{what} as JSON: to FILE, or to stdout in place of the text with no FILE or '-' "
                        "(default: text only)")


def emit_json(target: str | None, obj) -> bool:
    """Write `obj` as `add_json_arg` asked; True when it went to stdout (so the text is not printed)."""
    if target is None:
        return False
    text = json.dumps(obj, indent=2)
    if target == "-":
        print(text)
        return True
    from deeplab_edge.fileio import write_text_atomic

    write_text_atomic(Path(target), text)
    return False


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    """The model to export or report on (export, quant-report)."""
    p.add_argument("checkpoint", help="a .keras checkpoint (e.g. runs/edge/best.keras), or any segmentation model "
                   "(N-class scores or one foreground channel): a tf-keras or Keras 3 .keras/.h5 file (keras-hub "
                   "included) or a TensorFlow SavedModel folder")


def add_calibration_args(g) -> None:
    """int8 calibration data and method (export, quant-report)."""
    cal = g.add_argument("--calibration-images", dest="calibration_count", type=int, metavar="N",
                         help="int8: real training images to calibrate on (default 200, or all when fewer)")
    renamed(g, "--calibration-count", cal)
    g.add_argument("--calibration-data", metavar="DIR",
                   help="calibrate int8 on this folder of images, no masks needed (default: the training images)")
    g.add_argument("--calibration-method", choices=("minmax", "percentile", "entropy"),
                   help="onnx_int8 calibrator (default minmax; the TFLite converter calibrates min/max only)")


def add_config_args(p: argparse.ArgumentParser, *, default_preset: str = "edge") -> None:
    g = p.add_argument_group("model (a preset plus overrides; unset flags keep the preset's value)")
    g.add_argument("--preset", default=default_preset, help=f"preset name (default {default_preset}); "
                   "see `deeplab-edge presets`")
    g.add_argument("--backbone", choices=("mobilenetv2", "resnet50"), help="backbone (default: the preset's)")
    g.add_argument("--alpha", type=float, help="MobileNetV2 width multiplier (default: the preset's)")
    g.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="input height and width (default: the preset's)")
    g.add_argument("--output-stride", type=int, choices=(8, 16), help="backbone output stride (default: the preset's)")
    g.add_argument("--width", type=int, help="ASPP and decoder channels (default: the preset's)")
    g.add_argument("--atrous-rates", type=int, nargs="+", metavar="R",
                   help="ASPP rates at output stride 16 (default: the preset's)")
    g.add_argument("--separable", dest="separable", action="store_true", default=None,
                   help="atrous separable convs in ASPP and decoder (default: the preset's)")
    g.add_argument("--no-separable", dest="separable", action="store_false", help="plain 3x3 convs in ASPP and "
                   "decoder (default: the preset's)")
    g.add_argument("--no-fold", dest="fold_atrous", action="store_false", default=None,
                   help="keep atrous branches whose rate covers the feature map as 3x3 (default: folded exactly "
                        "into 1x1)")


def config_from_args(args: argparse.Namespace, num_classes: int | None = None):
    from deeplab_edge.model.presets import get_preset

    preset = get_preset(args.preset)
    return preset.config.replace(
        backbone=args.backbone, alpha=args.alpha,
        input_size=tuple(args.input_size) if args.input_size else None,
        output_stride=args.output_stride, width=args.width,
        atrous_rates=tuple(args.atrous_rates) if args.atrous_rates else None,
        separable=args.separable, fold_atrous=args.fold_atrous, num_classes=num_classes,
    )


def add_data_arg(p: argparse.ArgumentParser, *, required_hint: str = "") -> None:
    p.add_argument("--data", metavar="DIR", help="dataset folder (PASCAL VOC layout or images/ + masks/); "
                   "default: the built-in demo dataset" + required_hint)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """How to read a .tflite/.onnx file that does not say it itself (shared by predict and bench)."""
    g = p.add_argument_group("reading a file without metadata (each overrides what the file says)")
    g.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="model input size (default: the file's; needed when its spatial size is dynamic)")
    g.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="normalisation mean on 0..255 pixels: (pixel - mean) / std (default: the file's)")
    g.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="normalisation std on 0..255 pixels, e.g. 255 255 255 for [0, 1] inputs (default: the "
                        "file's)")
    g.add_argument("--class-names", default=None, metavar="a,b,c",
                   help="comma-separated class names (default: the file's, else class_0, class_1, ...)")
    g.add_argument("--threshold", type=float, default=None, metavar="P",
                   help="one-channel outputs: foreground where the probability >= P (default 0.5)")
    out = g.add_argument("--output-name", dest="output", default=None, metavar="NAME",
                         help="the output tensor to use when the file has several (default: the first)")
    renamed(g, "--output", out)
    g.add_argument("--output-kind", choices=("logits", "probabilities", "labels"), default=None,
                   help="what the output holds, when the file does not say (one-channel outputs: logits are "
                        "thresholded at logit(P), probabilities at P; default: the file's metadata, else its "
                        "last op, else read from the first output)")


def model_flags(args: argparse.Namespace) -> dict:
    """The keyword arguments of `load_predictor` that `add_model_flags` defines."""
    return {"input_size": args.input_size, "mean": args.mean, "std": args.std, "class_names": args.class_names,
            "threshold": args.threshold, "output": args.output, "output_kind": args.output_kind}


def add_spec_args(p: argparse.ArgumentParser) -> None:
    """How a model not trained by deeplab-edge was trained (export, quant-report)."""
    from deeplab_edge.export.spec import INPUT_SCALE_ALIASES, INPUT_SCALES

    m = p.add_argument_group("a model not trained by deeplab-edge (or overrides of a checkpoint's model info); "
                             "also read from a sidecar MODEL.json with the same keys")
    m.add_argument("--class-names", metavar="a,b,c", help="comma-separated class names (default: the checkpoint's, "
                   "else the dataset's)")
    m.add_argument("--input-scale", choices=[*INPUT_SCALES, *INPUT_SCALE_ALIASES], metavar="SCALE",
                   help="how the model's inputs were scaled: signed or -1-1 (x/127.5 - 1), unit or 0-1 (x/255), raw "
                        "or 0-255 (pixels as they are), imagenet (ImageNet's mean/std) (default: the checkpoint's, "
                        "else the sidecar's, else what the model says)")
    m.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="normalisation mean on 0..255 pixels (default: as --input-scale)")
    m.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="normalisation std on 0..255 pixels (default: as --input-scale)")


def add_load_args(p: argparse.ArgumentParser, *, output: bool = True) -> None:
    """How to load a model built elsewhere: Keras 3 files, keras-hub models, SavedModel folders."""
    g = p.add_argument_group("loading a model built elsewhere (Keras 3, keras-hub, SavedModel)")
    g.add_argument("--custom-objects", metavar="FILE.py", help="a Python file defining the model's own classes "
                   "(its CUSTOM_OBJECTS dict, else every class it defines; default: none)")
    g.add_argument("--unsafe", action="store_true", help="allow loading Python code saved in the model (Lambda "
                   "layers); only for files you trust")
    if output:
        out = g.add_argument("--output-name", dest="output", metavar="NAME",
                             help="a SavedModel's output to use when its signature has several (default: the first)")
        renamed(g, "--output", out)


def load_options(args: argparse.Namespace):
    """The `foreign.LoadOptions` of `add_load_args` (and --input-size where the command has it)."""
    from deeplab_edge.model.foreign import LoadOptions

    size = getattr(args, "input_size", None)
    return LoadOptions(input_size=tuple(size) if size else None, output=getattr(args, "output", None),
                       custom_objects=args.custom_objects, unsafe=args.unsafe)


def spec_from_args(model, info, ds, args: argparse.Namespace):
    """The model's `ModelSpec` with `add_spec_args`' overrides."""
    from deeplab_edge.export.spec import model_spec

    return model_spec(model, info, ds, checkpoint=args.checkpoint, class_names=args.class_names, mean=args.mean,
                      std=args.std, input_scale=args.input_scale)
