"""One `Predictor` shared by a thread pool: throughput with 1, 2 and 4 caller threads, per backend.

`python benchmarks/experiments/threads_throughput.py --models DIR --out DIR [--calls 60]` opens each
.tflite/.onnx file in DIR (an export folder) and, for interpreter threads 1 and 2, runs `--calls`
predictions of one 480x640 photo in each of 1, 2 and 4 caller threads that share one Predictor. It reports
images per second, each call's p50 latency, and whether every mask equals the single-thread mask. For
LiteRT, where the shared Predictor runs one call at a time behind a lock, it also times the alternative
the lock was chosen over: one Predictor per caller thread (an interpreter each, more memory).
Writes OUT/threads.json and OUT/threads.md beside the machine summary.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

from deeplab_edge.benchmarks import latency_stats, rss_mb
from deeplab_edge.benchmarks.evalset import synthetic_photo
from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary
from deeplab_edge.runtime import load_predictor

CALLERS = (1, 2, 4)


def _run(predictors: list, image: np.ndarray, callers: int, calls: int, ref: np.ndarray) -> dict:
    """`callers` threads, thread i using predictors[i % len], `calls` predictions each."""
    times: list[int] = []
    wrong = [0]
    lock = threading.Lock()
    start = threading.Barrier(callers + 1)

    def work(i: int) -> None:
        p = predictors[i % len(predictors)]
        mine, bad = [], 0
        start.wait()
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            labels = p.predict(image)[0]
            mine.append(time.perf_counter_ns() - t0)
            bad += int(not np.array_equal(labels, ref))
        with lock:
            times.extend(mine)
            wrong[0] += bad

    threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stats = latency_stats(times)
    return {"callers": callers, "calls": callers * calls, "wall_s": round(wall, 3),
            "images_per_s": round(callers * calls / wall, 1), "call_p50_ms": round(stats.p50_ms, 2),
            "call_p90_ms": round(stats.p90_ms, 2), "wrong_masks": wrong[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="a folder of exported .tflite/.onnx files")
    ap.add_argument("--calls", type=int, default=60, help="predictions per caller thread")
    ap.add_argument("--out", required=True, help="folder for threads.json / threads.md (e.g. benchmarks/results)")
    args = ap.parse_args(argv)
    files = sorted(p for p in Path(args.models).iterdir() if p.suffix in (".tflite", ".onnx")
                   and "int16x8" not in p.name)
    if not files:
        print(f"error: no .tflite/.onnx files in {args.models}", file=sys.stderr)
        return 2
    image = synthetic_photo()
    rows = []
    for f in files:
        for intra in (1, 2):
            shared = load_predictor(f, num_threads=intra)
            ref = shared.predict(image)[0]
            for _ in range(5):
                shared.predict(image)
            for callers in CALLERS:
                rows.append({"file": f.name, "backend": shared.backend.name, "intra_threads": intra,
                             "mode": "shared", **_run([shared], image, callers, args.calls, ref)})
            if f.suffix == ".tflite":
                before = rss_mb()
                own = [load_predictor(f, num_threads=intra) for _ in range(max(CALLERS))]
                for p in own:
                    p.predict(image)
                extra = rss_mb() - before
                for callers in CALLERS[1:]:
                    rows.append({"file": f.name, "backend": shared.backend.name, "intra_threads": intra,
                                 "mode": "one per thread", "extra_rss_mb_4": round(extra, 1),
                                 **_run(own, image, callers, args.calls, ref)})
                del own
            print(f"{f.name} intra {intra}: done", flush=True)
    machine = machine_info()
    import ai_edge_litert
    import onnxruntime

    doc = {"machine": machine, "image": list(image.shape), "calls_per_thread": args.calls,
           "versions": {"onnxruntime": onnxruntime.__version__,
                        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?")}, "rows": rows}
    lines = [f"**{machine_summary(machine, threads=None)}**", "",
             f"onnxruntime {onnxruntime.__version__}, ai-edge-litert {doc['versions']['ai_edge_litert']}; one "
             f"{image.shape[0]}x{image.shape[1]} photo, `Predictor.predict` (pre + inference + post), "
             f"{args.calls} calls per caller thread; `shared`: one Predictor for all threads, `one per thread`: "
             "a Predictor (interpreter) each.", "",
             "| file | backend | intra threads | mode | caller threads | images/s | call p50 ms | call p90 ms | "
             "wrong masks |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['backend']} | {r['intra_threads']} | {r['mode']} | {r['callers']} | "
                     f"{r['images_per_s']} | {r['call_p50_ms']} | {r['call_p90_ms']} | {r['wrong_masks']} |")
    extra = {r["file"]: r["extra_rss_mb_4"] for r in rows if "extra_rss_mb_4" in r}
    if extra:
        lines += ["", "Memory of four LiteRT Predictors beside the shared one: "
                  + ", ".join(f"{k} +{v} MB" for k, v in extra.items()) + "."]
    write_record(Path(args.out) / "threads", doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
