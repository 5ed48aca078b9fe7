"""Segmentation metrics from a confusion matrix (numpy only: used by Keras eval, export and runtime)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import default_class_names

IGNORE_LABEL = 255


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int,
                     ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, cols = prediction; ignore skipped."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    preds = np.asarray(preds).reshape(-1).astype(np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"labels and preds differ in size: {labels.shape} vs {preds.shape}")
    keep = labels != ignore_label
    labels, preds = labels[keep], preds[keep]
    if labels.size and (labels.max() >= num_classes or labels.min() < 0):
        raise ValueError(f"label {labels.max()} out of range for {num_classes} classes")
    preds = np.clip(preds, 0, num_classes - 1)
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegMetrics:
    miou: float  # mean over classes present in ground truth or prediction (union > 0)
    pixel_accuracy: float
    per_class_iou: tuple[float | None, ...]  # None where the class is absent from both
    class_names: tuple[str, ...]
    pixels: int

    def to_dict(self) -> dict:
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "pixels": self.pixels,
            "per_class_iou": {n: v for n, v in zip(self.class_names, self.per_class_iou, strict=True)},
        }

    def table(self) -> str:
        width = max(len(n) for n in self.class_names)
        lines = [f"{'class':<{width}}  IoU"]
        for n, v in zip(self.class_names, self.per_class_iou, strict=True):
            lines.append(f"{n:<{width}}  {'  n/a' if v is None else f'{100 * v:5.1f}'}")
        lines.append(f"{'mIoU':<{width}}  {100 * self.miou:5.1f}")
        lines.append(f"{'pixel acc':<{width}}  {100 * self.pixel_accuracy:5.1f}")
        return "\n".join(lines)


def metrics_from_confusion(cm: np.ndarray, class_names=None) -> SegMetrics:
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    names = tuple(class_names) if class_names is not None else default_class_names(n)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union, strict=True)]
    present = [v for v in iou if v is not None]
    total = cm.sum()
    return SegMetrics(
        miou=float(np.mean(present)) if present else 0.0,
        pixel_accuracy=float(tp.sum() / total) if total else 0.0,
        per_class_iou=tuple(iou),
        class_names=names,
        pixels=int(total),
    )


def segmentation_metrics(labels, preds, num_classes: int, class_names=None) -> SegMetrics:
    return metrics_from_confusion(confusion_matrix(labels, preds, num_classes), class_names)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels where two label maps agree."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean(a == b))
