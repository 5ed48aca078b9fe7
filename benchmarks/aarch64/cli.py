"""The TF-free runtime on aarch64 without an Arm machine: qemu-user, per emulated CPU.

    python -m deeplab_edge.benchmarks.aarch64 --models report/models --out DIR [--photos DIR] [--cpus cortex-a72,...]

Exit codes: 0 all agreed; 1 a float file (fp32/fp16/dynamic) agreed on < 100% of the pixels of some photo,
an int8 file on < 99%, or an emulated predict failed, on a CPU other than `max` (reported, never asserted);
2 the check could not run: the environment could not be built, or no manifest/photos, or the x86
reference failed (one line naming what is missing and how to fix it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import REPO, CheckError, SetupError
from .check import default_photos, run_check
from .cpus import CPUS, DEFAULT_CPUS, parse_cpus
from .report import write_report

__all__ = ["main"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deeplab_edge.benchmarks.aarch64", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=None,
                   help="export folder with manifest.json (default: report/models, the demo's, if it exists)")
    p.add_argument("--photos", type=Path, default=None,
                   help="folder of photos (default: the built-in demo set's photos/ in the deeplab-edge cache)")
    p.add_argument("--cpus", default=",".join(DEFAULT_CPUS),
                   help=f"comma-separated QEMU_CPU names (default {','.join(DEFAULT_CPUS)}; also "
                        f"{', '.join(c for c in CPUS if c not in DEFAULT_CPUS)}; qemu options follow their CPU, "
                        "e.g. max,sme=off; `max` is reported, not asserted)")
    p.add_argument("--formats", default=None, help="comma-separated formats of the manifest to check (default all)")
    p.add_argument("--bench-file", default=None, help="file or format to bench (default tflite_int8, else the first)")
    p.add_argument("--no-bench", action="store_true", help="skip the bench run")
    p.add_argument("--threads", type=int, default=2, help="--threads for every predict call (default 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per emulated call (default 900)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                   help="folder for <date>-aarch64.md and .json (default benchmarks/results/)")
    p.add_argument("--source", type=Path, default=REPO, help="the deeplab-edge checkout to install (default this one)")
    p.add_argument("--note", action="append", default=[], help="a line for the report's Notes (repeatable)")
    return p


def _run(args: argparse.Namespace) -> dict:
    models = args.models
    if models is None:
        models = Path("report") / "models"
        if not (models / "manifest.json").is_file():
            raise CheckError("no --models given and report/models/manifest.json does not exist: run `deeplab-edge "
                             "demo` (or `make demo`) first, or pass --models with an export folder.")
    photos_dir = args.photos or default_photos()
    if photos_dir is None or not photos_dir.is_dir():
        raise CheckError(f"photos folder {photos_dir or '(built-in demo set)'} not found: pass --photos DIR.")
    photos = sorted(f for f in photos_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    cpus = parse_cpus(args.cpus)
    if not cpus:
        raise CheckError("--cpus is empty.")
    formats = [f.strip() for f in args.formats.split(",")] if args.formats else None
    return run_check(models.resolve(), photos, cpus, formats=formats, bench_file=args.bench_file,
                     bench=not args.no_bench, threads=args.threads, timeout=args.timeout,
                     source=args.source.resolve(), notes=args.note)


def main(argv: list[str] | None = None) -> int:
    """The command line: run the check, write the record into --out, print it. Returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        result = _run(args)
    except (SetupError, CheckError) as e:
        print(f"aarch64-check: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aarch64-check: interrupted", file=sys.stderr)
        return 130
    print()
    md, js = write_report(result, args.out)  # prints the Markdown
    print(f"wrote {md} and {js}")
    return 0 if result["passed"] else 1
