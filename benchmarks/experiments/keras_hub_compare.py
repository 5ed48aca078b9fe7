"""keras-hub's DeepLabV3+ beside ours, and Keras 3's own exporter beside deeplab-edge's.

`python benchmarks/experiments/keras_hub_compare.py --out DIR [--size 256] [--threads 2] [--min-time 2] [--stem NAME]`

keras-hub's `DeepLabV3ImageSegmenter` (ResNet50 backbone, ASPP on P5 at rates 6/12/18, P2 skip, random
weights, an ImageNet-normalising image converter) and our `resnet50` preset, both at `--size` px and the
demo set's class count: parameters, GMACs (the tflite_fp32 file's conv ops for both), Keras latency (a
tf.function on one image), TFLite fp32/int8 and ONNX fp32/int8 latency and file sizes, every file written
by `export_all` (calibrated on 32 demo-set images; random weights, so the int8 verification is not a
statement about accuracy). Then keras-hub's model through Keras 3's own `model.export(format="litert"|"onnx")`,
with its default (dynamic) signature and with a static one: whether it converts, and its files' latency.
Writes OUT/STEM.json and OUT/STEM.md (STEM: DATE-keras-hub).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path

import numpy as np

from deeplab_edge.benchmarks.timing import predictor_p50_ms, time_callable, time_files


def _p50_keras(model, size: tuple[int, int], min_time_s: float) -> float:
    from deeplab_edge.model._keras import tf

    fn = tf.function(lambda x: model(x, training=False))
    x = tf.constant(np.random.default_rng(0).normal(size=(1, *size, 3)).astype(np.float32))
    fn(x)
    return float(np.median(time_callable(lambda: fn(x).numpy(), warmup=3, min_runs=10, min_time_s=min_time_s))) / 1e6


def _export(model, info, ds, out: Path, spec=None) -> dict:
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all

    fmts = ["tflite_fp32", "tflite_int8", "onnx_fp32", "onnx_int8"]
    size = tuple(model.input_shape[1:3])
    mean, std = (spec.mean, spec.std) if spec is not None else (info.mean, info.std)
    calib, vx, vy = calibration_and_verification(ds, size, resolve_formats(fmts), 32, 8, mean, std)
    t0 = time.perf_counter()
    rep = export_all(model, info, out, name="m", formats=fmts, calibration=calib, verify_images=vx, verify_masks=vy,
                     force=True, spec=spec, progress=lambda m: print(f"  [export] {m}", flush=True))
    return {"files": {f.format: f for f in rep.files}, "model": rep.model, "seconds": time.perf_counter() - t0}


def _keras3_export(model, out: Path, fmt: str, size: int | None) -> dict:
    """Keras 3's own exporter on `model`: dynamic signature (size None) or a static one."""
    import tensorflow as tf

    kw = {}
    if size is not None:
        kw["input_signature"] = [tf.TensorSpec((1, size, size, 3), tf.float32, name="images")]
    path = out / f"keras3_{'static' if size else 'dynamic'}.{ 'tflite' if fmt == 'litert' else 'onnx'}"
    t0 = time.perf_counter()
    try:
        model.export(str(path), format=fmt, verbose=False, **kw)
    except Exception as e:  # what Keras itself raises is the result here
        return {"format": fmt, "signature": "static" if size else "dynamic (default)", "ok": False,
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}",
                "trace_tail": traceback.format_exc().strip().splitlines()[-1][:300]}
    return {"format": fmt, "signature": "static" if size else "dynamic (default)", "ok": path.is_file(),
            "file": str(path), "size_mb": path.stat().st_size / 2**20 if path.is_file() else None,
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    p.add_argument("--stem", default=f"{date.today().isoformat()}-keras-hub", help="record name (default: DATE-keras-hub)")
    a = p.parse_args(argv)

    import keras_hub

    from deeplab_edge.benchmarks.report import write_record
    from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary
    from deeplab_edge.export.spec import model_spec
    from deeplab_edge.model.checkpoint import ModelInfo, load_checkpoint
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.flops import model_cost
    from deeplab_edge.model.keras_hub_deeplab import hub_segmenter
    from deeplab_edge.model.presets import get_preset

    ds = open_dataset(None)
    size = (a.size, a.size)
    rows, keras3 = [], []
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-hub-") as tmp:
        tmp = Path(tmp)
        # keras-hub's segmenter, saved and loaded back as a user's file would be
        hub = hub_segmenter(keras_hub, a.size, ds.num_classes, resnet50=True)
        hub_path = tmp / "deeplabv3_resnet50.keras"
        hub.save(hub_path)
        wrapped, _ = load_checkpoint(hub_path)
        spec = model_spec(wrapped, None, ds, checkpoint=hub_path)
        print("== keras-hub DeepLabV3ImageSegmenter (ResNet50): exporting", flush=True)
        hub_exp = _export(wrapped, None, ds, tmp / "hub", spec)
        preset = get_preset("resnet50")
        cfg = preset.config.replace(num_classes=ds.num_classes, input_size=size)
        ours = build_deeplabv3plus(cfg)
        info = ModelInfo(config=cfg, class_names=tuple(ds.class_names), preset="resnet50", mean=preset.mean,
                         std=preset.std)
        print("== deeplab-edge resnet50 preset: exporting", flush=True)
        our_exp = _export(ours, info, ds, tmp / "ours")
        from deeplab_edge.export.tflite import tflite_cost

        for name, model, exp, params in (
                ("keras-hub DeepLabV3ImageSegmenter (ResNet50)", wrapped, hub_exp, int(hub.count_params())),
                ("deeplab-edge resnet50 preset", ours, our_exp, model_cost(ours).params)):
            files = exp["files"]
            times = time_files({k: f.path for k, f in files.items()}, a.threads, a.min_time)
            rows.append({"model": name, "params": params, "macs": tflite_cost(files["tflite_fp32"].path).macs,
                         "keras_p50_ms": _p50_keras(model, size, a.min_time), "export_seconds": exp["seconds"],
                         **{f"{k}_p50_ms": v for k, v in times.items()},
                         **{f"{k}_mb": f.size_bytes / 2**20 for k, f in files.items()},
                         "verification": {k: f.verification.figure for k, f in files.items()}})
            print(json.dumps(rows[-1]), flush=True)
        # Keras 3's own exporter on the same keras-hub model
        for fmt in ("litert", "onnx"):
            for s in (None, a.size):
                r = _keras3_export(hub, tmp, fmt, s)
                if r["ok"]:
                    from deeplab_edge.runtime.predictor import load_predictor

                    pred = load_predictor(r["file"], num_threads=a.threads, mean=spec.mean, std=spec.std,
                                          input_size=size)
                    r["p50_ms"] = predictor_p50_ms(pred, a.min_time)
                    r["has_metadata"] = pred.backend.metadata is not None
                keras3.append(r)
                print(json.dumps(r), flush=True)
    machine = machine_info()
    doc = {"date": date.today().isoformat(), "machine": machine, "threads": a.threads, "size": a.size,
           "classes": ds.num_classes, "rows": rows, "keras3_export": keras3}
    lines = [f"# keras-hub DeepLabV3+ beside deeplab-edge's resnet50, and Keras 3's exporter ({doc['date']})", "",
             f"**{machine_summary(machine, threads=a.threads)}**", "",
             f"Both at {a.size}x{a.size}, {ds.num_classes} classes (the demo set), random weights; batch 1, p50 of "
             f"the interpreter/session run (inference only), {a.threads} threads. GMACs counted in each model's "
             "tflite_fp32 file (conv, depthwise, transposed conv, dense). int8 files calibrated on 32 demo-set images "
             "by `deeplab-edge export`; with random weights their verification says nothing about accuracy.", "",
             "| model | params | GMACs | Keras ms | TFLite fp32 ms | TFLite int8 ms | ORT fp32 ms | ORT int8 ms | "
             "fp32 .tflite MB | int8 .tflite MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.1f} M | {r['macs'] / 1e9:.1f} | {r['keras_p50_ms']:.0f} | "
                     f"{r['tflite_fp32_p50_ms']:.0f} | {r['tflite_int8_p50_ms']:.0f} | {r['onnx_fp32_p50_ms']:.0f} | "
                     f"{r['onnx_int8_p50_ms']:.0f} | {r['tflite_fp32_mb']:.1f} | {r['tflite_int8_mb']:.1f} |")
    lines += ["", "Keras 3's own `model.export` on the keras-hub model:", "",
              "| format | signature | converts | file MB | p50 ms | metadata |", "|---|---|---|---:|---:|---|"]
    for r in keras3:
        lines.append(f"| {r['format']} | {r['signature']} | {'yes' if r['ok'] else 'no: ' + r['error']} | "
                     f"{r.get('size_mb') or 0:.1f} | {r.get('p50_ms', float('nan')):.0f} | "
                     f"{'yes' if r.get('has_metadata') else 'none'} |")
    write_record(Path(a.out) / a.stem, doc, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
