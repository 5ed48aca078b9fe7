"""What brings an int8 file back to float accuracy when plain post-training quantisation does not?

`python -m deeplab_edge.benchmarks.quant_remedies CHECKPOINT [--qat QAT.h5] [--data DIR] [--per-tensor]
[--verify-images N] [--out DIR] [--stem NAME]`

Exports CHECKPOINT (a float checkpoint) side by side, in one run on one machine: float32 (TFLite, ONNX),
post-training int8 with min/max calibration (TFLite, ONNX) and with onnxruntime's percentile and entropy
calibrators, TFLite 16x8, `--auto-keep-float` at a 0.5 point budget (TFLite, ONNX), and, when `--qat` names
the weights of `deeplab-edge train --qat-from CHECKPOINT`, the QAT tflite_int8 file. `--per-tensor`
quantises int8 weights with one scale per tensor (what some accelerators need) instead of per channel (the
16x8 row keeps per-channel weights: TFLite's 16x8 converter fails on per-tensor depthwise weights).
Every row: mIoU on the same held-out images at the model's size, the drop against the float Keras
model, argmax agreement with it, and inference p50 in one process with the default thread count.
Writes STEM.json and STEM.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .report import write_record
from .sysinfo import machine_info, machine_summary

BUDGET = 0.5  # mIoU points: the auto keep-float rows' budget


def rows_spec(per_tensor: bool) -> list[tuple[str, list[str], dict, float | None]]:
    """(row name, formats, export options, auto keep-float budget or None)."""
    pc = {"per_channel": False} if per_tensor else {}
    return [
        ("float32 (TFLite)", ["tflite_fp32"], {}, None),
        ("float32 (ONNX)", ["onnx_fp32"], {}, None),
        ("PTQ int8, min/max (TFLite)", ["tflite_int8"], pc, None),
        ("PTQ int8, min/max (ONNX)", ["onnx_int8"], pc, None),
        ("PTQ int8, percentile (ONNX)", ["onnx_int8"], {**pc, "calibration_method": "percentile"}, None),
        ("PTQ int8, entropy (ONNX)", ["onnx_int8"], {**pc, "calibration_method": "entropy"}, None),
        ("16x8: int16 activations, int8 weights per channel (TFLite)", ["tflite_int16x8"], {}, None),
        (f"auto keep-float, budget {BUDGET} pt (TFLite)", ["tflite_int8"], {**pc, "auto_keep_float": True}, BUDGET),
        (f"auto keep-float, budget {BUDGET} pt (ONNX)", ["onnx_int8"], {**pc, "auto_keep_float": True}, BUDGET),
    ]


def parser(doc: str, stem: str) -> argparse.ArgumentParser:
    """The arguments this script and calibration_sweep share: a float checkpoint and where to write."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("checkpoint", help="the float checkpoint")
    ap.add_argument("--data", help="dataset (default: the one the checkpoint was trained on)")
    ap.add_argument("--per-tensor", action="store_true", help="int8 weights with one scale per tensor")
    ap.add_argument("--verify-images", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--stem", default=stem)
    return ap


def load_model(args):
    """(model, info, dataset, spec) of `parser`'s checkpoint and dataset."""
    from deeplab_edge.export.pipeline import load_for_export
    from deeplab_edge.export.spec import model_spec

    model, info, ds, _ = load_for_export(args.checkpoint, args.data, None)
    return model, info, ds, model_spec(model, info, ds, checkpoint=args.checkpoint)


def load_images(model, ds, spec, args, calibration_count: int | None):
    """(calibration, verify images, verify masks): `calibration_count` training images (None: min(200,
    available)) and `--verify-images` held-out ones, normalised as the model's spec says."""
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats

    return calibration_and_verification(ds, tuple(model.input_shape[1:3]), resolve_formats(["tflite_int8"]),
                                        calibration_count, args.verify_images, spec.mean, spec.std)


def export_one(model, info, fmt: str, options: dict, calibration, vx, vy, spec, out: Path, *,
               budget: float | None = None, checkpoint=None):
    """One verified file (`export_all`), judged by numbers only: the pass limits are wide open except
    the auto keep-float budget."""
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.verify import Thresholds

    return export_all(model, info, out, name="m", formats=[fmt], options=options, calibration=calibration,
                      verify_images=vx, verify_masks=vy, spec=spec, checkpoint=checkpoint, progress=lambda m: None,
                      thresholds=Thresholds(max_miou_drop=budget if budget is not None else 100.0, min_agreement=0.0))


def main(argv: list[str] | None = None) -> int:
    from deeplab_edge.export.keep_float import p50_ms
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.runtime.backends import default_threads

    ap = parser(__doc__, "quant-remedies")
    ap.add_argument("--qat", help="best_qat.h5 of `deeplab-edge train --qat-from CHECKPOINT`")
    args = ap.parse_args(argv)

    model, info, ds, spec = load_model(args)
    calibration, vx, vy = load_images(model, ds, spec, args, None)
    size = tuple(model.input_shape[1:3])
    threads = default_threads()
    rows = []
    keras_miou = None
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-remedies-") as tmp:
        plan = rows_spec(args.per_tensor)
        if args.qat:
            plan.append(("QAT int8 (TFLite)", ["tflite_int8"], {}, None))
        for i, (name, formats, options, budget) in enumerate(plan):
            print(f"[{i + 1}/{len(plan)}] {name}", flush=True)
            qat = name.startswith("QAT")
            m, mi = load_checkpoint(args.qat) if qat else (model, info)
            report = export_one(m, mi, formats[0], options, calibration, vx, vy, spec, Path(tmp) / str(i),
                                budget=budget, checkpoint=args.qat if qat else args.checkpoint)
            (f,) = report.files
            if not qat:
                keras_miou = report.model["keras_miou"]
            v = f.verification
            row = {"row": name, "format": f.format, "options": {k: v_ for k, v_ in options.items()},
                   "miou": v.miou, "agreement_with_own_keras": v.agreement, "p50_ms": p50_ms(f.path, runs=100),
                   "size_bytes": f.size_bytes, "ops": f.ops}
            if f.fallback is not None:
                row["keep_float"] = f.fallback.to_dict()
            if qat:
                row["qat_keras_miou"] = report.model["keras_miou"]
            rows.append(row)
            print(f"    mIoU {100 * v.miou:.2f}%  p50 {row['p50_ms']:.2f} ms", flush=True)
    for row in rows:
        row["miou_drop_vs_float"] = 100 * (keras_miou - row["miou"])
    machine = machine_info()
    doc = {"machine": machine, "threads": threads, "checkpoint": str(args.checkpoint), "qat": args.qat,
           "per_tensor": args.per_tensor, "input_size": list(size), "verify_images": len(vx),
           "calibration": calibration.source, "keras_float_miou": keras_miou, "rows": rows}
    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("versions") or {}).items() if v)
    lines = [f"# Quantisation remedies: {Path(args.checkpoint).parent.name}", "",
             f"**{machine_summary(machine, threads=threads)}**; int8 instructions: {machine['int8_isa']}", "",
             versions, "",
             f"{args.checkpoint} at {size[0]}x{size[1]}; weights {'per tensor' if args.per_tensor else 'per channel'}; "
             f"calibration: {calibration.source}; mIoU on {len(vx)} held-out images at the model's size; "
             f"Keras float mIoU {100 * keras_miou:.2f}%. p50: 100 runs after warm-up, batch 1, {threads} threads.",
             "", "| variant | mIoU % | drop vs float (pt) | p50 ms | size MB | kept float |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        kept = r.get("keep_float", {}).get("kept_float")
        lines.append(f"| {r['row']} | {100 * r['miou']:.2f} | {r['miou_drop_vs_float']:+.2f} | {r['p50_ms']:.2f} | "
                     f"{r['size_bytes'] / 1e6:.2f} | {'' if kept is None else len(kept)} |")
    write_record(Path(args.out) / args.stem, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
