"""deeplab-edge: DeepLabV3+ from Keras training to TFLite/ONNX on the edge.

This top-level module stays light: importing it never imports TensorFlow, so the
TF-free runtime (`deeplab_edge.runtime`) works on a board without it.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
