"""Reproduce the architecture and preset tables:
`python benchmarks/experiments/variants.py --out DIR [--train-images 3072] [--threads 2] [--min-time 2]
[--only NAME...] [--stem NAME]`.

variants: edge design choices (plain vs separable ASPP/decoder, folded vs not, two widths, two
input sizes), each trained with the same number of training images on the built-in dataset, then
exported (TFLite fp32/int8, ONNX fp32/int8) and timed side by side in one run.
Results are written as OUT/STEM.md and OUT/STEM.json (STEM: DATE-variants) with the machine, ISA flags,
threads and versions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from deeplab_edge.benchmarks.timing import time_files


@dataclass(frozen=True)
class Variant:
    name: str
    changes: dict
    train: bool = True  # False: same weights as `weights_from`, only the graph differs
    weights_from: str | None = None


VARIANTS = (
    Variant("plain-256w-128px", {"separable": False, "width": 256, "input_size": (128, 128)}),
    Variant("sep-256w-128px", {"separable": True, "width": 256, "input_size": (128, 128)}),
    Variant("sep-128w-128px", {"separable": True, "width": 128, "input_size": (128, 128)}),
    Variant("sep-128w-128px-unfolded", {"separable": True, "width": 128, "input_size": (128, 128),
                                         "fold_atrous": False}, train=False, weights_from="sep-128w-128px"),
    Variant("sep-128w-256px (edge)", {"separable": True, "width": 128, "input_size": (256, 256)}),
    Variant("plain-256w-256px", {"separable": False, "width": 256, "input_size": (256, 256)}),
)


def export_four(model, info, out: Path, ds, calib_count: int = 64) -> tuple[dict, dict]:
    """The four files of `model` as it is (no rebuild: `info` is only the classes and normalisation)."""
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.spec import ModelSpec

    fmts = ["tflite_fp32", "tflite_int8", "onnx_fp32", "onnx_int8"]
    size = tuple(model.input_shape[1:3])
    calib, vx, vy = calibration_and_verification(ds, size, resolve_formats(fmts), calib_count, 50, info.mean,
                                                 info.std)
    spec = ModelSpec(tuple(info.class_names), tuple(info.mean), tuple(info.std), "logits", len(info.class_names))
    rep = export_all(model, None, out, name="m", formats=fmts, calibration=calib, verify_images=vx, verify_masks=vy,
                     force=True, spec=spec, progress=lambda m: None)
    return {f.format: f.path for f in rep.files}, {f.format: f.verification for f in rep.files}


def run_variants(out_md: Path, *, train_images: int, threads: int, min_time_s: float, only: list[str] | None) -> dict:
    from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary
    from deeplab_edge.model.checkpoint import ModelInfo, load_checkpoint
    from deeplab_edge.model.data import open_dataset
    from deeplab_edge.model.deeplab import build_deeplabv3plus, rebuild
    from deeplab_edge.model.flops import model_cost
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.model.train import TrainSettings, train

    ds = open_dataset(None)
    base = get_preset("edge").config.replace(num_classes=ds.num_classes)
    rows, trained = [], {}
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-variants-") as tmp:
        for v in VARIANTS:
            if only and v.name not in only and not any(w.weights_from == v.name for w in VARIANTS if w.name in only):
                continue
            cfg = base.replace(**v.changes)
            print(f"== {v.name}: {json.dumps(cfg.to_dict())}", flush=True)
            run_dir = Path(tmp) / v.name.replace(" ", "_")
            row = {"variant": v.name, "config": cfg.to_dict()}
            if v.train:
                bs = 16
                steps = max(1, train_images // bs)
                epochs = 3
                t0 = time.perf_counter()
                res = train(cfg, ds, run_dir, TrainSettings(epochs=epochs, batch_size=bs,
                                                            steps_per_epoch=max(1, steps // epochs), verbose=0,
                                                            learning_rate=3e-3), preset="edge")
                row.update(train_images=steps // epochs * epochs * bs, train_s=time.perf_counter() - t0,
                           train_img_per_s=res.images_per_second, val_miou=res.best_val_miou)
                model, info = load_checkpoint(res.best_checkpoint)
                trained[v.name] = (model, info)
            else:
                src_model, src_info = trained[v.weights_from]
                model = rebuild(src_model, src_info.config, **v.changes)
                info = ModelInfo(config=cfg, class_names=src_info.class_names, preset="edge")
                row.update(train_images=None, val_miou=None, note=f"weights of {v.weights_from}")
            # Export as built: `export_graph` would fold; keep this variant's own fold setting.
            cost = model_cost(build_deeplabv3plus(cfg))
            row.update(params=cost.params, macs=cost.macs)
            files, ver = _export_as_is(model, cfg, info, Path(tmp) / (v.name.replace(" ", "_") + "_x"), ds)
            row.update({f"{k}_p50_ms": ms for k, ms in time_files(files, threads, min_time_s).items()})
            row.update({f"{k}_miou": ver[k].miou for k in ver})
            from deeplab_edge.export.tflite import op_histogram

            row["tflite_fp32_ops"] = op_histogram(files["tflite_fp32"])
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("config", "tflite_fp32_ops")}), flush=True)
    info = machine_info()
    result = {"date": date.today().isoformat(), "machine": info, "threads": threads, "train_images": train_images,
              "rows": rows}
    lines = [f"# Edge variants ({result['date']})", "",
             f"Machine: {machine_summary(info, threads=threads)}.  ",
             f"Each trained variant saw the same {train_images} training images (3 epochs, batch 16, AdamW 3e-3 "
             "cosine, BN recalibration) on the built-in demo dataset; mIoU on 50 validation images at the variant's "
             "input size. Latency: p50 of the interpreter/session run at batch 1, "
             f"{threads} threads, monotonic clock.", "",
             "| variant | params | GMACs | TFLite fp32 ms | TFLite int8 ms | int8 speed-up | ORT fp32 ms | ORT int8 ms "
             "| val mIoU (Keras) | mIoU fp32 / int8 TFLite | SPACE_TO_BATCH in fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(k, scale=1.0, fmt="{:.2f}", r=r):
            return fmt.format(r[k] * scale) if r.get(k) is not None else "n/a"
        sp = r["tflite_fp32_p50_ms"] / r["tflite_int8_p50_ms"]
        lines.append(f"| {r['variant']} | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.3f} | {f('tflite_fp32_p50_ms')} | "
                     f"{f('tflite_int8_p50_ms')} | {sp:.2f}x | {f('onnx_fp32_p50_ms')} | {f('onnx_int8_p50_ms')} | "
                     f"{f('val_miou', 100, '{:.1f}%')} | {f('tflite_fp32_miou', 100, '{:.1f}')} / "
                     f"{f('tflite_int8_miou', 100, '{:.1f}')} | {r['tflite_fp32_ops'].get('SPACE_TO_BATCH_ND', 0)} |")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    from deeplab_edge.fileio import write_text_atomic

    write_text_atomic(out_md, "\n".join(lines) + "\n")
    write_text_atomic(out_md.with_suffix(".json"), json.dumps(result, indent=2, default=str))
    print("\n".join(lines))
    return result


def _export_as_is(model, cfg, info, out: Path, ds):
    """Export with this variant's own graph settings: `export_all` rebuilds folded when given a
    ModelInfo, so the graph is rebuilt here with the variant's config and passed without one."""
    from deeplab_edge.model.deeplab import rebuild

    graph = rebuild(model, info.config, fold_atrous=cfg.fold_atrous, native_dilation=True)
    return export_four(graph, info, out, ds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    p.add_argument("--stem", default=f"{date.today().isoformat()}-variants", help="record name (default: DATE-variants)")
    p.add_argument("--train-images", type=int, default=3072, help="training images per variant (default 3072)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--only", nargs="*", help="variant names to run")
    a = p.parse_args(argv)
    run_variants(Path(a.out) / f"{a.stem}.md", train_images=a.train_images, threads=a.threads, min_time_s=a.min_time, only=a.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
