"""ONNX int8 per `--target`: mIoU and p50 of each target's defaults, on this host and on Arm kernels.

`python benchmarks/experiments/onnx_targets.py CHECKPOINT --out DIR [--data DIR] [--eval-images 100]
[--threads 2] [--name NAME] [--no-arm]` exports onnx_int8 for each target (arm64, x86-vnni, x86-avx2) plus the x86-vnni settings as
QOperator, verifies each on the held-out images with this machine's onnxruntime kernels, verifies the
arm64 file again under qemu aarch64 with the Arm kernels (the aarch64 runtime; `--no-arm` skips it), and
times every file on this machine in interleaved rounds (p50 of the round medians, same threads and input).
Writes OUT/NAME.json and OUT/NAME.md (NAME: onnx_targets) beside the machine summary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary

VARIANTS = (("arm64", {}), ("x86-vnni", {}), ("x86-avx2", {}), ("x86-vnni", {"quant_format": "qoperator"}))


def _rounds_p50(paths: list[Path], threads: int, rounds: int = 12, runs: int = 60) -> list[float]:
    """p50 (ms) per file: the median of per-round p50s, rounds interleaved in alternating order (ABBA)."""
    from deeplab_edge.export.keep_float import p50_ms

    per: list[list[float]] = [[] for _ in paths]
    for r in range(rounds):
        order = range(len(paths)) if r % 2 == 0 else reversed(range(len(paths)))
        for i in order:
            per[i].append(p50_ms(paths[i], runs=runs, num_threads=threads))
    return [statistics.median(v) for v in per]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=None, help="dataset folder (default: the one the checkpoint was trained on)")
    ap.add_argument("--eval-images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="onnx_targets", help="record stem")
    ap.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    ap.add_argument("--no-arm", action="store_true", help="skip the qemu aarch64 verification")
    args = ap.parse_args(argv)

    from deeplab_edge.export import export_checkpoint

    rows, files = [], []
    with tempfile.TemporaryDirectory(prefix="onnx-targets-") as tmp:
        for i, (target, extra) in enumerate(VARIANTS):
            arm = target == "arm64" and not args.no_arm
            report = export_checkpoint(args.checkpoint, Path(tmp) / f"v{i}", formats=["onnx_fp32", "onnx_int8"],
                                       data=args.data, eval_images=args.eval_images, target=target,
                                       verify_on_target=arm or None, num_threads=args.threads,
                                       progress=lambda m, t=target: print(f"[{t}] {m}", flush=True), **extra)
            fp32, int8 = report.files
            q = int8.quantization
            tv = q.get("target_verification")
            rows.append({"target": target, "quant_format": q["quant_format"], "reduce_range": q["reduce_range"],
                         "activation_type": q["activation_type"], "keras_miou": int8.verification.keras_miou,
                         "fp32_miou": fp32.verification.miou, "int8_miou": int8.verification.miou,
                         "int8_agreement": int8.verification.agreement, "verified_with": q["verified_with"],
                         "arm_miou": tv["miou"] if tv else None, "arm_agreement": tv["agreement"] if tv else None,
                         "size_mb": int8.size_bytes / 1e6})
            files.append(int8.path)
            if i == 0:
                files.append(fp32.path)
        p50 = _rounds_p50(files, args.threads)
    fp32_p50 = p50.pop(1)
    for row, ms in zip(rows, p50, strict=True):
        row["host_p50_ms"] = ms
    machine = machine_info()
    doc = {"machine": machine, "checkpoint": str(args.checkpoint), "data": args.data, "threads": args.threads,
           "eval_images": args.eval_images, "onnx_fp32_p50_ms": fp32_p50, "rows": rows}
    lines = [f"**{machine_summary(machine, threads=args.threads)}**", "",
             f"`{args.checkpoint}` on {args.data or 'its training dataset'}, {args.eval_images} held-out images; "
             f"onnx_fp32 p50 {fp32_p50:.2f} ms, Keras mIoU {100 * rows[0]['keras_miou']:.1f}%. p50: this machine, "
             "interleaved rounds (median of 12 round p50s of 60 runs, ABBA order). Arm mIoU: the same file through the aarch64 "
             "runtime under qemu (cortex-a76), the Arm kernels of onnxruntime.", "",
             "| target | format | weights | activations | mIoU here | agreement here | mIoU on Arm kernels | "
             "p50 here ms | size MB |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        arm = "–" if r["arm_miou"] is None else f"{100 * r['arm_miou']:.1f}"
        lines.append(f"| {r['target']} | {r['quant_format']} | {'7' if r['reduce_range'] else '8'}-bit | "
                     f"{r['activation_type']} | {100 * r['int8_miou']:.1f} | {100 * r['int8_agreement']:.2f}% | {arm} | "
                     f"{r['host_p50_ms']:.2f} | {r['size_mb']:.2f} |")
    write_record(Path(args.out) / args.name, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
