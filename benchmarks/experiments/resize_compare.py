"""Which resize should the runtime use? Pillow against OpenCV (and plain numpy) on real photos.

`python benchmarks/experiments/resize_compare.py --out DIR [--size 256]` times, per photo:
- pre: RGB uint8 photo -> model size (bilinear): Pillow (antialiased, as training), OpenCV INTER_LINEAR
  (no antialiasing) and INTER_AREA, and numpy index sampling (nearest);
- post: a label map at the decoder's stride (size / 4) -> the photo's size (nearest): Pillow, OpenCV, numpy;
and how far each pre-processing result lies from Pillow's (mean absolute difference in grey levels).
OpenCV is optional (`pip install opencv-python-headless`); without it only Pillow and numpy are timed.
Writes OUT/resize.json and OUT/resize.md beside the machine summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab_edge.benchmarks import latency_stats, time_callable
from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary


def _photos() -> list[tuple[str, np.ndarray]]:
    from deeplab_edge.model.demo_data import real_photos

    return sorted(real_photos().items())


def _methods(size: tuple[int, int]):
    h, w = size
    pre = {"pillow bilinear": lambda im: np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)),
           "numpy nearest": lambda im: im[(np.arange(h) * im.shape[0] // h)[:, None],
                                          (np.arange(w) * im.shape[1] // w)[None, :]]}
    post = {"pillow nearest": lambda lab, s: np.asarray(Image.fromarray(lab).resize((s[1], s[0]), Image.NEAREST)),
            "numpy nearest": lambda lab, s: lab[(np.arange(s[0]) * lab.shape[0] // s[0])[:, None],
                                                (np.arange(s[1]) * lab.shape[1] // s[1])[None, :]]}
    try:
        import cv2
    except ImportError:
        return pre, post, None
    cv2.setNumThreads(1)
    pre["opencv linear"] = lambda im: cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
    pre["opencv area"] = lambda im: cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
    post["opencv nearest"] = lambda lab, s: cv2.resize(lab, (s[1], s[0]), interpolation=cv2.INTER_NEAREST)
    return pre, post, cv2.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="model input size (square)")
    ap.add_argument("--out", required=True, help="folder for resize.json / resize.md (e.g. benchmarks/results)")
    args = ap.parse_args(argv)
    size = (args.size, args.size)
    pre, post, cv_version = _methods(size)
    rng = np.random.default_rng(0)
    rows = []
    for name, im in _photos():
        ref = pre["pillow bilinear"](im).astype(np.int16)
        lab = rng.integers(0, 13, (size[0] // 4, size[1] // 4), dtype=np.uint8)
        for kind, fns in (("pre", pre), ("post", post)):
            for method, fn in fns.items():
                call = (lambda f=fn, a=im: f(a)) if kind == "pre" else (lambda f=fn, a=lab, s=im.shape[:2]: f(a, s))
                stats = latency_stats(time_callable(call, warmup=3, min_runs=50, min_time_s=0.3))
                diff = float(np.abs(call().astype(np.int16) - ref).mean()) if kind == "pre" else None
                rows.append({"photo": name, "photo_size": list(im.shape[:2]), "stage": kind, "method": method,
                             "p50_ms": stats.p50_ms, "mean_abs_diff_vs_pillow": diff})
    machine = machine_info()
    doc = {"machine": machine, "model_size": list(size), "opencv": cv_version, "pillow": Image.__version__,
           "rows": rows}
    lines = [f"**{machine_summary(machine, threads=1)}**", "",
             f"Pillow {Image.__version__}, OpenCV {cv_version or 'not installed'}; model size {size[0]}x{size[1]}; "
             "p50 over >= 50 calls, one thread.", "",
             "| photo | size | stage | method | p50 ms | mean abs diff vs Pillow (grey levels) |", "|---|---|---|---|---:|---:|"]
    for r in rows:
        diff = "–" if r["mean_abs_diff_vs_pillow"] is None else f"{r['mean_abs_diff_vs_pillow']:.2f}"
        lines.append(f"| {r['photo']} | {r['photo_size'][0]}x{r['photo_size'][1]} | {r['stage']} | {r['method']} | "
                     f"{r['p50_ms']:.3f} | {diff} |")
    write_record(Path(args.out) / "resize", doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
