"""What brings an int8 file back to float accuracy when plain post-training quantisation does not?

`python benchmarks/experiments/quant_remedies.py CHECKPOINT --out DIR [--qat QAT.h5] [--data DIR] [--per-tensor]
[--verify-images N] [--stem NAME]`

Exports CHECKPOINT (a float checkpoint) side by side, in one run on one machine: float32 (TFLite, ONNX),
post-training int8 with min/max calibration (TFLite, ONNX) and with onnxruntime's percentile and entropy
calibrators, TFLite 16x8, `--auto-keep-float` at a 0.5 point budget (TFLite, ONNX), and, when `--qat` names
the weights of `deeplab-edge train --qat-from CHECKPOINT`, the QAT tflite_int8 file. `--per-tensor`
quantises int8 weights with one scale per tensor (what some accelerators need) instead of per channel (the
16x8 row keeps per-channel weights: TFLite's 16x8 converter fails on per-tensor depthwise weights).
Every row: mIoU on the same held-out images at the model's size, the drop against the float Keras
model, argmax agreement with it, and inference p50 in one process with the default thread count.
Writes OUT/STEM.json and OUT/STEM.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from deeplab_edge.benchmarks.quant_study import export_one, load_study, study_images, study_parser
from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary

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


def main(argv: list[str] | None = None) -> int:
    from deeplab_edge.export.keep_float import p50_ms
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.runtime.backends import default_threads

    ap = study_parser(__doc__, "quant-remedies")
    ap.add_argument("--qat", help="best_qat.h5 of `deeplab-edge train --qat-from CHECKPOINT`")
    args = ap.parse_args(argv)

    model, info, ds, spec = load_study(args.checkpoint, args.data)
    calibration, vx, vy = study_images(model, ds, spec, None, args.verify_images)
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
