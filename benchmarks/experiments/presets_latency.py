"""Latency of every preset at its own input size:
`python benchmarks/experiments/presets_latency.py --out DIR [--presets edge mobilenetv2 resnet50] [--threads 2]
[--min-time 2] [--stem NAME]`.

Random weights (latency does not depend on them; accuracy would mean nothing, so none is reported),
TFLite fp32 and int8 (calibrated on real demo-set images) and ONNX fp32 and int8, batch 1, p50 of the
interpreter/session run, side by side in one process. Writes OUT/STEM.md and OUT/STEM.json (STEM:
DATE-presets) with machine and versions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path


def run(out_md: Path, *, threads: int, min_time_s: float, presets: list[str]) -> dict:
    from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary
    from deeplab_edge.benchmarks.timing import time_files
    from deeplab_edge.export.calibration import Calibration
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.spec import ModelSpec
    from deeplab_edge.fileio import write_text_atomic
    from deeplab_edge.model.data import load_arrays, open_dataset
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.flops import model_cost
    from deeplab_edge.model.presets import get_preset

    ds = open_dataset(None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-presets-") as tmp:
        for name in presets:
            preset = get_preset(name)
            cfg = preset.config.replace(num_classes=ds.num_classes)
            model = build_deeplabv3plus(cfg)
            cost = model_cost(model)
            x, y = load_arrays(ds.val[:16], cfg.input_size, ds.num_classes)
            calib = Calibration(x, "16 demo validation images", preset.mean, preset.std)
            spec = ModelSpec(tuple(ds.class_names), preset.mean, preset.std, "logits", ds.num_classes)
            print(f"== {name}: exporting", flush=True)
            # Random weights: verification numbers are meaningless, so thresholds are not applied here.
            rep = export_all(model, None, Path(tmp) / name, name=name,
                             formats=["tflite_fp32", "tflite_int8", "onnx_fp32", "onnx_int8"], calibration=calib,
                             verify_images=x[:2], verify_masks=y[:2], spec=spec, progress=lambda m: None)
            times = time_files({f.format: f.path for f in rep.files}, threads, min_time_s)
            rows.append({"preset": name, "input_size": list(cfg.input_size), "params": cost.params, "macs": cost.macs,
                         "separable": cfg.separable, **{f"{k}_p50_ms": v for k, v in times.items()}})
            print(json.dumps(rows[-1]), flush=True)
    info = machine_info()
    result = {"date": date.today().isoformat(), "machine": info, "threads": threads, "rows": rows}
    lines = [f"# Preset latency ({result['date']})", "", f"Machine: {machine_summary(info, threads=threads)}.  ",
             "Random weights, batch 1, p50 of the interpreter/session run (inference only), "
             f"{threads} threads; int8 calibrated on 16 real images. Accuracy: see the demo report and the variants table.",
             "", "| preset | input | ASPP/decoder | params | GMACs | TFLite fp32 ms | TFLite int8 ms | ORT fp32 ms | "
             "ORT int8 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['input_size'][0]} | {'separable' if r['separable'] else 'plain 3x3'} | "
                     f"{r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.2f} | {r['tflite_fp32_p50_ms']:.1f} | "
                     f"{r['tflite_int8_p50_ms']:.1f} | {r['onnx_fp32_p50_ms']:.1f} | {r['onnx_int8_p50_ms']:.1f} |")
    write_text_atomic(out_md, "\n".join(lines) + "\n")
    write_text_atomic(out_md.with_suffix(".json"), json.dumps(result, indent=2, default=str))
    print("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    p.add_argument("--stem", default=f"{date.today().isoformat()}-presets", help="record name (default: DATE-presets)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--presets", nargs="+", default=["edge", "mobilenetv2", "resnet50"])
    a = p.parse_args(argv)
    run(Path(a.out) / f"{a.stem}.md", threads=a.threads, min_time_s=a.min_time, presets=a.presets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
