"""Evaluate a Keras model on a dataset split: mIoU, per-class IoU, pixel accuracy (at each image's own size
or at the model's)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from deeplab_edge.errors import UserError
from deeplab_edge.metrics import SegMetrics, confusion_matrix, metrics_from_confusion
from deeplab_edge.runtime.kernels import normalise

from .data import load_arrays, load_pair


def predict_labels(model, images_uint8: np.ndarray, mean, std, batch_size: int = 8, to_labels=None) -> np.ndarray:
    logits = model.predict(normalise(images_uint8, mean, std), batch_size=batch_size, verbose=0)
    return to_labels(logits) if to_labels is not None else logits.argmax(-1)


RESOLUTIONS = ("original", "model")


def evaluate_model(model, samples, class_names, size: tuple[int, int], mean, std, batch_size: int = 8,
                   progress: bool = False, resolution: str = "model", to_labels=None) -> SegMetrics:
    """Metrics of `samples`; images normalised as the model was trained, (pixel - mean) / std.

    `resolution` "original" (the standard protocol, comparable with published numbers): each image is
    resized to the model's size, its logits bilinearly back to the image's own size, and scored against
    its mask as it is. "model": image and mask both resized to the model's size (what training's
    validation does; faster, not comparable). `to_labels`: (N, H, W, C) scores -> labels (default argmax;
    `ModelSpec.labels` for a one-channel or probability output)."""
    if resolution not in RESOLUTIONS:
        raise UserError(f"resolution must be one of {', '.join(RESOLUTIONS)}; received {resolution!r}.")
    n = len(class_names)
    cm = np.zeros((n, n), np.int64)
    if resolution == "model":
        images, masks = load_arrays(samples, size, n, progress=progress)
        for i in range(0, len(images), 64):
            cm += confusion_matrix(masks[i:i + 64], predict_labels(model, images[i:i + 64], mean, std, batch_size,
                                                                        to_labels), n)
        return metrics_from_confusion(cm, class_names)
    from deeplab_edge.runtime.kernels import resize_bilinear

    h, w = size
    chunks = range(0, len(samples), batch_size)
    if progress:
        from deeplab_edge.progress import track

        chunks = track(chunks, "evaluating", unit="batch")
    for start in chunks:
        pairs = [load_pair(s, n) for s in samples[start:start + batch_size]]
        batch = np.stack([np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR)) for img, _ in pairs])
        logits = model.predict(normalise(batch, mean, std), batch_size=batch_size, verbose=0)
        for (_, mask), scores in zip(pairs, logits, strict=True):
            full = resize_bilinear(scores[None].astype(np.float32), mask.shape)[0]
            labels = to_labels(full[None])[0] if to_labels is not None else full.argmax(-1)
            cm += confusion_matrix(mask[None], labels[None], n)
    return metrics_from_confusion(cm, class_names)
