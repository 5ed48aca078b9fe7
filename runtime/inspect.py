"""`inspect_file`: the input/output contract of a `.tflite` or `.onnx` file, as an app developer needs it.

What goes in (tensor, dtype, shape, quantisation; raw RGB pixels or normalised with which mean/std, NHWC or
NCHW), what comes out (logits, probabilities, one foreground channel or labels, at which stride), the class
names, which metadata the file carries, its ops, and what it was verified against when its export's
manifest.json sits beside it. TF-free (a `.keras` checkpoint is `export.inspect.inspect_keras`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError

from .backends import Backend, open_backend
from .files import onnx_op_counts
from .predictor import Predictor
from .resolve import UnknownNormalisation, resolve_metadata
from .tensors import TensorInfo


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scale: float | None = None  # real = scale * (q - zero_point)
    zero_point: int | None = None

    @classmethod
    def of(cls, t: TensorInfo) -> Tensor:
        return cls(t.name, tuple(t.shape), np.dtype(t.dtype).name, t.scale, t.zero_point)

    def text(self) -> str:
        shape = "x".join("?" if d is None else str(d) for d in self.shape)
        q = f", quantised: real = {self.scale:.6g} * (q - {self.zero_point})" if self.scale is not None else ""
        return f"{self.name}: {self.dtype} [{shape}]{q}"


@dataclass(frozen=True)
class Contract:
    """One file's contract; `to_dict()` is what `inspect --json` prints."""

    path: str
    kind: str  # tflite, onnx, keras
    size_bytes: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    output_used: str
    input_text: str  # how to feed it, in words
    layout: str
    pixels: bool | None  # True: uint8 RGB as they are; False: normalised; None: unknown
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    input_size: tuple[int, int] | None
    output_kind: str  # logits, probabilities, foreground logit, foreground probability, labels, unknown
    output_text: str
    output_stride: int | None  # input size / output size (1: at the input's resolution)
    class_names: tuple[str, ...]
    metadata: tuple[str, ...]  # the metadata kinds the file carries
    ops: dict[str, int]
    provenance: dict = field(default_factory=dict)
    verification: dict | None = None  # this file's entry of the manifest.json beside it
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        size = f"{self.size_bytes / 1e6:.2f} MB" if self.size_bytes >= 1e5 else f"{self.size_bytes / 1e3:.1f} kB"
        lines = [f"{self.path}: {self.kind}, {size}"]
        lines += ["inputs:", *(f"  {t.text()}" for t in self.inputs)]
        lines += ["outputs:", *(f"  {t.text()}{'  <- used' if t.name == self.output_used and len(self.outputs) > 1 else ''}"
                                for t in self.outputs)]
        lines.append(f"feed it: {self.input_text}")
        lines.append(f"it outputs: {self.output_text}")
        names = ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names))
        lines.append(f"classes ({len(self.class_names)}): {names or 'not stated'}")
        lines.append(f"metadata: {', '.join(self.metadata) or 'none'}")
        if self.provenance:
            lines.append("made by: " + ", ".join(f"{k} {v}" for k, v in self.provenance.items() if v))
        total = sum(self.ops.values())
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"ops ({total}): {top}")
        v = self.verification
        if v is None:
            lines.append("verification: no manifest.json of an export beside the file")
        else:
            lines.append(f"verification: {v['text']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def inspect_file(path: str | Path, *, backend: str | None = None) -> Contract:
    """The contract of a `.tflite` / `.onnx` file (read from the file itself, without running it)."""
    path = Path(path)
    b = open_backend(path, backend=backend, num_threads=1)
    notes: list[str] = []
    try:
        try:
            resolved, known = resolve_metadata(b), True
        except UnknownNormalisation as e:  # the rest of the contract is still read off the file
            notes.append(str(e))
            resolved, known = resolve_metadata(b, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), False
        meta = resolved.meta
        notes += resolved.notes
        predictor = Predictor(b, meta, detect_scores=resolved.detect_scores)
        pixels, mean, std = (predictor.takes_pixels, meta.mean, meta.std) if known else (None, None, None)
        layout, input_size, names = meta.layout, meta.input_size, meta.class_names
        kind = _output_kind(meta.output, meta.num_classes if meta.output != "labels" else None, b,
                            resolved.detect_scores, meta.scores_layout)
        scores_layout = meta.scores_layout
    except UserError as e:  # the normalisation or size is not stated and cannot be read off the tensors
        notes.append(f"{e}")
        pixels, mean, std, layout, input_size, names = None, None, None, _layout(b.input.shape), None, ()
        kind, scores_layout = "unknown", layout
    return Contract(
        path=str(path), kind=b.name.replace("litert", "tflite").replace("onnxruntime", "onnx"),
        size_bytes=path.stat().st_size, inputs=_inputs(b), outputs=tuple(Tensor.of(t) for t in b.outputs),
        output_used=b.output.name, input_text=_input_text(b.input, layout, pixels, mean, std, input_size),
        layout=layout, pixels=pixels, mean=mean, std=std, input_size=input_size, output_kind=kind,
        output_text=_output_text(kind, b.output, scores_layout, names, _stride(input_size, b.output, scores_layout)),
        output_stride=_stride(input_size, b.output, scores_layout), class_names=tuple(names),
        metadata=_metadata_kinds(b), ops=_ops(b), provenance=_provenance(b), verification=verification_of(path),
        notes=tuple(notes))


def _inputs(b: Backend) -> tuple[Tensor, ...]:
    return (Tensor.of(b.input),)


def _layout(shape) -> str:
    return "NCHW" if len(shape) == 4 and shape[1] == 3 and shape[-1] != 3 else "NHWC"


def _output_kind(output: str, classes: int | None, b: Backend, detect: bool, scores_layout: str) -> str:
    if output == "labels":
        return "labels"
    shape = b.output.shape
    channels = shape[1] if scores_layout == "NCHW" else shape[-1]
    if channels == 1:
        return "foreground score (logit or probability, read off its values)" if detect else \
            f"foreground {'logit' if output == 'logits' else 'probability'}"
    return output


def _stride(input_size, out: TensorInfo, layout: str) -> int | None:
    if input_size is None or len(out.shape) < 3:
        return None
    hw = out.shape[2:4] if layout == "NCHW" and len(out.shape) == 4 else out.shape[1:3]
    if None in hw or not hw[0]:
        return None
    return int(round(input_size[0] / hw[0]))


def _input_text(t: TensorInfo, layout: str, pixels: bool | None, mean, std, size) -> str:
    hw = f"{size[0]}x{size[1]}" if size else "its size"
    order = "(N, 3, H, W) channels first" if layout == "NCHW" else "(N, H, W, 3)"
    if pixels is None:
        return (f"{np.dtype(t.dtype).name} {order}; its normalisation is not stated in the file (pass `mean`/`std` "
                "to predict and bench)")
    if pixels:
        return (f"RGB uint8 pixels 0..255 as they are, resized to {hw}, {order}: the file normalises them "
                "itself")
    norm = f"(pixel - mean) / std with mean {_fmt(mean)} and std {_fmt(std)} on RGB 0..255 pixels"
    if t.quantized:
        return (f"RGB resized to {hw}, {order}, normalised as {norm}, then quantised to {np.dtype(t.dtype).name} "
                f"with scale {t.scale:.6g} and zero point {t.zero_point}")
    return f"float32 RGB resized to {hw}, {order}, normalised as {norm}"


def _output_text(kind: str, t: TensorInfo, layout: str, names, stride: int | None) -> str:
    at = "" if stride in (None, 1) else f" at 1/{stride} of the input's resolution (upsample to the image)"
    deq = f"; dequantise: real = {t.scale:.6g} * (q - {t.zero_point})" if t.quantized else ""
    if kind == "labels":
        return f"a label map (argmax inside the file), value i = class i{at}"
    if kind.startswith("foreground"):
        cut = "0 (logit)" if "logit" in kind and "probability" not in kind else "0.5"
        return f"one channel, a {kind}: foreground (class 1) where it is at least {cut}{at}{deq}"
    if kind == "unknown":
        return "scores whose kind the file does not state"
    return f"{len(names) or '?'} channels of {kind} ({layout}); the label is their argmax{at}{deq}"


def _metadata_kinds(b: Backend) -> tuple[str, ...]:
    kinds = []
    if b.metadata is not None:
        kinds.append("deeplab-edge (classes, size, normalisation, provenance)")
    std = getattr(b, "standard", None)
    if std is not None:
        what = [w for w, v in (("normalisation", std.mean), ("labels", std.labels), ("activation", std.activation))
                if v]
        kinds.append(f"TFLite standard metadata ({', '.join(what) or 'no segmentation fields'}; what MediaPipe "
                     "Tasks' ImageSegmenter reads)")
    session = getattr(b, "_session", None)
    if session is not None:
        keys = sorted(k for k in session.get_modelmeta().custom_metadata_map if k != "deeplab_edge")
        if keys:
            kinds.append(f"ONNX metadata_props: {', '.join(keys)}")
    return tuple(kinds)


def _ops(b: Backend) -> dict[str, int]:
    interp = getattr(b, "_interp", None)
    if interp is not None:
        # the file's own ops; the DELEGATE nodes XNNPACK adds when it takes them over are not the file's
        return dict(Counter(d["op_name"] for d in interp._get_ops_details() if d["op_name"] != "DELEGATE"))
    return onnx_op_counts(Path(b.path).read_bytes())


def _provenance(b: Backend) -> dict:
    m = b.metadata
    if m is None:
        return {}
    out = {"deeplab-edge": m.version, "format": m.variant, "preset": m.preset}
    q = m.quantization or {}
    if q.get("target"):
        weights = "" if "reduce_range" not in q else f", {'7' if q['reduce_range'] else '8'}-bit weights"
        out["for target"] = f"{q['target']}{weights}"
    return out


def verification_of(path: Path) -> dict | None:
    """This file's entry of the export manifest.json in its folder, with a one-line summary, or None."""
    manifest = path.parent / "manifest.json"
    try:
        doc = json.loads(manifest.read_text())
        entry = next(f for f in doc.get("files", []) if f.get("file") == path.name)
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return None
    v = entry.get("verification") or {}
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    same = entry.get("sha256") in (None, sha)
    images = (doc.get("verification") or {}).get("images", v.get("images"))
    figure = v.get("figure") or f"agreement {100 * v.get('agreement', 0):.2f}%"
    if "mIoU" not in figure:
        figure += f"; mIoU {100 * v.get('miou', 0):.1f} vs Keras {100 * v.get('keras_miou', 0):.1f}"
    text = (f"{'PASS' if v.get('passed') else 'FAIL'} against the Keras model on {images} held-out images: "
            f"{figure} ({manifest})")
    if not same:
        text += "; WARNING: the file changed since (its sha256 differs from the manifest's), so this does not apply"
    return {"text": text, "manifest": str(manifest), "same_file": same, **v}


def _fmt(values) -> str:
    return " ".join(f"{v:g}" for v in values)
