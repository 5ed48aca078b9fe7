"""`deeplab-edge` command line: thin argparse wrappers over library functions.

Each subcommand lives in `deeplab_edge/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`, imported only when chosen (so `predict` never imports TensorFlow). A `UserError`, an
OSError (read-only or full disk, missing path, no permission), a MemoryError and a package the install
lacks each print as one clear line and exit 2: no traceback for a user mistake. Exit codes: `EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from dataclasses import dataclass

from . import __version__
from .commands._flags import as_flags, use_parser
from .errors import UserError, did_you_mean, memory_error_message, os_error_message
from .logs import quiet_runtimes, set_quiet


@dataclass(frozen=True)
class Command:
    help: str
    extra: str = ""  # the pip extra the command needs beyond the core (TF-free) install; "" = none
    examples: tuple[str, ...] = ()


TRAIN = "train"
# Order is the order of `--help`.
COMMANDS: dict[str, Command] = {
    "demo": Command("the main job: train the edge preset on the built-in dataset, export, verify, benchmark, "
                    "report", TRAIN, ("deeplab-edge demo", "deeplab-edge demo --data my_dataset -o report_mine")),
    "presets": Command("list the model presets with parameters and MACs", TRAIN,
                       ("deeplab-edge presets", "deeplab-edge presets --json presets.json")),
    "data": Command("make the built-in demo dataset (cached) and print where it is; `data check DIR` reads a "
                    "dataset (core install)", TRAIN, ("deeplab-edge data", "deeplab-edge data check my_dataset")),
    "train": Command("train DeepLabV3+ on the built-in dataset or your folder of images and masks", TRAIN,
                     ("deeplab-edge train -o runs/edge", "deeplab-edge train --data my_dataset --epochs 30",
                      "deeplab-edge train --qat-from runs/edge/best.keras")),
    "eval": Command("evaluate a checkpoint: mIoU, per-class IoU, pixel accuracy", TRAIN,
                    ("deeplab-edge eval runs/edge/best.keras", "deeplab-edge eval unet.keras --data my_dataset "
                     "--input-scale unit --json metrics.json")),
    "export": Command("export a checkpoint to TFLite and ONNX files, each verified against Keras", TRAIN,
                      ("deeplab-edge export runs/edge/best.keras -o exported",
                       "deeplab-edge export runs/edge/best.keras --formats tflite_int8 onnx_int8 --auto-keep-float",
                       "deeplab-edge export unet.keras --data my_dataset --input-scale -1-1")),
    "predict": Command("run an exported file on images: mask PNGs and overlays (no TensorFlow needed)", "",
                       ("deeplab-edge predict exported/edge_tflite_int8.tflite photos/ -o masks",
                        "deeplab-edge predict model.onnx photo.jpg -o masks --device auto")),
    "bench": Command("latency and accuracy of exported files side by side, with an optional CI budget", "",
                     ("deeplab-edge bench exported/manifest.json -o bench",
                      "deeplab-edge bench a.tflite b.onnx --data my_dataset --budget budget.json")),
    "inspect": Command("a file's input/output contract: tensors, normalisation, what the output holds, classes, "
                       "metadata, ops, verification (.keras needs the train extra)", "",
                       ("deeplab-edge inspect exported/edge_tflite_int8.tflite",
                        "deeplab-edge inspect model.onnx --json model.json")),
    "gpu": Command("the GPU paths this machine offers (LiteRT over Vulkan, onnxruntime providers); a software "
                   "Vulkan device", "", ("deeplab-edge gpu", "deeplab-edge gpu --install-swiftshader",
                                         "deeplab-edge gpu exported/edge_fp32.tflite")),
    "profile": Command("time per op type and per layer of a .tflite or .onnx file", "",
                       ("deeplab-edge profile exported/edge_tflite_int8.tflite --top 20",)),
    "quant-report": Command("per-layer quantisation error of the int8 files of a checkpoint (JSON, Markdown, plot)",
                            TRAIN, ("deeplab-edge quant-report runs/edge/best.keras -o quant_report",)),
}

EXIT_CODES = {
    0: "success",
    1: "a check failed: verification, a budget or gate limit, a failed bench row (unless --allow-fail), "
       "an input predict could not process",
    2: "usage or input error (a wrong option, a bad file, a package this install lacks)",
    3: "inconclusive: bench --baseline could not tell within --max-time (or the machine was too noisy)",
    130: "interrupted (Ctrl-C)",
}

# A package the install may lack -> the extra that brings it.
EXTRA_OF_MODULE = {
    "tensorflow": TRAIN, "tf_keras": TRAIN, "keras": TRAIN, "onnx": TRAIN, "tf2onnx": TRAIN, "sympy": TRAIN,
    "tensorflow_model_optimization": TRAIN, "imgviz": TRAIN, "skimage": TRAIN, "h5py": TRAIN,
    "matplotlib": "runtime", "tqdm": "runtime", "psutil": "runtime", "cv2": "opencv", "keras_hub": "dev",
}
# Modules whose absence a command with an extra is refused for before it starts.
EXTRA_CHECK = {TRAIN: ("tensorflow", "tf_keras")}
# Options whose documented values start with "-" (argparse would read them as options).
DASH_VALUES = {"--input-scale": ("-1-1",)}


def missing_package_message(command: str, module: str) -> str:
    top = (module or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return (f"`deeplab-edge {command}` needs the Python package {top!r}, which is not installed: "
                f"pip install {top}")
    return (f"`deeplab-edge {command}` needs {top}, which this install lacks: "
            f"pip install 'deeplab-edge[{extra}]'")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the text already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is None or default is False
                or default is argparse.SUPPRESS
                or isinstance(action, (argparse._StoreConstAction, argparse._HelpAction, argparse._VersionAction))):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _epilog() -> str:
    extras = [f"  {name:<13} pip install 'deeplab-edge[{c.extra}]'" for name, c in COMMANDS.items() if c.extra]
    codes = [f"  {code:<4} {text}" for code, text in EXIT_CODES.items()]
    return "\n".join([
        "Commands without a mark run on the core install (`pip install deeplab-edge`: numpy, Pillow, onnxruntime,",
        "LiteRT; no TensorFlow). These need an extra:", *extras, "",
        "exit codes:", *codes, "",
        "Start with `deeplab-edge demo`, or `deeplab-edge COMMAND --help`."])


def add_global_flags(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-v/-q, accepted before or after the subcommand (the subcommand's copy never resets the top's)."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="show TensorFlow's and onnxruntime's own log lines (hidden by default)")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress bars or step lines: results, warnings and errors only")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="deeplab-edge", formatter_class=HelpFormatter, epilog=_epilog(),
        description="DeepLabV3+ from Keras training to TFLite/ONNX on phones and embedded boards.")
    parser.add_argument("--version", action="version", version=f"deeplab-edge {__version__}")
    add_global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, c in COMMANDS.items():
        mark = f" [{c.extra}]" if c.extra else ""
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in c.examples) if c.examples else None
        if c.extra:
            epilog = (epilog + "\n\n" if epilog else "") + f"needs: pip install 'deeplab-edge[{c.extra}]'"
        subparsers[name] = sub.add_parser(name, help=c.help + mark, description=c.help, epilog=epilog,
                                          formatter_class=HelpFormatter)
        add_global_flags(subparsers[name], top=False)
    return parser, subparsers


def _join_dash_values(argv: list[str]) -> list[str]:
    """`--input-scale -1-1` -> `--input-scale=-1-1`, so a documented value that starts with "-" parses."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in DASH_VALUES and i + 1 < len(argv) and argv[i + 1] in DASH_VALUES[a]:
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _chosen(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = _join_dash_values(sys.argv[1:] if argv is None else list(argv))
    parser, subparsers = build_parser()
    chosen = _chosen(argv)
    if chosen is not None and chosen not in COMMANDS:
        print(f"error: unknown command {chosen!r}.{did_you_mean(chosen, COMMANDS)} Commands: "
              f"{', '.join(COMMANDS)} (deeplab-edge --help).", file=sys.stderr)
        return 2
    flags = set(argv)
    verbose = bool(flags & {"-v", "--verbose"})
    set_quiet(bool(flags & {"-q", "--quiet"}))
    modules = {}
    try:
        if chosen is not None:  # before the command's module may import TensorFlow
            quiet_runtimes(onnxruntime=chosen in ("demo", "export", "predict", "bench", "profile", "quant-report",
                                                  "gpu", "inspect"), verbose=verbose)
            # Only the chosen command's module is imported (and so only it may import TensorFlow).
            modules[chosen] = importlib.import_module(f"deeplab_edge.commands.{chosen.replace('-', '_')}")
            modules[chosen].add_arguments(subparsers[chosen])
            use_parser(subparsers[chosen])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        extra = COMMANDS[args.command].extra
        needs = getattr(modules[args.command], "needs_extra", lambda a: bool(extra))(args)
        for module in EXTRA_CHECK.get(extra, ()) if needs else ():
            if importlib.util.find_spec(module) is None:
                print(f"error: {missing_package_message(args.command, module)}", file=sys.stderr)
                return 2
        return int(modules[args.command].run(args) or 0)
    except ModuleNotFoundError as e:  # a package this install lacks: name the extra that brings it
        if (e.name or "").split(".")[0] == "deeplab_edge":
            raise  # our own module: a bug, not the install
        print(f"error: {missing_package_message(chosen or 'deeplab-edge', e.name or str(e))}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"error: {as_flags(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user chose: read-only, full, missing, no permission
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {memory_error_message(chosen or 'deeplab-edge')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
