"""Training memory against dataset size, and training throughput, each run in its own process.

`python benchmarks/experiments/train_scaling.py --out DIR [--sizes 2000 8000] [--steps 30] [--throughput-steps 25]
[--label NAME] [--stem NAME] [-- extra train flags]`

Memory: folders of N training images (500x375 JPEGs, the PASCAL VOC size, plus 100 validation images)
are made from `--unique` demo-set compositions (hard links beyond them, so the disk holds only the unique
files; every file is still opened and decoded on its own). The edge preset at 128 px trains the same
number of steps on each, in a fresh process whose peak RSS (ru_maxrss, from wait4) is recorded.
Throughput: the edge preset at its own size (256 px) on the built-in demo set, batch 16; images/s over the
epochs after the first (the first includes tracing). The generated folders are a cache under --work
(default ~/.cache/deeplab-edge/train-scaling). Writes OUT/STEM.json and OUT/STEM.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary

VOC_SIZE = (500, 375)  # w, h


def make_folder(root: Path, n_train: int, unique: Path, n_unique: int) -> Path:
    """A VOC-layout folder of n_train + 100 pairs; file i is a hard link to unique pair i % n_unique."""
    if (root / "class_names.txt").exists():
        return root
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = {"train": [f"t{i:06d}" for i in range(n_train)], "val": [f"v{i:04d}" for i in range(100)]}
    for split, names in stems.items():
        for i, stem in enumerate(names):
            src = f"u{(i if split == 'train' else n_unique - 1 - i) % n_unique:05d}"
            os.link(unique / "JPEGImages" / f"{src}.jpg", root / "JPEGImages" / f"{stem}.jpg")
            os.link(unique / "SegmentationClass" / f"{src}.png", root / "SegmentationClass" / f"{stem}.png")
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (root / "class_names.txt").write_bytes((unique / "class_names.txt").read_bytes())
    return root


def make_unique(root: Path, n: int) -> Path:
    """n demo compositions at 384 px, resized to 500x375 (image bilinear, mask nearest)."""
    from PIL import Image

    from deeplab_edge.model.demo_data import demo_dataset

    if (root / "class_names.txt").exists():
        return root
    src = demo_dataset(n_train=n, n_val=0, size=384, root=root.with_name(root.name + "-src"), progress=False)
    for sub in ("JPEGImages", "SegmentationClass"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(sorted(p.stem for p in (src / "JPEGImages").glob("*.jpg"))):
        with Image.open(src / "JPEGImages" / f"{stem}.jpg") as im:
            im.convert("RGB").resize(VOC_SIZE, Image.BILINEAR).save(root / "JPEGImages" / f"u{i:05d}.jpg", quality=90)
        with Image.open(src / "SegmentationClass" / f"{stem}.png") as m:
            m.resize(VOC_SIZE, Image.NEAREST).save(root / "SegmentationClass" / f"u{i:05d}.png")
    (root / "class_names.txt").write_bytes((src / "class_names.txt").read_bytes())
    return root


def decode_rates(folder: Path, count: int, size: int = 128, rounds: int = 5) -> list[dict]:
    """Pairs per second decoded, and through decode + augment to `size` + batch 8, over `count` pairs (median of
    `rounds` interleaved rounds): `file_pairs` with
    tf.io for the images (as training runs it: the quick scan marks which images tf.io may decode; masks go
    through Pillow, since TensorFlow expands palette PNGs to RGB), `file_pairs` with Pillow for every image
    (tf.numpy_function, parallel calls), and Pillow in a Python generator."""
    from deeplab_edge.model._keras import tf
    from deeplab_edge.model.data import load_pair, scan_folder
    from deeplab_edge.model.data_check import check_dataset
    from deeplab_edge.model.input_pipeline import file_pairs, make_tf_dataset

    ds = scan_folder(folder)
    samples = ds.train[:count]
    native = check_dataset(ds, quick=True, samples=samples).native
    norm = {"mean": (127.5,) * 3, "std": (127.5,) * 3}

    def generator_pairs():
        def gen():
            for s in samples:
                yield load_pair(s, ds.num_classes)
        return tf.data.Dataset.from_generator(gen, output_signature=(
            tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, None], tf.uint8)))

    variants = (("tf.io images + Pillow masks, parallel (used)", lambda: file_pairs(samples, ds.num_classes,
                                                                                     native=native)),
                ("Pillow images + masks, tf.numpy_function, parallel", lambda: file_pairs(samples, ds.num_classes)),
                ("Pillow, Python generator", generator_pairs))
    rates: dict[str, dict[str, list[float]]] = {name: {"decode": [], "augment": []} for name, _ in variants}
    for _ in range(rounds):  # interleaved rounds, medians: the host's speed drifts between minutes
        for name, make in variants:
            t0 = time.perf_counter()
            n = sum(1 for _ in make())
            rates[name]["decode"].append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            n = sum(int(x.shape[0]) for x, _ in make_tf_dataset(make(), (size, size), batch_size=8, training=True,
                                                                **norm))
            rates[name]["augment"].append(n / (time.perf_counter() - t0))
    rows = [{"decoder": name, "pairs": len(samples), "rounds": rounds,
             "decode_pairs_per_second": round(statistics.median(r["decode"]), 1),
             "augmented_pairs_per_second": round(statistics.median(r["augment"]), 1)} for name, r in rates.items()]
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def run_train(args: list[str]) -> dict:
    """`deeplab-edge train ARGS` in a fresh process: exit code, wall seconds, peak RSS, train_result.json."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "deeplab_edge", "train", "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    run_dir = Path(args[args.index("--out") + 1])
    result = json.loads((run_dir / "train_result.json").read_text()) if proc.returncode == 0 else {}
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "images_per_second": result.get("images_per_second"),
            "best_val_miou": result.get("best_val_miou"), "tail": out[-1500:] if proc.returncode else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 8000])
    ap.add_argument("--unique", type=int, default=400, help="distinct image/mask pairs behind the folders")
    ap.add_argument("--steps", type=int, default=30, help="training steps per memory run (2 epochs)")
    ap.add_argument("--throughput-steps", type=int, default=25, help="steps per epoch of the throughput run "
                    "(3 epochs; 0 skips it)")
    ap.add_argument("--decode", type=int, default=800, help="pairs for the decoder comparison (0 skips it)")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "deeplab-edge" / "train-scaling"))
    ap.add_argument("--label", default="", help="a name for this code version in the record")
    ap.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    ap.add_argument("--stem", default="train-scaling")
    ap.add_argument("extra", nargs="*", help="after --: more `deeplab-edge train` flags for every run")
    args = ap.parse_args(argv)
    work = Path(args.work)
    unique = make_unique(work / f"unique-{args.unique}", args.unique)
    rows = []
    decode = decode_rates(make_folder(work / f"voc-2000-u{args.unique}", 2000, unique, args.unique),
                          args.decode) if args.decode else []
    with tempfile.TemporaryDirectory(prefix="train-scaling-") as tmp:
        for n in args.sizes:
            data = make_folder(work / f"voc-{n}-u{args.unique}", n, unique, args.unique)
            r = run_train(["--data", str(data), "--preset", "edge", "--input-size", "128", "128", "--batch-size", "8",
                           "--epochs", "2", "--steps-per-epoch", str(args.steps // 2), "--out", f"{tmp}/mem{n}",
                           *args.extra])
            rows.append({"kind": "memory", "train_images": n, **r})
            print(json.dumps(rows[-1]), flush=True)
        if args.throughput_steps:
            r = run_train(["--preset", "edge", "--epochs", "3", "--steps-per-epoch", str(args.throughput_steps),
                           "--out", f"{tmp}/speed", *args.extra])
            rows.append({"kind": "throughput", "train_images": 2000, **r})
            print(json.dumps(rows[-1]), flush=True)
    machine = machine_info()
    doc = {"machine": machine, "label": args.label, "extra_flags": args.extra, "rows": rows, "decode": decode}
    lines = [f"# Training memory and throughput{' (' + args.label + ')' if args.label else ''}", "",
             f"**{machine_summary(machine)}**", "",
             "| run | train images | steps | peak RSS MB | wall s | img/s | rc |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        steps = args.steps if r["kind"] == "memory" else 3 * args.throughput_steps
        ips = f"{r['images_per_second']:.1f}" if r["images_per_second"] else "-"
        what = "edge 128 px, batch 8" if r["kind"] == "memory" else "edge 256 px (demo set), batch 16"
        lines.append(f"| {what} | {r['train_images']} | {steps} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.0f} | {ips} "
                     f"| {r['rc']} |")
    mem = [r for r in rows if r["kind"] == "memory" and r["rc"] == 0]
    if len(mem) >= 2:
        lo, hi = min(r["peak_rss_mb"] for r in mem), max(r["peak_rss_mb"] for r in mem)
        lines += ["", f"Peak RSS spread over {', '.join(str(r['train_images']) for r in mem)} images: "
                  f"{100 * (hi - lo) / lo:.1f}% ({lo:.0f} to {hi:.0f} MB)."]
    if decode:
        lines += ["", f"Decoding {decode[0]['pairs']} pairs of {VOC_SIZE[0]}x{VOC_SIZE[1]} JPEG + palette PNG mask, "
                  f"no model; median of {decode[0]['rounds']} interleaved rounds:", "",
                  "| decoder | decoded pairs/s | + augmented to 128 px, batched pairs/s |", "|---|---:|---:|"]
        lines += [f"| {r['decoder']} | {r['decode_pairs_per_second']:.0f} | {r['augmented_pairs_per_second']:.0f} |"
                  for r in decode]
    write_record(Path(args.out) / args.stem, doc, lines)
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
