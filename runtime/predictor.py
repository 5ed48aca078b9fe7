"""Images in, label maps out: pre-processing, inference and post-processing from a file's own metadata.

Pre-processing: resize to the model input (bilinear, Pillow, as in training), normalise
(pixel - mean) / std, NHWC or NCHW as the file says, quantise for int8/uint8-input files.
Post-processing: dequantise, argmax over classes (unless the file outputs labels), resize the label map
back to the image's own size (nearest neighbour).

`resample="opencv"` resizes with OpenCV's INTER_LINEAR (needs the `opencv` extra): 10-30x faster than
Pillow on photos larger than the model, without antialiasing (1-3.4 grey levels mean difference on
the bundled photos at 256x256).

`resample="mediapipe"` instead resamples as MediaPipe Tasks' ImageSegmenter does on a phone (CPU):
the input is sampled bilinearly at x * in/out without half-pixel offset or antialiasing (8-bit fixed
point, as OpenCV), and the scores are upsampled to the image with aligned corners before the argmax. Use it to see what the phone app
will show; the default matches training (Pillow) and is the more accurate one.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab_edge.errors import MissingPackage, UserError, unknown_name_error

from .backends import Backend, TensorInfo, open_backend
from .metadata import OUTPUT_KINDS, ModelMetadata
from .timing import StageTiming, TimingSummary, summarize

TIMINGS_KEPT = 10_000  # per-batch timings kept for `timing_summary` (bounded in streaming use)
METADATA_FLAGS = "--input-size H W --mean R G B --std R G B"
RESAMPLING = ("pillow", "opencv", "mediapipe")
UPSAMPLING = ("labels", "scores")  # how an output at a stride reaches the image size; see Predictor.labels_for


class UnknownNormalisation(UserError):
    """A file whose size is known but whose normalisation neither it nor the caller gives."""


PREDICT_OUTPUTS = ("labels", "scores", "probabilities")


class Predictor:
    """A model file ready to segment images; keeps per-stage timings of its latest `predict` calls.

    Safe to share across threads: each thread gets its own input buffer, and the interpreter runs one call
    at a time where the runtime needs that (LiteRT; onnxruntime sessions run concurrently)."""

    def __init__(self, backend: Backend, meta: ModelMetadata, *, batch_size: int = 1,
                 notes: Sequence[str] = (), detect_scores: bool = False, resample: str = "pillow",
                 upsample: str = "labels") -> None:
        if int(batch_size) < 1:
            raise UserError(f"batch_size must be at least 1; received {batch_size}.")
        if resample not in RESAMPLING:
            raise UserError(f"resample must be one of {', '.join(RESAMPLING)}; received {resample!r}.")
        if resample == "opencv":
            _cv2()  # missing OpenCV is an error now, not at the first image
        if upsample not in UPSAMPLING:
            raise UserError(f"upsample must be one of {', '.join(UPSAMPLING)}; received {upsample!r}.")
        self.resample = resample
        self.upsample = upsample
        self.backend = backend
        self.meta = meta
        self.batch_size = int(batch_size)
        self.timings: deque[StageTiming] = deque(maxlen=TIMINGS_KEPT)
        self.notes: list[str] = list(notes)
        self._detect_scores = detect_scores  # one-channel output of unknown kind: decided on the first output
        self._mean = np.asarray(meta.mean, np.float32)
        self._std = np.asarray(meta.std, np.float32)
        self._local = threading.local()  # per thread: the uint8 input batch of `prepare`, reused between calls
        self._lock = threading.Lock()  # the one-time decision of a one-channel output's kind

    @property
    def takes_pixels(self) -> bool:
        """True when the file takes uint8 RGB pixels as they are (it normalises them itself, or its input
        quantisation realises the normalisation exactly): pre-processing is a resize and a copy."""
        info = self.backend.input
        if info.dtype != np.uint8:
            return False
        if not info.quantized:
            return bool(np.all(self._mean == 0) and np.all(self._std == 1))
        return bool(np.all(np.abs(self._mean - info.zero_point) < 1e-6)
                    and np.all(np.abs(self._std * np.float32(info.scale) - 1) < 1e-6))

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input (height, width): images of any size are resized to it."""
        return self.meta.input_size

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per label value (label i is `class_names[i]`)."""
        return self.meta.class_names

    @property
    def _channel_axis(self) -> int:
        return 1 if self.meta.scores_layout == "NCHW" else -1

    def _resize_into(self, images: Sequence[np.ndarray], batch: np.ndarray) -> list[tuple[int, int]]:
        """Resize each RGB uint8 image into `batch[i]` (model size); returns the original (h, w) sizes."""
        h, w = self.input_size
        sizes = []
        for i, img in enumerate(images):
            img = as_rgb_uint8(img, what=f"image {i}")
            sizes.append(img.shape[:2])
            if img.shape[:2] == (h, w):
                batch[i] = img
            elif self.resample == "mediapipe":
                batch[i] = sample_like_mediapipe(img, (h, w))
            elif self.resample == "opencv":
                cv2 = _cv2()
                batch[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                batch[i] = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        return sizes

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """RGB uint8 images -> (the batch the file takes, original (h, w) sizes).

        A file that `takes_pixels` gets the resized pixels in a uint8 buffer reused between calls (valid
        until the next call); any other file a normalised, laid out and quantised batch."""
        if not self.takes_pixels:
            batch, sizes = self.preprocess(images)
            return self.to_model_input(batch), sizes
        h, w = self.input_size
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) != len(images):
            buffer = self._local.buffer = np.empty((len(images), h, w, 3), np.uint8)
        sizes = self._resize_into(images, buffer)
        return (buffer.transpose(0, 3, 1, 2) if self.meta.layout == "NCHW" else buffer), sizes

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """RGB uint8 images -> (normalised float32 NHWC batch at model size, original (h, w) sizes)."""
        h, w = self.input_size
        batch = np.empty((len(images), h, w, 3), np.float32)
        sizes = self._resize_into(images, batch)
        if np.all(self._mean == self._mean[0]) and np.all(self._std == self._std[0]):
            # One mean/std for all channels (the usual case): scalar ops, 10x faster than broadcasting
            # over a last axis of length 3 (0.56 -> 0.06 ms at 256x256).
            batch -= self._mean[0]
            batch *= np.float32(1.0) / self._std[0]
        else:
            batch -= self._mean
            batch /= self._std
        return batch, sizes

    def run_normalized(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 NHWC at model size -> the file's scores as float32 NHWC (dequantised, at the
        output's own resolution), or int labels NHW for a labels output."""
        return self.from_model_output(self.backend.run(self.to_model_input(x)))

    def labels_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """The file's raw output -> (N, H, W) labels at the model's input size.

        Several classes: argmax (on the raw integers of a quantised output: with a positive scale the
        dequantisation is monotonic). One channel: foreground where the probability >= threshold.
        A score output smaller than the input (e.g. stride 4) is upsampled bilinearly first.
        """
        if self.meta.output == "labels":
            return self._labels_to_input_size(self.from_model_output(raw))
        hw = raw.shape[2:4] if self._channel_axis == 1 else raw.shape[1:3]
        if tuple(hw) == tuple(self.input_size):
            return self._labels_native(raw)
        scores = resize_bilinear(self.from_model_output(raw), self.input_size)  # float32 NHWC
        return self._threshold(scores[..., 0]) if scores.shape[-1] == 1 else scores.argmax(-1)

    def _threshold(self, scores: np.ndarray) -> np.ndarray:
        if self._detect_scores:
            with self._lock:
                if self._detect_scores:
                    self._decide_kind(scores)
        return (scores >= threshold_cut(self.meta.threshold, self.meta.output)).astype(np.uint8)

    def _decide_kind(self, scores: np.ndarray) -> None:
        lo, hi = float(scores.min(initial=0.0)), float(scores.max(initial=0.0))
        kind = "probabilities" if lo >= 0.0 and hi <= 1.0 else "logits"
        self.meta = replace(self.meta, output=kind)
        self._detect_scores = False
        self.notes.append(f"the one-channel output read as foreground {kind[:-1] if kind == 'logits' else 'probability'} "
                          f"(values {lo:.3g}..{hi:.3g} on the first image); pass --output-kind to say otherwise")

    def _labels_to_input_size(self, labels: np.ndarray) -> np.ndarray:
        if labels.shape[1:3] == tuple(self.input_size):
            return labels
        return np.stack([resize_nearest(lab, self.input_size) for lab in labels])

    def postprocess(self, labels: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """(N, H, W) labels (at model size or the output's own) -> one label map per image, at its original
        size (nearest, one resize)."""
        dtype = np.uint8 if max(self.meta.num_classes, int(labels.max(initial=0)) + 1) <= 256 else np.int32
        return [resize_nearest(labels[i].astype(dtype, copy=False), size) for i, size in enumerate(sizes)]

    def labels_for(self, raw: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """The file's raw output -> one label map per image at its original size.

        An output at the model's input size: argmax on the raw values, one nearest resize. An output at
        a stride (e.g. input / 4): with `upsample="labels"` the label map is computed at the output's
        own resolution and resized once (nearest) to each image; with "scores" the scores are first
        upsampled bilinearly to the input size (slower, smoother edges)."""
        if self.resample == "mediapipe" and self.meta.output != "labels":
            return self._labels_like_mediapipe(raw, sizes)
        if self.upsample == "labels":
            return self.postprocess(self._labels_native(raw), sizes)
        return self.postprocess(self.labels_from_raw(raw), sizes)

    def _labels_native(self, raw: np.ndarray) -> np.ndarray:
        """(N, h, w) labels at the output's own resolution: argmax (on the raw integers of a quantised
        output: with a positive scale the dequantisation is monotonic), or one channel thresholded."""
        if self.meta.output == "labels":
            return self.from_model_output(raw)
        info, axis = self.backend.output, self._channel_axis
        if raw.shape[axis] == 1:
            return self._threshold(self.from_model_output(raw)[..., 0])
        if info.quantized and info.scale > 0:
            return argmax_channels(raw, axis=axis)
        return np.argmax(raw, axis=axis)

    def predict(self, images: Sequence[np.ndarray] | np.ndarray, *, output: str = "labels") -> list[np.ndarray]:
        """Segment RGB uint8 images of any sizes (one (H, W, 3) array, or a sequence of them), `batch_size`
        per inference call.

        `output="labels"` (default): one (H, W) label map per image at its own size, uint8 (int32 beyond 256
        classes); label i is `class_names[i]`. `"scores"`: (H, W, C) float32 as the file outputs them (logits
        or probabilities; C = 1 for a one-channel foreground output), upsampled bilinearly to each image.
        `"probabilities"`: the same scores as probabilities (softmax over C, sigmoid for one channel).
        Raises `UserError` for an image that is not RGB uint8 and for scores of a file that outputs labels.
        """
        if output not in PREDICT_OUTPUTS:
            raise unknown_name_error("predict output", str(output), PREDICT_OUTPUTS)
        if output != "labels" and self.meta.output == "labels":
            raise UserError(f"{self.backend.path} outputs labels (argmax inside the file), so it has no scores; "
                            "export it with `--head logits` for scores.")
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        post = self.labels_for if output == "labels" else (
            lambda raw, sizes: self._scores_for(raw, sizes, probabilities=output == "probabilities"))
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            t0 = time.perf_counter_ns()
            x, sizes = self.prepare(chunk)
            t1 = time.perf_counter_ns()
            raw = self.backend.run(x)
            t2 = time.perf_counter_ns()
            out += post(raw, sizes)
            t3 = time.perf_counter_ns()
            self.timings.append(StageTiming(len(chunk), t1 - t0, t2 - t1, t3 - t2))
        return out

    def _scores_for(self, raw: np.ndarray, sizes: Sequence[tuple[int, int]], *, probabilities: bool) -> list[np.ndarray]:
        """(H, W, C) float32 scores per image from a raw output, upsampled bilinearly to each image's size."""
        scores = self.from_model_output(raw)  # float32 NHWC at the output's resolution
        if probabilities and self.meta.output == "logits":
            scores = _sigmoid(scores) if scores.shape[-1] == 1 else _softmax(scores)
        if self.resample == "mediapipe":
            return [upsample_like_mediapipe(scores[i], size).astype(np.float32, copy=False)
                    for i, size in enumerate(sizes)]
        return [resize_bilinear(scores[i][None], size)[0].astype(np.float32, copy=False)
                for i, size in enumerate(sizes)]

    def _labels_like_mediapipe(self, raw: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Scores upsampled to each image with aligned corners, then argmax / threshold (MediaPipe's order)."""
        scores = self.from_model_output(raw)
        out = []
        for i, size in enumerate(sizes):
            s = upsample_like_mediapipe(scores[i], size)
            lab = self._threshold(s[..., 0]) if s.shape[-1] == 1 else s.argmax(-1)
            out.append(lab.astype(np.uint8 if s.shape[-1] <= 256 else np.int32, copy=False))
        return out

    def timing_summary(self) -> TimingSummary:
        return summarize(self.timings)

    def to_model_input(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 NHWC -> what the file takes: its layout, quantised for int inputs."""
        h, w = self.input_size
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != (h, w, 3) or x.dtype.kind != "f":
            raise UserError(f"Expected normalised float images of shape (N, {h}, {w}, 3); received "
                            f"{x.dtype} {x.shape}.")
        if self.meta.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return quantize(x, self.backend.input)

    def from_model_output(self, raw: np.ndarray) -> np.ndarray:
        """The file's raw output -> float32 NHWC scores (dequantised), or int64 NHW labels."""
        if self.meta.output == "labels":
            labels = raw.astype(np.int64, copy=False)
            if labels.ndim == 4:
                labels = labels[:, 0] if self.meta.scores_layout == "NCHW" else labels[..., 0]
            return labels
        y = dequantize(raw, self.backend.output)
        if self.meta.scores_layout == "NCHW":
            y = y.transpose(0, 2, 3, 1)
        return y


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@functools.cache
def _cv2():
    """OpenCV for `resample="opencv"`: an optional dependency (61 MB wheel), single-threaded like Pillow."""
    try:
        import cv2
    except ImportError:
        raise MissingPackage("--resample opencv needs OpenCV: pip install 'deeplab-edge[opencv]' (or "
                        "opencv-python-headless), or use the default --resample pillow.") from None
    cv2.setNumThreads(1)
    return cv2


def argmax_channels(raw: np.ndarray, axis: int = -1) -> np.ndarray:
    """np.argmax over the class axis, faster for 8-bit outputs with up to 256 classes.

    numpy's argmax over a short last axis runs one tiny reduction per pixel; here each value is
    packed with its inverted class index into an int32 key and the keys are reduced with
    elementwise np.maximum across classes (vectorised over pixels): 0.42 vs 1.8 ms for 256x256x13.
    Ties go to the lowest class index, as with np.argmax.
    """
    c = raw.shape[axis]
    if raw.dtype not in (np.int8, np.uint8) or c > 256:
        return np.argmax(raw, axis=axis)
    planes = np.moveaxis(raw, axis, 0)
    best = planes[0].astype(np.int32) * 256 + 255
    for i in range(1, c):
        np.maximum(best, planes[i].astype(np.int32) * 256 + (255 - i), out=best)
    return 255 - (best & 255)


def as_rgb_uint8(img: np.ndarray, *, what: str = "image") -> np.ndarray:
    """An HxWx3 uint8 view of `img` (HxW grey and HxWx4 RGBA accepted); anything else is refused."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise UserError(f"{what} must be uint8 RGB (0..255); received dtype {img.dtype}. Load files with "
                        "deeplab_edge.runtime.load_image.")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise UserError(f"{what} must have shape (H, W, 3); received {img.shape}.")
    return np.ascontiguousarray(img)


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float -> the input tensor's dtype: round(x / scale) + zero_point, clipped, for int8/uint8 inputs."""
    if not info.quantized:
        return x.astype(info.dtype, copy=False)
    lo, hi = np.iinfo(info.dtype).min, np.iinfo(info.dtype).max
    return np.clip(np.round(x / info.scale) + info.zero_point, lo, hi).astype(info.dtype)


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Quantised output -> float32 (y - zero_point) * scale; float outputs pass as float32."""
    if info.quantized:
        return (y.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)
    return y.astype(np.float32, copy=False)


def threshold_cut(threshold: float, output: str) -> np.float32:
    """Where a one-channel output turns foreground: the threshold itself on a probability, its logit on a logit."""
    return np.float32(threshold if output == "probabilities" else np.log(threshold / (1.0 - threshold)))


def scores_to_labels(scores: np.ndarray, output: str, threshold: float) -> np.ndarray:
    """(N, H, W, C) float scores -> (N, H, W) labels: argmax, or the one channel thresholded."""
    if scores.shape[-1] > 1:
        return scores.argmax(-1)
    return (scores[..., 0] >= threshold_cut(threshold, output)).astype(np.uint8)


def resize_bilinear(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, as TF's and Pillow's) of float NHWC scores to (h, w)."""
    h, w = size
    n, _, _, c = scores.shape
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        for k in range(c):
            plane = Image.fromarray(np.ascontiguousarray(scores[i, :, :, k], dtype=np.float32))
            out[i, :, :, k] = np.asarray(plane.resize((w, h), Image.BILINEAR))
    return out


def sample_like_mediapipe(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 `img` to `size` (h, w) as MediaPipe's CPU ImageToTensor does (OpenCV
    warpPerspective, INTER_LINEAR, on 8-bit pixels): output pixel x samples the input at x * in / out
    (no half-pixel offset, no antialiasing) with the position rounded to 1/32 pixel and 15-bit fixed-point
    weights, the result rounded to uint8."""
    def axis(n_in: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fixed = np.rint(np.arange(n, dtype=np.float64) * (n_in / n) * 32).astype(np.int64)
        lo = np.clip(fixed >> 5, 0, n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), fixed & 31

    (y0, y1, fy), (x0, x1, fx) = axis(img.shape[0], size[0]), axis(img.shape[1], size[1])
    a = img.astype(np.int64)
    wy0, wy1 = (32 - fy)[:, None, None], fy[:, None, None]
    wx0, wx1 = (32 - fx)[None, :, None], fx[None, :, None]
    top, bottom = a[y0], a[y1]
    acc = (top[:, x0] * wy0 * wx0 + top[:, x1] * wy0 * wx1 + bottom[:, x0] * wy1 * wx0
           + bottom[:, x1] * wy1 * wx1) * 32  # weights sum to 32 * 32 * 32 = 1 << 15
    return ((acc + (1 << 14)) >> 15).astype(np.uint8)


def upsample_like_mediapipe(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, C) float scores to `size` (h, w) as MediaPipe's CPU category mask does: bilinear
    with aligned corners, in float32, interpolating along y first."""
    def axis(n_in: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = np.float32(n_in - 1) / np.float32(max(n - 1, 1))
        pos = np.arange(n, dtype=np.float32) * scale
        lo = np.maximum(np.floor(pos), 0).astype(np.intp)
        hi = np.minimum(np.ceil(pos), n_in - 1).astype(np.intp)
        return lo, hi, np.clip(pos - lo.astype(np.float32), 0, 1).astype(np.float32)

    (y0, y1, ty), (x0, x1, tx) = axis(scores.shape[0], size[0]), axis(scores.shape[1], size[1])
    s = scores.astype(np.float32, copy=False)
    ty = ty[:, None, None]
    left = s[y0][:, x0] + (s[y1][:, x0] - s[y0][:, x0]) * ty
    right = s[y0][:, x1] + (s[y1][:, x1] - s[y0][:, x1]) * ty
    return left + (right - left) * tx[None, :, None]


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to (h, w) with Pillow, as training resizes masks."""
    h, w = size
    if labels.shape == (h, w):
        return labels
    if labels.dtype == np.uint8:
        return np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    out = Image.fromarray(labels.astype(np.int32)).resize((w, h), Image.NEAREST)
    return np.asarray(out).astype(labels.dtype)


def load_predictor(path: str | Path, *, backend: str | None = None, num_threads: int | None = None,
                   providers: str | Sequence[str] | None = None, input_size: Sequence[int] | None = None,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   class_names: str | Sequence[str] | None = None, batch_size: int = 1,
                   threshold: float | None = None, output: str | None = None,
                   output_kind: str | None = None, resample: str = "pillow", upsample: str = "labels",
                   device: str = "cpu", gpu_precision: str = "fp32") -> Predictor:
    """Open a `.tflite` / `.onnx` file and build its Predictor.

    How to pre- and post-process comes from, in order: the keyword arguments, the file's deeplab-edge
    metadata, its standard TFLite metadata (normalisation, labels, activation), and what the file's
    tensors show (layout, size, quantisation). A file that leaves the normalisation unknown needs
    `mean` and `std`; one with a dynamic spatial size needs `input_size`.
    `output` picks an output tensor by name (default the first); `output_kind` (logits, probabilities,
    labels) says what it holds when the file does not. `resample` is "pillow" (as in training) or
    "mediapipe" (as MediaPipe Tasks' ImageSegmenter on a phone; see the module docstring). `upsample`
    says how an output at a stride reaches the image size (see `Predictor.labels_for`). `device` "gpu" runs
    the file on a GPU (`backends.open_backend`).
    """
    opened = open_backend(path, backend=backend, num_threads=num_threads, providers=providers, output=output,
                          device=device, gpu_precision=gpu_precision)
    resolved = resolve_metadata(opened, input_size=input_size, mean=mean, std=std, class_names=class_names,
                                threshold=threshold, output_kind=output_kind)
    return Predictor(opened, resolved.meta, batch_size=batch_size, notes=resolved.notes,
                     detect_scores=resolved.detect_scores, resample=resample, upsample=upsample)


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
    names = _parse_names(class_names)
    notes: list[str] = []
    if output_kind is not None and output_kind not in OUTPUT_KINDS:
        raise UserError(f"--output-kind must be one of {', '.join(OUTPUT_KINDS)}; received {output_kind!r}.")
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise UserError(f"--threshold must lie strictly between 0 and 1; received {threshold}.")
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
        missing.append("its input size (--input-size H W; the file's spatial size is dynamic)")
    if norm_mean is None or norm_std is None:
        missing.append("its normalisation (--mean R G B --std R G B)")
    if missing:
        error = UnknownNormalisation if len(missing) == 1 and size is not None else UserError
        raise error(
            f"{backend.path} carries no deeplab-edge metadata and no standard TFLite metadata that gives "
            f"{' and '.join(missing)}: pass {METADATA_FLAGS} (e.g. --mean 127.5 127.5 127.5 --std 127.5 127.5 "
            "127.5 for a model trained on pixels scaled to [-1, 1], --mean 0 0 0 --std 255 255 255 for [0, 1]), "
            "or export the model with `deeplab-edge export`, which stores them in the file.")
    names = names or (ours.class_names if ours else ()) or _standard_labels(std_meta, channels) or \
        _default_names(kind, channels)
    base = ours or ModelMetadata(class_names=names or ("class_0",), input_size=size, mean=_three(norm_mean),
                                 std=_three(norm_std), layout=layout)
    meta = replace(base, class_names=names or base.class_names, input_size=tuple(size), mean=_three(norm_mean),
                   std=_three(norm_std), output=kind, output_layout=out_layout,
                   threshold=float(threshold) if threshold is not None else base.threshold)
    if model_hw is not None and meta.input_size != model_hw:
        raise UserError(f"{backend.path} takes {model_hw[0]}x{model_hw[1]} inputs; received input size "
                        f"{meta.input_size[0]}x{meta.input_size[1]}. Drop --input-size or pass "
                        f"--input-size {model_hw[0]} {model_hw[1]}.")
    classes = 2 if channels == 1 else channels
    if kind != "labels" and classes and len(meta.class_names) != classes:
        raise UserError(f"{backend.path} outputs {classes} classes{' (one foreground channel)' if channels == 1 else ''}"
                        f" but {len(meta.class_names)} class names were given ({', '.join(meta.class_names)}); "
                        f"pass {classes} names to --class-names.")
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
    expected = 2 if channels == 1 else channels
    return labels if labels and (expected is None or len(labels) == expected) else ()


def _default_names(kind: str, channels: int | None) -> tuple[str, ...]:
    if kind == "labels" or not channels:
        return ()
    if channels == 1:
        return ("background", "foreground")
    return tuple(f"class_{i}" for i in range(channels))


def _parse_names(class_names: str | Sequence[str] | None) -> tuple[str, ...]:
    if class_names is None:
        return ()
    items = class_names.split(",") if isinstance(class_names, str) else list(class_names)
    names = tuple(str(n).strip() for n in items)
    if any(not n for n in names):
        raise UserError(f"Class names must not be empty; received {class_names!r}. Example: --class-names "
                        "background,cat,dog.")
    return names


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
