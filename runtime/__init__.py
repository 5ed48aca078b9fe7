"""TF-free inference on exported DeepLabV3+ files (LiteRT `.tflite`, onnxruntime `.onnx`).

Needs only numpy, Pillow, onnxruntime and ai-edge-litert: never imports TensorFlow or Keras.
"""

from __future__ import annotations

from .metadata import METADATA_KEY, ModelMetadata

__all__ = ["METADATA_KEY", "ModelMetadata"]
