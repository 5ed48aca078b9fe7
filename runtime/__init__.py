"""TF-free inference on exported DeepLabV3+ files (LiteRT `.tflite`, onnxruntime `.onnx`).

Needs only numpy, Pillow, onnxruntime and ai-edge-litert: never imports TensorFlow or Keras.
`__all__` is the stable API: `load_predictor` -> `Predictor.predict` (RGB uint8 (H, W, 3) arrays in, label maps,
scores or probabilities out), `class_names`, `input_size`, `timing_summary()`; `inspect_file` for a file's
contract; `predict_paths` for folders. Every error for a caller's input is a `deeplab_edge.errors.UserError`.
"""

from __future__ import annotations

from .backends import Backend, TensorInfo, open_backend
from .files import check_model_file
from .folders import PredictSummary, predict_paths
from .images import iter_images, load_image, scan_images
from .inspect import Contract, inspect_file
from .metadata import METADATA_KEY, ModelMetadata
from .predictor import Predictor, load_predictor
from .stages import TimingSummary
from .visualize import mask_image, overlay_image

__all__ = [
    "METADATA_KEY",
    "Backend",
    "Contract",
    "ModelMetadata",
    "PredictSummary",
    "Predictor",
    "TensorInfo",
    "TimingSummary",
    "check_model_file",
    "inspect_file",
    "iter_images",
    "load_image",
    "load_predictor",
    "mask_image",
    "open_backend",
    "overlay_image",
    "predict_paths",
    "scan_images",
]
