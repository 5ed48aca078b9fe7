"""Verification after every export: run the file on held-out images and compare with Keras."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplab_edge.metrics import agreement, segmentation_metrics

from .spec import ModelSpec


@dataclass(frozen=True)
class Thresholds:
    """Pass limits. float32 files: largest |logit difference| relative to the logit scale, max(1, max|logit|).
    float16 and quantised files: argmax pixel agreement with Keras and mIoU drop (points) against ground
    truth; float16's limits are tighter, and its logit difference is reported but not decisive (a 2.6e-2
    relative difference came with 99.93% agreement and -0.01 mIoU on a real 2-class dataset)."""

    fp32_rel_diff: float = 1e-3
    fp16_min_agreement: float = 0.99
    fp16_max_miou_drop: float = 0.5
    min_agreement: float = 0.95
    max_miou_drop: float = 2.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Verification:
    passed: bool
    images: int
    max_abs_diff: float | None
    rel_diff: float | None
    agreement: float
    miou: float
    keras_miou: float
    miou_drop: float
    criterion: str
    figure: str  # the headline number as text, for tables

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Reference:
    """Keras outputs on the verification images: their uint8 pixels, scores, labels, ground truth."""

    pixels: np.ndarray  # (N, H, W, 3) uint8 at the model's input size
    logits: np.ndarray  # the model's float scores (logits or probabilities), NHWC
    masks: np.ndarray
    spec: ModelSpec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def labels(self) -> np.ndarray:
        return self.spec.labels(self.logits)

    @property
    def miou(self) -> float:
        return segmentation_metrics(self.masks, self.labels, len(self.class_names)).miou


def keras_reference(model, pixels: np.ndarray, masks: np.ndarray, spec: ModelSpec, batch_size: int = 8) -> Reference:
    """`model`'s scores on the uint8 `pixels`, normalised as `spec` says (upsampled to the image size if the
    model outputs them at a stride, as the runtime reads them)."""
    from deeplab_edge.runtime.kernels import normalise, resize_bilinear

    logits = model.predict(normalise(pixels, spec.mean, spec.std), batch_size=batch_size, verbose=0)
    logits = logits.astype(np.float32)
    if logits.shape[1:3] != pixels.shape[1:3]:  # a stride-N output: scores upsampled as the runtime does
        logits = resize_bilinear(logits, pixels.shape[1:3])
    return Reference(pixels, logits, masks, spec)


def run_file(path: Path, pixels: np.ndarray, *, num_threads: int | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """(float NHWC scores or None for a labels output, (N, H, W) labels) of an exported file on uint8
    images at its input size, pre-processed and read the way the runtime does it (its own metadata)."""
    from deeplab_edge.runtime.kernels import resize_bilinear
    from deeplab_edge.runtime.predictor import load_predictor

    pred = load_predictor(path, num_threads=num_threads)
    raws = [pred.run(pred.prepare(pixels[i:i + 1])[0]) for i in range(len(pixels))]
    labels = np.concatenate([pred.labels_at_input(r) for r in raws])
    if pred.meta.output == "labels":
        return None, labels
    scores = np.concatenate([pred.decode(r) for r in raws])
    if scores.shape[1:3] != pixels.shape[1:3]:
        scores = resize_bilinear(scores, pixels.shape[1:3])
    return scores, labels


def verify_outputs(scores: np.ndarray | None, labels: np.ndarray, ref: Reference, precision: str,
                   thresholds: Thresholds) -> Verification:
    n = len(ref.class_names)
    agree = agreement(labels, ref.labels)
    miou = segmentation_metrics(ref.masks, labels, n).miou
    keras_miou = ref.miou
    drop = 100 * (keras_miou - miou)
    max_abs = rel = None
    if scores is not None:
        max_abs = float(np.abs(scores - ref.logits).max())
        rel = max_abs / max(1.0, float(np.abs(ref.logits).max()))
    if precision == "fp32" and rel is not None:
        passed = rel <= thresholds.fp32_rel_diff
        criterion = f"max|Δlogit|/scale <= {thresholds.fp32_rel_diff:g}"
        figure = f"max|Δlogit| {max_abs:.2e} (rel {rel:.1e})"
    else:
        min_agree, max_drop = ((thresholds.fp16_min_agreement, thresholds.fp16_max_miou_drop) if precision == "fp16"
                               else (thresholds.min_agreement, thresholds.max_miou_drop))
        passed = agree >= min_agree and drop <= max_drop
        criterion = f"agreement >= {min_agree:.0%}, mIoU drop <= {max_drop:g} pt"
        figure = f"agree {100 * agree:.2f}%, mIoU {100 * miou:.1f} vs {100 * keras_miou:.1f}"
        if precision == "fp16" and rel is not None:
            figure += f", rel Δlogit {rel:.1e}"
    return Verification(bool(passed), len(ref.pixels), max_abs, rel, agree, miou, keras_miou, drop, criterion, figure)


def verify_file(path: Path, ref: Reference, precision: str, thresholds: Thresholds | None = None,
                *, num_threads: int | None = None) -> Verification:
    scores, labels = run_file(path, ref.pixels, num_threads=num_threads)
    return verify_outputs(scores, labels, ref, precision, thresholds or Thresholds())
