"""Where should the logits be upsampled? In the file (bilinear, to the input size) or after it, by the runtime?

`python benchmarks/experiments/stride_compare.py FULL STRIDE --out DIR [--data DIR] [--eval-images N]`
takes the same model exported twice (`--logits-at input` and `--logits-at stride`) and reports, on the
validation images and on the real photos at their own size: mIoU, inference p50, post-processing p50
(labels from the raw output + one resize to the image) and end to end, for
- FULL: logits upsampled bilinearly inside the file, argmax at the input size, one nearest resize;
- STRIDE, upsample="labels": argmax at the output's resolution (input / 4), one nearest resize;
- STRIDE, upsample="scores": scores upsampled bilinearly to the input size by the runtime, then argmax.
Writes OUT/stride.json and OUT/stride.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deeplab_edge.benchmarks import latency_stats, time_callable
from deeplab_edge.benchmarks.evalset import load_eval
from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary
from deeplab_edge.benchmarks.timing import time_predictor_stages
from deeplab_edge.metrics import segmentation_metrics
from deeplab_edge.runtime import load_predictor


def _measure(pred, images, masks, num_classes: int, photo: np.ndarray) -> dict:
    labels = np.stack(pred.predict(list(images)))
    miou = segmentation_metrics(masks, labels, num_classes).miou
    x, _ = pred.prepare([images[0]])
    x = x.copy()
    infer = latency_stats(time_callable(lambda: pred.run(x), warmup=5, min_runs=50, min_time_s=1.0))
    out = {"miou": miou, "infer_p50_ms": infer.p50_ms, "labels": labels}
    for name, img in (("eval", images[0]), ("photo", photo)):
        st = time_predictor_stages(pred, img, warmup=3, min_runs=30, min_time_s=0.5)
        out[f"{name}_pre_ms"], out[f"{name}_post_ms"] = st.pre_ms, st.post_ms
    return out


def main(argv: list[str] | None = None) -> int:
    from deeplab_edge.model.data import open_dataset, read_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("full", help="the file with logits at the input size")
    ap.add_argument("stride", help="the same model exported with --logits-at stride")
    ap.add_argument("--data", help="dataset (default: the built-in demo set)")
    ap.add_argument("--eval-images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True, help="folder for stride.json / stride.md (e.g. benchmarks/results)")
    args = ap.parse_args(argv)
    full = load_predictor(args.full, num_threads=args.threads)
    ds = open_dataset(args.data)
    images, masks, photo = load_eval(ds, full.input_size, args.eval_images)
    photos = sorted((ds.root / "photos").glob("*.jpg")) if (ds.root / "photos").is_dir() else []
    photo = read_image(photos[0]) if photos else photo
    rows = {"in-file bilinear (--logits-at input)": _measure(full, images, masks, ds.num_classes, photo)}
    for mode in ("labels", "scores"):
        pred = load_predictor(args.stride, num_threads=args.threads, upsample=mode)
        rows[f"stride 4, runtime upsamples {mode}"] = _measure(pred, images, masks, ds.num_classes, photo)
    ref = rows["in-file bilinear (--logits-at input)"]["labels"]
    for r in rows.values():
        r["agreement_with_in_file"] = float(np.mean(r.pop("labels") == ref))
    machine = machine_info()
    threads = full.backend.num_threads
    doc = {"machine": machine, "threads": threads, "full": args.full, "stride": args.stride,
           "eval_images": len(images), "photo_size": list(photo.shape[:2]), "rows": rows}
    lines = [f"**{machine_summary(machine, threads=threads)}**", "",
             f"{Path(args.full).name} vs {Path(args.stride).name}; mIoU on {len(images)} validation images at "
             f"{images.shape[1]}x{images.shape[2]}; pre/post p50 on one validation image and on a "
             f"{photo.shape[0]}x{photo.shape[1]} photo.", "",
             "| variant | mIoU % | agreement with in-file % | inference p50 ms | pre ms (eval / photo) | "
             "post ms (eval / photo) | end to end ms (photo) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        e2e = r["photo_pre_ms"] + r["infer_p50_ms"] + r["photo_post_ms"]
        lines.append(f"| {name} | {100 * r['miou']:.2f} | {100 * r['agreement_with_in_file']:.2f} | "
                     f"{r['infer_p50_ms']:.3f} | {r['eval_pre_ms']:.3f} / {r['photo_pre_ms']:.3f} | "
                     f"{r['eval_post_ms']:.3f} / {r['photo_post_ms']:.3f} | {e2e:.3f} |")
    write_record(Path(args.out) / "stride", doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
