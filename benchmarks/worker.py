"""Benchmark one model in its own process: `python -m deeplab_edge.benchmarks.worker SPEC.json OUT.json`.

A fresh process per row makes each row's peak memory its own and keeps a crashing interpreter from
taking the whole benchmark down. Exported files are run through the TF-free runtime; only the
"keras" kind imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image


def _keras_runner(spec: dict):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from deeplab_edge.model._keras import tf

    threads = spec.get("threads")
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if spec.get("device") == "cpu":
        tf.config.set_visible_devices([], "GPU")
    gpus = tf.config.list_logical_devices("GPU")
    if spec.get("device") == "gpu" and not gpus:
        raise RuntimeError("TensorFlow sees no GPU here; the row would hold CPU numbers")
    provider = f"TensorFlow {gpus[0].name}" if gpus else "TensorFlow CPU"
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.foreign import LoadOptions, source_of

    load = dict(spec.get("load") or {})
    if load.get("input_size"):
        load["input_size"] = tuple(load["input_size"])
    model, info = load_checkpoint(spec["file"], options=LoadOptions(**load))
    source = source_of(model)
    if source is not None:  # a Keras 3 model or a SavedModel, run through TensorFlow
        provider = f"{source.framework}, {provider}"
    fn = tf.function(lambda x: model(x, training=False))
    from deeplab_edge.runtime.kernels import scores_to_labels

    mean, std, output, threshold = spec["keras_norm"] or (None, None, "logits", 0.5)
    if info is not None:
        mean, std = info.mean, info.std
    size = tuple(model.input_shape[1:3])

    def labels(scores: np.ndarray) -> np.ndarray:  # as the exported files are read: argmax or threshold
        return scores_to_labels(scores, output, threshold).astype(np.uint8)

    return (lambda x: fn(tf.constant(x)).numpy()), size, np.float32(mean), np.float32(std), labels, provider


def _file_runner(spec: dict):
    """The file's predictor on the row's device; on "gpu" the runtime refuses rather than run on the CPU."""
    from deeplab_edge.runtime.predictor import load_predictor

    gpu = spec.get("device") == "gpu"
    return load_predictor(spec["file"], num_threads=spec.get("threads"), device="gpu" if gpu else "cpu",
                          providers=None if gpu or spec["backend"] != "onnxruntime" else ("cpu",),
                          **(spec.get("flags") or {}))


def run(spec: dict) -> dict:
    """One row in one process: `spec["mode"]` "latency" (load, warm up, time; the process's memory is the
    runtime's) or "eval" (labels on the evaluation set, scored)."""
    return _latency(spec) if spec.get("mode", "latency") == "latency" else _evaluate(spec)


def _latency(spec: dict) -> dict:
    """Cold start (load, first inference), inference latency on a model-size input, pre/post-processing
    of one real photo at its own size, and the peak RSS of a process that holds nothing else."""
    from deeplab_edge.benchmarks.timing import peak_rss_mb, rss_mb, time_callable, time_predictor_stages
    from deeplab_edge.runtime.stages import latency_stats

    photo = np.load(spec["photo_npy"])
    loop = dict(warmup=spec["warmup"], min_runs=spec["min_runs"], min_time_s=spec["min_time_s"])
    if spec["backend"] == "keras":
        from deeplab_edge.model._keras import tf  # noqa: F401  (imported before the clock starts)

        base = rss_mb()
        t0 = time.perf_counter_ns()
        infer, size, mean, std, _, provider = _keras_runner(spec)
        t1 = time.perf_counter_ns()
        x1 = _keras_input(photo[None], size, mean, std)
        infer(x1)
        t2 = time.perf_counter_ns()
        lat = latency_stats(time_callable(lambda: infer(x1), **loop))
        pre_ms = post_ms = gpu = None
        notes: list[str] = []
    else:
        if spec["backend"] == "litert" and spec.get("device") == "gpu":
            import ai_edge_litert.compiled_model  # noqa: F401  (imported before the clock starts)
        elif spec["backend"] == "litert":
            import ai_edge_litert.interpreter  # noqa: F401
        else:
            import onnxruntime  # noqa: F401
        base = rss_mb()
        t0 = time.perf_counter_ns()
        pred = _file_runner(spec)
        t1 = time.perf_counter_ns()
        model_in = pred.prepare([photo])[0].copy()
        pred.run(model_in)
        t2 = time.perf_counter_ns()
        lat = latency_stats(time_callable(lambda: pred.run(model_in), **loop))
        # Pre/post-processing of a real photo at its own size, timed apart from inference.
        stages = time_predictor_stages(pred, photo, min_time_s=min(1.0, spec["min_time_s"]))
        pre_ms, post_ms = stages.pre_ms, stages.post_ms
        notes = [*getattr(pred.backend, "notes", ()), *pred.notes]
        provider = ", ".join(pred.backend.providers)  # what the session actually runs on, not what was asked
        gpu = getattr(pred.backend, "gpu", None)
    return {"provider": provider, "gpu": gpu.to_dict() if gpu is not None else None, "latency": lat.to_dict(), "pre_ms": pre_ms, "post_ms": post_ms,
            "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base, "load_ms": (t1 - t0) / 1e6, "first_ms": (t2 - t1) / 1e6,
            "notes": notes}


def _keras_input(images: np.ndarray, size: tuple[int, int], mean, std) -> np.ndarray:
    if images.shape[1:3] != size:
        images = np.stack([np.asarray(Image.fromarray(im).resize(size[::-1], Image.BILINEAR)) for im in images])
    return (images.astype(np.float32) - mean) / std


def _evaluate(spec: dict) -> dict:
    """Labels for every evaluation image (batch by batch; no scores kept), scored against the masks and
    the reference row's labels."""
    from deeplab_edge.metrics import agreement, segmentation_metrics
    from deeplab_edge.runtime.kernels import resize_nearest

    data = np.load(spec["eval_npz"])
    images = data["images"]
    if spec["backend"] == "keras":
        infer, size, mean, std, to_labels, _ = _keras_runner(spec)
        parts = []
        for i in range(0, len(images), 8):
            lab = to_labels(infer(_keras_input(images[i:i + 8], size, mean, std)))
            if lab.shape[1:] != images.shape[1:3]:
                lab = np.stack([resize_nearest(x, images.shape[1:3]) for x in lab])
            parts.append(lab)
        labels, notes = np.concatenate(parts), []
    else:
        pred = _file_runner(spec)
        labels, notes = np.stack(pred.predict(list(images))), list(pred.notes)
    m = segmentation_metrics(data["masks"], labels, int(spec["num_classes"]))
    ref = np.load(spec["ref_labels"]) if spec.get("ref_labels") else None
    return {"miou": m.miou, "pixel_acc": m.pixel_accuracy, "agreement": agreement(labels, ref) if ref is not None else None,
            "per_class_iou": list(m.per_class_iou),
            "labels_npy": _save_labels(labels, spec), "notes": notes}


def _save_labels(labels: np.ndarray, spec: dict) -> str | None:
    if not spec.get("labels_out"):
        return None
    np.save(spec["labels_out"], labels.astype(np.uint8))
    return spec["labels_out"]


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = {"status": "ok", **run(spec)}
    except Exception as e:  # reported as a failed row, never a crash of the benchmark
        result = {"status": "failed", "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300],
                  "traceback": traceback.format_exc()[-2000:]}
    from deeplab_edge.fileio import write_text_atomic

    write_text_atomic(argv[1], json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
