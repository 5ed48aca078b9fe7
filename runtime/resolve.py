"""Which metadata a file is run with: the caller's arguments over deeplab-edge metadata over the standard
TFLite metadata over what the tensors show, checked against the file's tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from deeplab_edge.classes import classes_of, default_class_names, parse_class_names
from deeplab_edge.errors import UserError

from .backends import Backend, TensorInfo
from .metadata import OUTPUT_KINDS, ModelMetadata

METADATA_FLAGS = "`input_size` H W `mean` R G B `std` R G B"


class UnknownNormalisation(UserError):
    """A file whose size is known but whose normalisation neither it nor the caller gives."""


@dataclass(frozen=True)
class Resolved:
    """The metadata a predictor uses, what was inferred (notes), and whether the kind of a one-channel
    output is still to be read off its first values."""

    meta: ModelMetadata
    notes: tuple[str, ...] = ()
    detect_scores: bool = False


def resolve_metadata(backend: Backend, *, input_size: Sequence[int] | None = None,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     class_names: str | Sequence[str] | None = None, threshold: float | None = None,
                     output_kind: str | None = None) -> Resolved:
    """The metadata to use for `backend`'s file: flags over our metadata over the standard TFLite
    metadata over what the tensors show, checked against the file's tensors."""
    ours, std_meta = backend.metadata, getattr(backend, "standard", None)
    names = parse_class_names(class_names)
    notes: list[str] = []
    if output_kind is not None and output_kind not in OUTPUT_KINDS:
        raise UserError(f"`output_kind` must be one of {', '.join(OUTPUT_KINDS)}; received {output_kind!r}.")
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise UserError(f"`threshold` must lie strictly between 0 and 1; received {threshold}.")
    layout = ours.layout if ours else _guess_layout(backend.input.shape)
    model_hw = _model_hw(backend.input.shape, layout)
    out_layout = ours.scores_layout if ours else _output_layout(backend.output.shape, layout)
    channels = _num_channels(backend.output, out_layout)
    kind, detect = _output_kind(backend, ours, std_meta, channels, output_kind, notes)
    # Input size: flags, else the file's static size, else our metadata (dynamic files).
    size = tuple(input_size) if input_size is not None else (model_hw or (ours.input_size if ours else None))
    # Normalisation: flags, else ours, else the standard metadata, else what an integer input implies.
    norm_mean, norm_std = mean, std
    if norm_mean is None or norm_std is None:
        found = _normalisation(backend, ours, std_meta, notes)
        if found is not None:
            norm_mean = norm_mean if norm_mean is not None else found[0]
            norm_std = norm_std if norm_std is not None else found[1]
    missing = []
    if size is None:
        missing.append("its input size (`input_size` H W; the file's spatial size is dynamic)")
    if norm_mean is None or norm_std is None:
        missing.append("its normalisation (`mean` R G B `std` R G B)")
    if missing:
        error = UnknownNormalisation if len(missing) == 1 and size is not None else UserError
        raise error(
            f"{backend.path} carries no deeplab-edge metadata and no standard TFLite metadata that gives "
            f"{' and '.join(missing)}: pass {METADATA_FLAGS} (e.g. `mean` 127.5 127.5 127.5 `std` 127.5 127.5 "
            "127.5 for a model trained on pixels scaled to [-1, 1], `mean` 0 0 0 `std` 255 255 255 for [0, 1]), "
            "or export the model with `deeplab-edge export`, which stores them in the file.")
    names = names or (ours.class_names if ours else ()) or _standard_labels(std_meta, channels) or \
        (default_class_names(channels) if kind != "labels" and channels else ())
    base = ours or ModelMetadata(class_names=names or ("class_0",), input_size=size, mean=_three(norm_mean),
                                 std=_three(norm_std), layout=layout)
    meta = replace(base, class_names=names or base.class_names, input_size=tuple(size), mean=_three(norm_mean),
                   std=_three(norm_std), output=kind, output_layout=out_layout,
                   threshold=float(threshold) if threshold is not None else base.threshold)
    if model_hw is not None and meta.input_size != model_hw:
        raise UserError(f"{backend.path} takes {model_hw[0]}x{model_hw[1]} inputs; received input size "
                        f"{meta.input_size[0]}x{meta.input_size[1]}. Drop `input_size` or pass "
                        f"`input_size` {model_hw[0]} {model_hw[1]}.")
    classes = classes_of(channels) if channels else channels
    if kind != "labels" and classes and len(meta.class_names) != classes:
        raise UserError(f"{backend.path} outputs {classes} classes{' (one foreground channel)' if channels == 1 else ''}"
                        f" but {len(meta.class_names)} class names were given ({', '.join(meta.class_names)}); "
                        f"pass {classes} names to `class_names`.")
    return Resolved(meta, tuple(notes), detect)


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    return values * 3 if len(values) == 1 else values


