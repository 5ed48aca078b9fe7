"""Benchmark one model in its own process: `python -m deeplab_edge.benchmarks.worker SPEC.json OUT.json`.

A fresh process per row makes each row's peak memory its own and keeps a crashing interpreter from
taking the whole benchmark down. Exported files are run through the TF-free runtime; only the
"keras" kind imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
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

    model, info = load_checkpoint(spec["file"])
    fn = tf.function(lambda x: model(x, training=False))
    from deeplab_edge.runtime.predictor import scores_to_labels

    mean, std, output, threshold = spec["keras_norm"] or (None, None, "logits", 0.5)
    if info is not None:
        mean, std = info.mean, info.std
    size = tuple(model.input_shape[1:3])

    def labels(scores: np.ndarray) -> np.ndarray:  # as the exported files are read: argmax or threshold
        return scores_to_labels(scores, output, threshold).astype(np.uint8)

    return (lambda x: fn(tf.constant(x)).numpy()), size, np.float32(mean), np.float32(std), labels, provider


def _file_runner(spec: dict):
    from deeplab_edge.runtime.predictor import load_predictor

    providers = ("cuda",) if spec.get("device") == "gpu" else ("cpu",)
    pred = load_predictor(spec["file"], num_threads=spec.get("threads"),
                          providers=providers if spec["backend"] == "onnxruntime" else None, **(spec.get("flags") or {}))
    if spec.get("device") == "gpu" and "CUDAExecutionProvider" not in (getattr(pred.backend, "providers", ()) or ()):
        raise RuntimeError("onnxruntime did not enable CUDAExecutionProvider")
    return pred


def run(spec: dict) -> dict:
    from deeplab_edge.benchmarks.timing import peak_rss_mb, time_callable, time_pipeline
    from deeplab_edge.metrics import agreement, segmentation_metrics
    from deeplab_edge.runtime.timing import latency_stats, stage_stats

    data = np.load(spec["eval_npz"])
    ref = data["ref_labels"] if "ref_labels" in data else None
    photo = data["photo"]
    evaluate = bool(spec.get("evaluate")) and "images" in data
    loop = dict(warmup=spec["warmup"], min_runs=spec["min_runs"], min_time_s=spec["min_time_s"])
    notes: list[str] = []
    if spec["backend"] == "keras":
        infer, size, mean, std, to_labels, provider = _keras_runner(spec)

        def normalise(images: np.ndarray) -> np.ndarray:
            if images.shape[1:3] != size:
                images = np.stack([np.asarray(Image.fromarray(im).resize(size[::-1], Image.BILINEAR)) for im in images])
            return (images.astype(np.float32) - mean) / std

        x1 = normalise(photo[None])
        lat = latency_stats(time_callable(lambda: infer(x1), **loop))
        pre_ms = post_ms = None
        if evaluate:
            images = data["images"]
            logits = np.concatenate([infer(normalise(images[i:i + 8])) for i in range(0, len(images), 8)])
            labels = to_labels(logits)
            if labels.shape[1:] != images.shape[1:3]:
                labels = np.stack([np.asarray(Image.fromarray(lab).resize(images.shape[2:0:-1], Image.NEAREST))
                                   for lab in labels])
    else:
        pred = _file_runner(spec)
        model_in = pred.to_model_input(pred.preprocess([photo])[0])
        lat = latency_stats(time_callable(lambda: pred.backend.run(model_in), **loop))
        # Pre/post-processing of a real photo at its own size, timed apart from inference.
        # The same three stages as Predictor.predict: pre = resize + normalise + quantise; post = argmax on
        # the raw output (no dequantisation needed) + nearest resize back to the photo's size.
        stages = stage_stats(time_pipeline(lambda: pred.to_model_input(pred.preprocess([photo])[0]), pred.backend.run,
                                         lambda y: pred.postprocess(pred.labels_from_raw(y), [photo.shape[:2]]),
                                         warmup=2, min_runs=10, min_time_s=min(1.0, spec["min_time_s"])))
        pre_ms, post_ms = stages.pre_ms, stages.post_ms
        if evaluate:
            labels = np.stack(pred.predict(list(data["images"])))
        notes = list(pred.notes)
        provider = ", ".join(pred.backend.providers)  # what the session actually runs on, not what was asked
    out = {"provider": provider, "latency": lat.to_dict(), "pre_ms": pre_ms, "post_ms": post_ms, "peak_rss_mb": peak_rss_mb(),
           "miou": None, "pixel_acc": None, "agreement": None, "labels_npy": None, "notes": notes}
    if evaluate:
        m = segmentation_metrics(data["masks"], labels, int(spec["num_classes"]))
        out.update(miou=m.miou, pixel_acc=m.pixel_accuracy,
                   agreement=agreement(labels, ref) if ref is not None else None,
                   labels_npy=_save_labels(labels, spec))
    return out


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
