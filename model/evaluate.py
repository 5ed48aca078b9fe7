"""Evaluate a Keras model on a dataset split: mIoU, per-class IoU, pixel accuracy."""

from __future__ import annotations

import numpy as np

from deeplab_edge.metrics import SegMetrics, confusion_matrix, metrics_from_confusion

from .data import load_arrays, normalize_np


def predict_labels(model, images_uint8: np.ndarray, mean, std, batch_size: int = 8) -> np.ndarray:
    logits = model.predict(normalize_np(images_uint8, mean, std), batch_size=batch_size, verbose=0)
    return logits.argmax(-1)


def evaluate_model(model, samples, class_names, size: tuple[int, int], mean, std, batch_size: int = 8,
                   progress: bool = False) -> SegMetrics:
    """Metrics at the model's input resolution (images bilinear-, masks nearest-resized to it); images
    normalised as the model was trained, (pixel - mean) / std."""
    n = len(class_names)
    images, masks = load_arrays(samples, size, n, progress=progress)
    cm = np.zeros((n, n), np.int64)
    for i in range(0, len(images), 64):
        cm += confusion_matrix(masks[i:i + 64], predict_labels(model, images[i:i + 64], mean, std, batch_size), n)
    return metrics_from_confusion(cm, class_names)