def _output_layout(shape: tuple[int | None, ...], layout: str) -> str:
    """The score output's layout: the axis (1 or 3) that is clearly the smaller is the channel axis."""
    if len(shape) != 4:
        return layout
    a, b = shape[1], shape[3]
    if a is not None and b is not None and a != b:
        return "NCHW" if a < b else "NHWC"
    if (a is None) != (b is None):
        return "NCHW" if b is None else "NHWC"
    return layout


def _output_kind(backend: Backend, ours: ModelMetadata | None, std_meta, channels: int | None,
                 flag: str | None, notes: list[str]) -> tuple[str, bool]:
    """(output kind, decide-on-first-values) for the chosen output."""
    if flag is not None:
        return flag, False
    if ours is not None:
        return ours.output, False
    info = backend.output
    if len(info.shape) == 3 or (info.dtype.kind in "iu" and not info.quantized):
        return "labels", False
    if channels != 1:
        return ("probabilities" if backend.activation == "softmax" else "logits"), False
    # One foreground channel: probability or logit matters for the threshold.
    activation = std_meta.activation if std_meta is not None else None
    if activation == "sigmoid":  # the client is told to apply a sigmoid: the file gives logits
        notes.append("the one-channel output holds logits (the file's segmenter metadata asks for a sigmoid)")
        return "logits", False
    if backend.activation == "sigmoid":
        notes.append("the one-channel output holds probabilities (the graph ends in a sigmoid)")
        return "probabilities", False
    if activation == "none":
        notes.append("the one-channel output holds probabilities (the file's segmenter metadata applies none)")
        return "probabilities", False
    return "probabilities", True


def _normalisation(backend: Backend, ours: ModelMetadata | None, std_meta,
                   notes: list[str]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if ours is not None:
        return ours.mean, ours.std
    if std_meta is not None and std_meta.mean is not None and std_meta.std is not None:
        notes.append(f"normalisation from the file's standard TFLite metadata: mean {_fmt(std_meta.mean)}, "
                     f"std {_fmt(std_meta.std)}")
        return std_meta.mean, std_meta.std
    info = backend.input
    if info.dtype == np.uint8 or info.dtype == np.int8:
        # An integer input takes pixels as they are (uint8) or shifted by 128 (int8); its quantisation then
        # says what the graph sees: (q - zero_point) * scale.
        shift = 128.0 if info.dtype == np.int8 else 0.0
        if info.quantized:
            mean, std = shift + info.zero_point, 1.0 / info.scale
            notes.append(f"the {info.dtype} input takes pixels as they are; its quantisation realises "
                         f"(pixel - {mean:g}) / {std:.4g}")
        else:
            mean, std = shift, 1.0
            notes.append(f"the {info.dtype} input takes raw pixels (no normalisation)")
        return (mean,) * 3, (std,) * 3
    return None


def _fmt(values: Sequence[float]) -> str:
    return "/".join(f"{v:g}" for v in values)


def _standard_labels(std_meta, channels: int | None) -> tuple[str, ...]:
    labels = tuple(std_meta.labels) if std_meta is not None and std_meta.labels else ()
    expected = classes_of(channels) if channels else channels
    return labels if labels and (expected is None or len(labels) == expected) else ()


def _guess_layout(shape: tuple[int | None, ...]) -> str:
    return "NCHW" if len(shape) == 4 and shape[1] == 3 and shape[3] != 3 else "NHWC"


def _model_hw(shape: tuple[int | None, ...], layout: str) -> tuple[int, int] | None:
    if len(shape) != 4:
        raise UserError(f"Expected a 4-D image input (N, H, W, 3); the model's input has shape {shape}.")
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return (h, w) if h and w else None


def _num_channels(info: TensorInfo, layout: str) -> int | None:
    if len(info.shape) != 4:
        return None
    return info.shape[1] if layout == "NCHW" else info.shape[3]
