"""TF-free inference on exported DeepLabV3+ files (LiteRT `.tflite`, onnxruntime `.onnx`).

Needs only numpy, Pillow, onnxruntime and ai-edge-litert: never imports TensorFlow or Keras.
"""

from __future__ import annotations

from .backends import Backend, TensorInfo, open_backend
from .files import check_model_file
from .images import iter_images, load_image
from .metadata import METADATA_KEY, ModelMetadata
from .predict import PredictSummary, predict_paths
from .predictor import Predictor, load_predictor
from .timing import TimingSummary
from .visualize import mask_image, overlay_image

__all__ = [
    "METADATA_KEY",
    "Backend",
    "ModelMetadata",
    "PredictSummary",
    "Predictor",
    "TensorInfo",
    "TimingSummary",
    "check_model_file",
    "iter_images",
    "load_image",
    "load_predictor",
    "mask_image",
    "open_backend",
    "overlay_image",
    "predict_paths",
]
