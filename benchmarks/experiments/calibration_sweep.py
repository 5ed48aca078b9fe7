"""How many calibration images, and which calibration method? mIoU and agreement of int8 files per (count, method).

`python benchmarks/experiments/calibration_sweep.py CHECKPOINT --out DIR [--counts 1 4 16 64 200] [--data DIR]
[--per-tensor] [--verify-images N] [--stem NAME]`

For each count, the same images (the first `count` of one seeded draw from the training set) calibrate
tflite_int8 (the converter's min/max) and onnx_int8 with onnxruntime's minmax, percentile and entropy
calibrators; every file is scored on the same held-out images. Writes OUT/STEM.json, .md and .png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from deeplab_edge.benchmarks.quant_study import export_one, load_study, study_images, study_parser
from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary

METHODS = (("tflite_int8", "minmax"), ("onnx_int8", "minmax"), ("onnx_int8", "percentile"), ("onnx_int8", "entropy"))


def main(argv: list[str] | None = None) -> int:
    from deeplab_edge.runtime.backends import default_threads

    ap = study_parser(__doc__, "calibration-sweep")
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16, 64, 200])
    args = ap.parse_args(argv)

    model, info, ds, spec = load_study(args.checkpoint, args.data)
    counts = sorted(set(c for c in args.counts if c <= len(ds.train)))
    pool, vx, vy = study_images(model, ds, spec, max(counts), args.verify_images)
    size = tuple(model.input_shape[1:3])
    options = {"per_channel": False} if args.per_tensor else {}
    results, keras_miou = [], None
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-sweep-") as tmp:
        for count in counts:
            calib = pool.subset(count, f"{count} of {pool.source}")
            for fmt, method in METHODS:
                opts = {**options, **({"calibration_method": method} if fmt == "onnx_int8" else {})}
                report = export_one(model, info, fmt, opts, calib, vx, vy, spec, Path(tmp) / f"{fmt}-{method}-{count}",
                                    checkpoint=args.checkpoint)
                (f,) = report.files
                keras_miou = report.model["keras_miou"]
                results.append({"count": count, "format": fmt, "method": method, "miou": f.verification.miou,
                                "agreement": f.verification.agreement,
                                "miou_drop": f.verification.miou_drop})
                print(f"{count:>4} {fmt:<12} {method:<10} mIoU {100 * f.verification.miou:.2f}% "
                      f"agreement {100 * f.verification.agreement:.2f}%", flush=True)
    machine = machine_info()
    doc = {"machine": machine, "threads": default_threads(), "checkpoint": str(args.checkpoint),
           "per_tensor": args.per_tensor, "verify_images": len(vx), "keras_float_miou": keras_miou,
           "results": results}
    head = " | ".join(f"{fmt.split('_')[0]} {method}" for fmt, method in METHODS)
    lines = [f"# Calibration sweep: {Path(args.checkpoint).parent.name}", "",
             f"**{machine_summary(machine, threads=default_threads())}**", "",
             f"{args.checkpoint} at {size[0]}x{size[1]}, weights {'per tensor' if args.per_tensor else 'per channel'}; "
             f"Keras float mIoU {100 * keras_miou:.2f}% on {len(vx)} held-out images. Cells: mIoU drop against float "
             "in points (agreement with Keras %).", "", f"| images | {head} |",
             "|---:|" + "---:|" * len(METHODS)]
    for count in counts:
        cells = []
        for fmt, method in METHODS:
            r = next(r for r in results if r["count"] == count and r["format"] == fmt and r["method"] == method)
            cells.append(f"{r['miou_drop']:+.2f} ({100 * r['agreement']:.2f})")
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    write_record(Path(args.out) / args.stem, doc, lines)
    _plot(results, counts, keras_miou, Path(args.out) / f"{args.stem}.png")
    return 0


def _plot(results: list[dict], counts: list[int], keras_miou: float, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from deeplab_edge.benchmarks.plots import _save

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for fmt, method in METHODS:
        ys = [100 * next(r["miou"] for r in results if r["count"] == c and r["format"] == fmt and r["method"] == method)
              for c in counts]
        ax.plot(counts, ys, marker="o", label=f"{fmt} {method}")
    ax.axhline(100 * keras_miou, color="k", lw=1, ls="--", label="Keras float")
    ax.set_xscale("log")
    ax.set_xlabel("calibration images")
    ax.set_ylabel("mIoU %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
